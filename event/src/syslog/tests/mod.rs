//! The parser case tables, the RFC 5424 round trip and the draft mapping.
//!
//! Every row states all the fields it expects: a field a row does not mention must be empty.

use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::OffsetDateTime;

use super::*;

mod cases_3164;
mod cases_5424;
mod roundtrip;

/// The clock the table parses with: year inference for RFC 3164 is relative to it.
const NOW: OffsetDateTime = datetime!(2026-11-15 12:00 UTC);

type SdWant = &'static [(&'static str, &'static [(&'static str, &'static str)])];

/// One row: a line, the format to parse it as, and what must come out.
#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    line: &'static [u8],
    input: Format,
    detected: Format,
    pri: Option<(Facility, Severity)>,
    ts: Option<&'static str>,
    host: Option<&'static str>,
    app: Option<&'static str>,
    procid: Option<&'static str>,
    msgid: Option<&'static str>,
    sd: SdWant,
    msg: &'static str,
    err: Option<&'static str>,
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

impl Case {
    fn new(name: &'static str, line: &'static [u8], detected: Format) -> Self {
        Case {
            name,
            line,
            input: Format::Auto,
            detected,
            pri: None,
            ts: None,
            host: None,
            app: None,
            procid: None,
            msgid: None,
            sd: &[],
            msg: "",
            err: None,
        }
    }
    /// Parses with `format` instead of `Format::Auto`.
    fn input(mut self, format: Format) -> Self {
        self.input = format;
        self
    }
    fn pri(mut self, facility: Facility, severity: Severity) -> Self {
        self.pri = Some((facility, severity));
        self
    }
    fn ts(mut self, rfc3339: &'static str) -> Self {
        self.ts = Some(rfc3339);
        self
    }
    fn host(mut self, v: &'static str) -> Self {
        self.host = Some(v);
        self
    }
    fn app(mut self, v: &'static str) -> Self {
        self.app = Some(v);
        self
    }
    fn procid(mut self, v: &'static str) -> Self {
        self.procid = Some(v);
        self
    }
    fn msgid(mut self, v: &'static str) -> Self {
        self.msgid = Some(v);
        self
    }
    fn sd(mut self, sd: SdWant) -> Self {
        self.sd = sd;
        self
    }
    fn msg(mut self, v: &'static str) -> Self {
        self.msg = v;
        self
    }
}

/// A valid RFC 5424 row, detected automatically.
fn v5424(name: &'static str, line: &'static str) -> Case {
    Case::new(name, line.as_bytes(), Format::Rfc5424)
}

/// A valid RFC 3164 row, detected automatically.
fn v3164(name: &'static str, line: &'static str) -> Case {
    Case::new(name, line.as_bytes(), Format::Rfc3164)
}

/// An invalid row: the message is the whole line (without terminators), nothing else is set,
/// and `err` is the complete error text.
fn bad(name: &'static str, line: &'static [u8], err: &'static str) -> Case {
    let detected = match err.split(':').next() {
        Some("rfc5424") => Format::Rfc5424,
        Some("rfc3164") => Format::Rfc3164,
        _ => Format::Auto,
    };
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | 0) {
        end -= 1;
    }
    let mut case = Case::new(name, line, detected);
    case.msg = leak(String::from_utf8_lossy(&line[..end]).into_owned());
    case.err = Some(err);
    case
}

