//! A real rsyslog forwarding to `meniscus dev`: over plain TCP with octet counting (`omfwd`),
//! and over RELP (`omrelp`). The RELP crash test is in `syslog_relp.rs`.

mod syslog_common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use syslog_common::rsyslog::{rsyslogd, send_lines, Rsyslog};
use syslog_common::{marker, Dir, Listeners, SyslogNode, SEARCHABLE_TIMEOUT};

/// Waits until `word` finds `n` events, then returns the sequence numbers found.
fn wait_for_sequences(node: &SyslogNode, rsyslog: &Rsyslog, word: &str, n: usize) -> Vec<usize> {
    let deadline = Instant::now() + SEARCHABLE_TIMEOUT * 2;
    while node.count(word) < n as u64 {
        assert!(
            Instant::now() < deadline,
            "{} of {n} messages searchable; rsyslog log:\n{}\nnode log:\n{}",
            node.count(word),
            rsyslog.log(),
            node.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    node.all_messages(word)
        .iter()
        .map(|m| {
            let (_, seq) = m.rsplit_once(" seq").expect("a sequence number");
            seq.parse().expect("a sequence number")
        })
        .collect()
}

#[test]
fn rsyslog_omfwd_over_tcp_with_octet_counting_delivers_every_message() {
    let Some(binary) = rsyslogd() else { return };
    const N: usize = 10_000;
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let action = format!(
        r#"action(type="omfwd" target="127.0.0.1" port="{}" protocol="tcp"
       TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")"#,
        node.tcp.port()
    );
    let rsyslog = Rsyslog::start(&binary, &dir.path, "rsyslog", "", &action);
    let word = marker("omfwd");
    send_lines(
        rsyslog.input,
        (0..N).map(|i| format!("<30>1 - fwdhost fwdapp 77 - - {word} seq{i}")),
    );
    let mut seqs = wait_for_sequences(&node, &rsyslog, &word, N);
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (0..N).collect::<Vec<_>>(),
        "each message exactly once"
    );

    let e = &node.search(&format!("{word} AND seq0"))[0];
    assert_eq!(e["host"], "fwdhost");
    assert_eq!(e["app"], "fwdapp");
    assert_eq!(e["procid"], "77");
    assert_eq!(e["facility"], "daemon");
    assert_eq!(e["severity"], "info");
    assert_eq!(e["source"]["transport"], "syslog-tcp");
}

#[test]
fn rsyslog_omrelp_delivers_every_message_once_with_its_fields() {
    let Some(binary) = rsyslogd() else { return };
    const N: usize = 5_000;
    let dir = Dir::new();
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let node = SyslogNode::start_with(
        &dir,
        &Listeners {
            relp: Some(any_port),
            ..Listeners::default()
        },
    );
    let action = format!(
        r#"action(type="omrelp" target="127.0.0.1" port="{}" template="RSYSLOG_SyslogProtocol23Format")"#,
        node.relp().port()
    );
    let modules = r#"module(load="omrelp")"#;
    let rsyslog = Rsyslog::start(&binary, &dir.path, "rsyslog", modules, &action);
    let word = marker("omrelp");
    send_lines(
        rsyslog.input,
        (0..N)
            .map(|i| format!("<165>1 - relphost relpapp - ID47 [ex@32473 k=\"v\"] {word} seq{i}")),
    );
    let seqs = wait_for_sequences(&node, &rsyslog, &word, N);
    let distinct: HashSet<_> = seqs.iter().collect();
    assert_eq!(
        (seqs.len(), distinct.len()),
        (N, N),
        "each message exactly once"
    );

    let e = &node.search(&format!("{word} AND seq1"))[0];
    assert_eq!(e["host"], "relphost");
    assert_eq!(e["app"], "relpapp");
    assert_eq!(e["msgid"], "ID47");
    assert_eq!(e["facility"], "local4");
    assert_eq!(e["severity"], "notice");
    assert_eq!(e["structured_data"]["ex@32473"]["k"], "v");
    assert_eq!(e["source"]["transport"], "syslog-relp");
    assert_eq!(e["tenant"], "default");
}
