//! Tenant credentials in syslog structured data, and what a graceful stop publishes.

mod syslog_common;

use std::io::Write;
use std::time::Duration;

use syslog_common::{marker, octet_counted, Dir, SyslogNode};

fn rfc5424(sd: &str, msg: &str) -> String {
    format!("<14>1 2026-11-20T10:00:00Z web01 shop 12 - {sd} {msg}")
}

#[test]
fn wrong_credentials_store_nothing_under_any_tenant_and_are_logged() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let acme = node.create_tenant("acme");
    let bad = marker("refused");
    let good = marker("accepted");
    let frames = [
        rfc5424(r#"[meniscus token="msc_not_a_token"]"#, &format!("{bad} a")),
        rfc5424(
            &format!(r#"[meniscus@32473 tenant="default" token="{acme}"]"#),
            &format!("{bad} b"),
        ),
        rfc5424(
            &format!(r#"[meniscus token="{}"]"#, node.admin_token),
            &format!("{bad} c"),
        ),
        rfc5424(r#"[meniscus tenant="acme"]"#, &format!("{bad} d")),
        rfc5424("-", &good),
    ];
    let stream: Vec<u8> = frames.iter().flat_map(|f| octet_counted(f)).collect();
    node.send_tcp(&stream);

    // One connection is processed in order: once the last frame is stored, the others were seen.
    node.wait_for(&good, 1);
    assert!(node.search(&bad).is_empty(), "stored under default");
    assert!(node.search_as(&acme, &bad).is_empty(), "stored under acme");
    let log = node.log();
    assert!(
        log.contains("syslog message refused"),
        "no log line for the refusal:\n{log}"
    );
    assert!(
        !log.contains(&acme) && !log.contains(&node.admin_token),
        "a token was logged"
    );
}

#[test]
fn a_token_in_a_line_that_does_not_parse_is_redacted_not_stored() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let word = marker("malformed");
    // The SD element is never closed: the line is stored whole, with parse_error.
    let line = format!(
        r#"<14>1 2026-11-20T10:00:00Z web01 shop - - [meniscus token="{}" tenant="default" {word}"#,
        node.token
    );
    node.send_tcp(format!("{line}\n").as_bytes());
    let found = node.wait_for(&word, 1);
    let e = &found[0];
    assert!(
        e["fields"]["parse_error"]
            .as_str()
            .unwrap()
            .starts_with("rfc5424:"),
        "{e}"
    );
    let message = e["message"].as_str().unwrap();
    assert!(message.contains(r#"token="<redacted>""#), "{message}");
    assert!(!e.to_string().contains(&node.token), "the token was stored");
}

#[test]
fn sigterm_publishes_what_was_read_and_a_restart_finds_it() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let word = marker("drain");
    let mut stream = node.connect();
    let frame = |i: usize| octet_counted(&rfc5424("-", &format!("{word} n{i}")));
    stream.write_all(&frame(0)).unwrap();
    // The connection is accepted and serving once the first event is stored.
    node.wait_for(&word, 1);
    let rest: Vec<u8> = (1..2000).flat_map(frame).collect();
    stream.write_all(&rest).unwrap();
    let status = node.terminate();
    assert!(status.success(), "meniscus dev exited with {status}");
    drop(stream);

    let node = SyslogNode::start(&dir);
    node.wait_for(&word, 2000);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(node.count(&word), 2000, "duplicates after restart");
}