fn check(case: &Case) {
    let name = case.name;
    let got = parse(case.line, case.input, NOW);
    let got_err = got.parse_error.map(|e| e.to_string());
    assert_eq!(got_err.as_deref(), case.err, "{name}: parse_error");
    assert_eq!(got.format, case.detected, "{name}: format");
    assert_eq!(
        got.facility.zip(got.severity),
        case.pri,
        "{name}: facility/severity"
    );
    let want_ts = case.ts.map(|s| {
        OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("{name}: bad want ts: {e}"))
    });
    assert_eq!(got.timestamp, want_ts, "{name}: timestamp");
    assert_eq!(
        got.timestamp.map(|t| t.offset()),
        want_ts.map(|t| t.offset()),
        "{name}: timestamp offset"
    );
    assert_eq!(got.host, case.host, "{name}: host");
    assert_eq!(got.app, case.app, "{name}: app");
    assert_eq!(got.procid, case.procid, "{name}: procid");
    assert_eq!(got.msgid, case.msgid, "{name}: msgid");
    let got_sd: Vec<(&str, Vec<(&str, &str)>)> = got
        .structured_data
        .iter()
        .map(|e| {
            (
                e.id,
                e.params.iter().map(|(k, v)| (*k, v.as_ref())).collect(),
            )
        })
        .collect();
    let want_sd: Vec<(&str, Vec<(&str, &str)>)> =
        case.sd.iter().map(|(id, p)| (*id, p.to_vec())).collect();
    assert_eq!(got_sd, want_sd, "{name}: structured_data");
    assert_eq!(got.message, case.msg, "{name}: message");
}

#[test]
fn parser_case_table() {
    let cases: Vec<Case> = cases_5424::cases()
        .into_iter()
        .chain(cases_3164::cases())
        .collect();
    for case in &cases {
        check(case);
    }
    let valid = cases.iter().filter(|c| c.err.is_none()).count();
    let invalid = cases.len() - valid;
    eprintln!("{} cases: {valid} valid, {invalid} invalid", cases.len());
    assert!(cases.len() >= 100, "{} cases", cases.len());
    assert!(
        valid >= 50 && invalid >= 30,
        "{valid} valid, {invalid} invalid"
    );
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names must be unique");
}

#[test]
fn into_draft_maps_every_field_and_normalizes_the_timestamp() {
    let line = br#"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 ID7 [a@1 x="1" x="2"][b@1] hi"#;
    let draft = parse(line, Format::Auto, NOW).into_draft();
    assert_eq!(draft.id, None);
    assert_eq!(
        draft.timestamp,
        Some(datetime!(2003-08-24 12:14:15.000003 UTC))
    );
    assert_eq!(
        draft.timestamp.map(|t| t.offset()),
        Some(time::UtcOffset::UTC)
    );
    assert_eq!(draft.host.as_deref(), Some("192.0.2.1"));
    assert_eq!(draft.app.as_deref(), Some("myproc"));
    assert_eq!(draft.procid.as_deref(), Some("8710"));
    assert_eq!(draft.msgid.as_deref(), Some("ID7"));
    assert_eq!(draft.facility, Some(Facility::Local4));
    assert_eq!(draft.severity, Some(Severity::Notice));
    assert_eq!(draft.message, "hi");
    assert_eq!(draft.structured_data["a@1"]["x"], "1", "first value wins");
    assert!(draft.structured_data["b@1"].is_empty());
    assert!(draft.fields.is_empty());
}

#[test]
fn into_draft_records_the_parse_error_and_keeps_the_line() {
    let draft = parse(b"<34>1 yesterday h a - - -\n", Format::Auto, NOW).into_draft();
    assert_eq!(draft.message, "<34>1 yesterday h a - - -");
    assert_eq!(
        draft.fields["parse_error"],
        "rfc5424: invalid TIMESTAMP at byte 6"
    );
    assert_eq!(draft.fields.len(), 1);
    assert_eq!(
        (draft.facility, draft.timestamp, draft.host),
        (None, None, None)
    );
}

#[test]
fn meniscus_sd_carries_an_idempotency_key() {
    let line = br#"<13>1 - h a - - [meniscus id="order-42"][x@1 k="v"] m"#;
    let mut draft = parse(line, Format::Auto, NOW).into_draft();
    let sd = take_meniscus_sd(&mut draft.structured_data).expect("meniscus element");
    assert_eq!(
        (sd.id.as_deref(), sd.tenant, sd.token),
        (Some("order-42"), None, None)
    );
    assert_eq!(draft.structured_data.keys().collect::<Vec<_>>(), ["x@1"]);
}

