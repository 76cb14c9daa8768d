//! `meniscus parse`: shows how syslog lines parse, one JSON event per line.
//!
//! The output uses the search API's field names (`timestamp` as RFC 3339, `facility` and
//! `severity` as keywords, `structured_data` as `{SD-ID: {param: value}}`, `fields.parse_error`
//! for a line that is not valid syslog), without what only a node adds (id, tenant, arrival time,
//! source). A `meniscus` structured-data element is shown as parsed: a listener would take it
//! out before storage.

use std::io::{self, BufRead, Write};

use anyhow::Context;
use clap::Args;
use meniscus_event::publish::EventDraft;
use meniscus_event::syslog::{self, Format};
use meniscus_event::{Facility, Severity, StructuredData};
use serde::Serialize;
use time::OffsetDateTime;

/// Arguments of `meniscus parse`.
#[derive(Args, Debug)]
pub struct ParseArgs {
    /// Syslog dialect: auto (per line), rfc5424 or rfc3164.
    #[arg(long, default_value = "auto", value_parser = parse_format)]
    format: Format,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

/// One parsed line, as the search API names its fields.
#[derive(Serialize)]
struct Shown {
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    timestamp: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    procid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    msgid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    facility: Option<Facility>,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    message: String,
    #[serde(skip_serializing_if = "StructuredData::is_empty")]
    structured_data: StructuredData,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    fields: serde_json::Map<String, serde_json::Value>,
}

impl From<EventDraft> for Shown {
    fn from(d: EventDraft) -> Self {
        Shown {
            timestamp: d.timestamp,
            host: d.host,
            app: d.app,
            procid: d.procid,
            msgid: d.msgid,
            facility: d.facility,
            severity: d.severity,
            message: d.message,
            structured_data: d.structured_data,
            fields: d.fields,
        }
    }
}

/// Parses every non-empty line of stdin and prints it as JSON. RFC 3164 timestamps without a
/// year take the year that puts them nearest before now.
pub fn run(args: ParseArgs) -> anyhow::Result<()> {
    let stdin = io::stdin().lock();
    let stdout = io::stdout().lock();
    match parse_lines(stdin, stdout, args.format, OffsetDateTime::now_utc()) {
        // `meniscus parse | head` closes the pipe early: that is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("parsing stdin"),
    }
}

fn parse_lines(
    mut input: impl BufRead,
    output: impl Write,
    format: Format,
    now: OffsetDateTime,
) -> io::Result<()> {
    let mut output = io::BufWriter::new(output);
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.iter().all(|b| matches!(b, b'\n' | b'\r' | 0)) {
            continue;
        }
        let shown = Shown::from(syslog::parse(&line, format, now).into_draft());
        serde_json::to_writer(&mut output, &shown)?;
        output.write_all(b"\n")?;
    }
    output.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn run_on(input: &str, format: Format) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        parse_lines(
            input.as_bytes(),
            &mut out,
            format,
            datetime!(2026-11-15 12:00 UTC),
        )
        .unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn each_line_becomes_one_event_with_search_field_names() {
        let out = run_on(
            "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\"] An application event\r\n\n<34>Oct 11 22:14:15 mymachine su: 'su root' failed\n<999>not syslog\n",
            Format::Auto,
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[0]["timestamp"], "2003-10-11T22:14:15.003Z");
        assert_eq!(out[0]["facility"], "local4");
        assert_eq!(out[0]["severity"], "notice");
        assert_eq!(out[0]["host"], "mymachine.example.com");
        assert_eq!(out[0]["app"], "evntslog");
        assert_eq!(out[0]["msgid"], "ID47");
        assert!(out[0].get("procid").is_none());
        assert_eq!(out[0]["structured_data"]["exampleSDID@32473"]["iut"], "3");
        assert_eq!(out[0]["message"], "An application event");
        assert_eq!(out[1]["timestamp"], "2026-10-11T22:14:15Z");
        assert_eq!(out[1]["severity"], "crit");
        assert_eq!(out[1]["facility"], "auth");
        assert_eq!(out[2]["message"], "<999>not syslog");
        assert_eq!(
            out[2]["fields"]["parse_error"],
            "syslog: invalid PRI (expected <0> to <191>) at byte 1"
        );
    }

    #[test]
    fn a_forced_format_reports_lines_of_the_other_one() {
        let out = run_on("<34>Oct 11 22:14:15 mymachine su: hi\n", Format::Rfc5424);
        assert!(out[0]["fields"]["parse_error"]
            .as_str()
            .unwrap()
            .starts_with("rfc5424:"));
    }
}
