//! Format an RFC 5424 message from random fields, parse it, and get the same event back.

use std::fmt::Write as _;

use proptest::prelude::*;
use time::{Duration, OffsetDateTime, UtcOffset};

use super::NOW;
use crate::publish::EventDraft;
use crate::syslog::{parse, Format};
use crate::{Facility, Severity, StructuredData};

/// A header field: NILVALUE or 1 to `max` printable US-ASCII characters other than a lone `-`.
fn header(max: usize) -> impl Strategy<Value = Option<String>> {
    let printable =
        proptest::string::string_regex(&format!("[!-~]{{1,{max}}}")).expect("a valid regex");
    proptest::option::of(printable.prop_filter("a lone - is NILVALUE", |s| s != "-"))
}

/// SD-NAME: printable US-ASCII except `=`, SP, `]` and `"`.
fn sd_name() -> impl Strategy<Value = String> {
    "[!#-<>-\\\\^-~]{1,32}"
}

fn timestamp() -> impl Strategy<Value = Option<OffsetDateTime>> {
    proptest::option::of(
        (
            // 1900 to 2200.
            -2_208_988_800i64..7_258_118_400,
            0u32..1_000_000,
            0usize..=6,
            -(23 * 60 + 59)..=(23i32 * 60 + 59),
        )
            .prop_map(|(secs, micros, digits, offset_min)| {
                // Keep only as many fraction digits as will be written.
                let scale = 10u32.pow(6 - digits as u32);
                let micros = micros / scale * scale;
                let offset = UtcOffset::from_whole_seconds(offset_min * 60).unwrap();
                (OffsetDateTime::UNIX_EPOCH
                    + Duration::seconds(secs)
                    + Duration::microseconds(micros.into()))
                .to_offset(offset)
            }),
    )
}

#[derive(Debug, Clone)]
struct Fields {
    pri: u8,
    ts: Option<OffsetDateTime>,
    ts_digits: usize,
    host: Option<String>,
    app: Option<String>,
    procid: Option<String>,
    msgid: Option<String>,
    sd: StructuredData,
    bom: bool,
    msg: String,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        (0u8..192, timestamp(), 0usize..=6),
        (header(255), header(48), header(128), header(32)),
        proptest::collection::btree_map(
            sd_name(),
            proptest::collection::btree_map(sd_name(), "(\\PC|[\"\\\\\\]])*", 0..4),
            0..4,
        ),
        any::<bool>(),
        // No trailing terminators: the parser ignores those.
        "(\\PC|[ \t])*(\\PC)?"
            .prop_filter("terminators", |m: &String| !m.ends_with(['\n', '\r', '\0'])),
    )
        .prop_map(
            |((pri, ts, digits), (host, app, procid, msgid), sd, bom, msg)| Fields {
                pri,
                ts,
                ts_digits: digits,
                host,
                app,
                procid,
                msgid,
                sd,
                bom,
                msg,
            },
        )
}

fn format_ts(t: OffsetDateTime, digits: usize) -> String {
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    // Write the fraction with the fewest digits (at least `digits`) that hold it exactly.
    let fraction = format!("{:06}", t.microsecond());
    let fraction = fraction.trim_end_matches('0');
    let n = fraction.len().max(digits);
    if n > 0 {
        let _ = write!(s, ".{fraction:0<n$}");
    }
    let (h, m, _) = t.offset().as_hms();
    if t.offset().is_utc() {
        s.push('Z');
    } else {
        let sign = if t.offset().is_negative() { '-' } else { '+' };
        let _ = write!(s, "{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs());
    }
    s
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn format(f: &Fields) -> Vec<u8> {
    let nil = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut s = format!(
        "<{}>1 {} {} {} {} {} ",
        f.pri,
        f.ts.map_or_else(|| "-".into(), |t| format_ts(t, f.ts_digits)),
        nil(&f.host),
        nil(&f.app),
        nil(&f.procid),
        nil(&f.msgid)
    );
    if f.sd.is_empty() {
        s.push('-');
    }
    for (id, params) in &f.sd {
        let _ = write!(s, "[{id}");
        for (name, value) in params {
            let _ = write!(s, " {name}=\"{}\"", escape(value));
        }
        s.push(']');
    }
    let mut out = s.into_bytes();
    // A message starting with U+FEFF needs the BOM written, or the parser would take it for one.
    if f.bom || f.msg.starts_with('\u{FEFF}') {
        out.extend_from_slice(b" \xEF\xBB\xBF");
        out.extend_from_slice(f.msg.as_bytes());
    } else if !f.msg.is_empty() {
        out.push(b' ');
        out.extend_from_slice(f.msg.as_bytes());
    }
    out
}

fn expected(f: &Fields) -> EventDraft {
    EventDraft {
        id: None,
        timestamp: f.ts.map(|t| t.to_offset(UtcOffset::UTC)),
        host: f.host.clone(),
        app: f.app.clone(),
        procid: f.procid.clone(),
        msgid: f.msgid.clone(),
        facility: Facility::from_code(f.pri >> 3),
        severity: Severity::from_code(f.pri & 7),
        message: f.msg.clone(),
        structured_data: f.sd.clone(),
        fields: serde_json::Map::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rfc5424_format_then_parse_gives_the_same_event(f in fields()) {
        let line = format(&f);
        let parsed = parse(&line, Format::Auto, NOW);
        prop_assert_eq!(parsed.parse_error, None, "{}", String::from_utf8_lossy(&line));
        prop_assert_eq!(parsed.format, Format::Rfc5424);
        prop_assert_eq!(parsed.timestamp.map(|t| t.offset()), f.ts.map(|t| t.offset()));
        prop_assert_eq!(parsed.into_draft(), expected(&f));
    }

    #[test]
    fn damaged_messages_parse_without_panicking(
        f in fields(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<usize>(),
    ) {
        let mut line = format(&f);
        for (at, byte) in edits {
            let at = at % line.len();
            line[at] = byte;
        }
        line.truncate(cut % (line.len() + 1));
        for format in [Format::Auto, Format::Rfc5424, Format::Rfc3164] {
            let parsed = parse(&line, format, NOW);
            if parsed.parse_error.is_some() {
                prop_assert!(parsed.structured_data.is_empty() && parsed.host.is_none());
            }
            let _ = parsed.into_draft();
        }
    }

    #[test]
    fn any_bytes_parse_without_panicking_and_errors_keep_the_line(
        line in proptest::collection::vec(any::<u8>(), 0..200),
        format in prop_oneof![Just(Format::Auto), Just(Format::Rfc5424), Just(Format::Rfc3164)],
    ) {
        let parsed = parse(&line, format, NOW);
        if parsed.parse_error.is_some() {
            let mut end = line.len();
            while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | 0) {
                end -= 1;
            }
            let whole = String::from_utf8_lossy(&line[..end]);
            prop_assert_eq!(parsed.message.as_ref(), whole.as_ref());
        }
        let _ = parsed.into_draft();
    }
}

#[test]
fn format_ts_writes_what_rfc3339_reads() {
    let t = OffsetDateTime::UNIX_EPOCH + Duration::microseconds(1_500_000);
    assert_eq!(format_ts(t, 0), "1970-01-01T00:00:01.5Z");
    assert_eq!(format_ts(t, 3), "1970-01-01T00:00:01.500Z");
}