#[test]
fn meniscus_sd_is_taken_out_with_its_token() {
    let line = br#"<13>1 - h a - - [meniscus@32473 tenant="acme" token="s3cret"][meniscus token="other"][x@1 k="v"] m"#;
    let mut draft = parse(line, Format::Auto, NOW).into_draft();
    let creds = take_meniscus_sd(&mut draft.structured_data).expect("credentials");
    // BTreeMap order: `meniscus` sorts before `meniscus@32473`.
    assert_eq!(creds.tenant, None);
    assert_eq!(creds.token.as_deref(), Some("other"));
    assert_eq!(draft.structured_data.keys().collect::<Vec<_>>(), ["x@1"]);
    assert!(
        !format!("{creds:?}").contains("other"),
        "Debug must not show the token"
    );
    assert_eq!(take_meniscus_sd(&mut draft.structured_data), None);

    let mut sd = parse(
        br#"<13>1 - h a - - [meniscus@1 tenant="acme" token="t"][meniscusx@1 a="b"]"#,
        Format::Auto,
        NOW,
    )
    .into_draft()
    .structured_data;
    let creds = take_meniscus_sd(&mut sd).expect("credentials");
    assert_eq!(
        (creds.tenant.as_deref(), creds.token.as_deref(), creds.id),
        (Some("acme"), Some("t"), None)
    );
    assert_eq!(sd.keys().collect::<Vec<_>>(), ["meniscusx@1"]);
}

#[test]
fn format_keywords_parse_and_print() {
    for f in [Format::Auto, Format::Rfc5424, Format::Rfc3164] {
        assert_eq!(f.to_string().parse::<Format>(), Ok(f));
    }
    assert!("bsd"
        .parse::<Format>()
        .unwrap_err()
        .contains("auto, rfc5424"));
}

#[test]
fn hostile_inputs_do_not_panic() {
    let mut lines: Vec<Vec<u8>> = vec![
        b"<".to_vec(),
        b"<1".to_vec(),
        b"<1>".to_vec(),
        b"<1>1".to_vec(),
        b"<1>1 ".to_vec(),
        b"<1>1 - - - - - [".to_vec(),
        b"<1>1 - - - - - [a".to_vec(),
        b"<1>1 - - - - - [a ".to_vec(),
        b"<1>1 - - - - - [a b".to_vec(),
        b"<1>1 - - - - - [a b=".to_vec(),
        b"<1>1 - - - - - [a b=\"".to_vec(),
        b"<1>1 - - - - - [a b=\"\\".to_vec(),
        b"<1>1 - - - - - [a b=\"\\\"".to_vec(),
        b"<1>*".to_vec(),
        b"<1>1: ".to_vec(),
        b"<1>: ".to_vec(),
        b"<1>Jan".to_vec(),
        b"<1>Jan 1".to_vec(),
        b"<1>Jan 1 1".to_vec(),
        b"<1>Jan 1 1:".to_vec(),
        b"<1>Jan 1 1:00:0".to_vec(),
        b"<1>Jan 1 01:00:00.".to_vec(),
        b"<1>Jan 1 01:00:00 UT".to_vec(),
        b"<1>2024".to_vec(),
        b"<1>2024-".to_vec(),
        b"<1>2024 Jan".to_vec(),
        b"<1>2024-01-01T00:00:00.".to_vec(),
        b"<1>h : ".to_vec(),
        b"<1>a[:".to_vec(),
        b"<1>a[]:".to_vec(),
        b"<1>%:".to_vec(),
    ];
    // Many SD elements: the duplicate check must stay fast.
    let mut many = b"<1>1 - - - - - ".to_vec();
    for i in 0..20_000 {
        many.extend_from_slice(format!("[e{i}]").as_bytes());
    }
    lines.push(many);
    for line in &lines {
        for format in [Format::Auto, Format::Rfc5424, Format::Rfc3164] {
            for cut in 0..=line.len().min(64) {
                let p = parse(&line[..cut], format, NOW);
                if p.parse_error.is_some() {
                    assert_eq!(p.message.as_bytes(), &line[..cut]);
                }
            }
            let _ = parse(line, format, NOW).into_draft();
        }
    }
}
