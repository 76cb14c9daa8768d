//! `meniscus parse` as an operator runs it: syslog lines on stdin, JSON events on stdout.

use std::io::Write;
use std::process::{Command, Stdio};

fn parse(args: &[&str], input: &str) -> (Vec<serde_json::Value>, String, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meniscus"))
        .arg("parse")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start meniscus parse");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for meniscus parse");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let events = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    (
        events,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[test]
fn parse_prints_one_json_event_per_line() {
    let input = concat!(
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 ID47 ",
        "[exampleSDID@32473 iut=\"3\" eventSource=\"Application\"][meniscus tenant=\"acme\" token=\"t\"] ",
        "An application event\n",
        "<13>Feb  5 17:32:18 10.0.0.99 myapp[77]: Use the BFG!\r\n",
        "\n",
        "garbage without a priority\n",
    );
    let (events, stderr, ok) = parse(&[], input);
    assert!(ok, "meniscus parse failed: {stderr}");
    assert_eq!(events.len(), 3, "{events:?}");

    let e = &events[0];
    assert_eq!(e["timestamp"], "2003-10-11T22:14:15.003Z");
    assert_eq!(e["host"], "mymachine.example.com");
    assert_eq!(e["app"], "evntslog");
    assert_eq!(e["procid"], "1234");
    assert_eq!(e["msgid"], "ID47");
    assert_eq!(e["facility"], "local4");
    assert_eq!(e["severity"], "notice");
    assert_eq!(e["message"], "An application event");
    assert_eq!(
        e["structured_data"]["exampleSDID@32473"]["eventSource"],
        "Application"
    );
    assert_eq!(e["structured_data"]["meniscus"]["tenant"], "acme");
    assert!(e.get("id").is_none() && e.get("tenant").is_none());

    let e = &events[1];
    assert_eq!(e["host"], "10.0.0.99");
    assert_eq!(e["app"], "myapp");
    assert_eq!(e["procid"], "77");
    assert_eq!(e["facility"], "user");
    assert_eq!(e["severity"], "notice");
    assert_eq!(e["message"], "Use the BFG!");
    assert!(e["timestamp"].as_str().unwrap().contains("-02-05T17:32:18"));

    // RFC 3164 section 4.3.3: no PRI is user.notice, all of it the message.
    let e = &events[2];
    assert_eq!(e["message"], "garbage without a priority");
    assert_eq!(
        (e["facility"].as_str(), e["severity"].as_str()),
        (Some("user"), Some("notice"))
    );
    assert!(e.get("fields").is_none(), "{e}");
    assert!(e.get("timestamp").is_none());
}

#[test]
fn parse_with_a_forced_format_reports_the_other_dialect() {
    let (events, stderr, ok) = parse(
        &["--format", "rfc5424"],
        "<34>Oct 11 22:14:15 mymachine su: 'su root' failed\n",
    );
    assert!(ok, "{stderr}");
    let error = events[0]["fields"]["parse_error"].as_str().unwrap();
    assert!(error.starts_with("rfc5424: invalid VERSION"), "{error}");

    let (events, _, ok) = parse(
        &["--format", "rfc3164"],
        "<34>Oct 11 22:14:15 mymachine su: 'su root' failed\n",
    );
    assert!(ok);
    assert_eq!(events[0]["app"], "su");
}

#[test]
fn parse_rejects_an_unknown_format() {
    let (events, stderr, ok) = parse(&["--format", "cef"], "");
    assert!(!ok);
    assert!(events.is_empty());
    assert!(stderr.contains("auto, rfc5424, rfc3164"), "{stderr}");
}
