//! Hostile syslog input: garbage, a 100 MB frame, an endless line, a slow sender, many idle
//! connections. In each case the node keeps serving other senders.

mod syslog_common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use syslog_common::{marker, octet_counted, Dir, SyslogNode};

fn valid(msg: &str) -> Vec<u8> {
    octet_counted(&format!("<13>1 2026-11-20T10:00:00Z web01 app - - - {msg}"))
}

/// Deterministic bytes of every value but the digits, with a newline now and then. (A digit at
/// a frame start begins an octet count, which could swallow what follows the garbage.)
fn garbage(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            match (x >> 24) as u8 {
                b'0'..=b'9' => b'#',
                b => b,
            }
        })
        .collect()
}

#[test]
fn garbage_on_one_connection_does_not_stop_other_senders() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let mut hostile = node.connect();
    hostile.write_all(&garbage(1 << 20)).unwrap();
    let bad_line = marker("junkline");
    // A line that is not syslog is stored whole, with parse_error.
    hostile
        .write_all(format!("\n<999>\u{1}\u{2} {bad_line} \u{fffd}\n").as_bytes())
        .unwrap();

    let other = marker("othersender");
    node.send_tcp(&valid(&other));
    node.wait_for(&other, 1);

    let found = node.wait_for(&bad_line, 1);
    let e = &found[0];
    assert!(e["message"].as_str().unwrap().contains(&bad_line));
    assert_eq!(
        e["fields"]["parse_error"],
        "syslog: invalid PRI (expected <0> to <191>) at byte 1"
    );

    // The hostile connection itself is still served.
    let after = marker("aftergarbage");
    hostile.write_all(&valid(&after)).unwrap();
    node.wait_for(&after, 1);
}

#[test]
fn a_100_mb_frame_is_skipped_with_bounded_memory_and_the_next_frame_is_stored() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let warm = marker("warm");
    node.send_tcp(&valid(&warm));
    node.wait_for(&warm, 1);
    // Memory the indexer takes for its first events is not the frame's.
    node.wait_until_indexed();
    let rss_before = node.rss_kib();

    const LEN: usize = 100 * 1024 * 1024;
    let mut big = node.connect();
    big.write_all(format!("{LEN} <13>1 - - - - - ").as_bytes())
        .unwrap();
    let chunk = vec![b'A'; 1024 * 1024];
    let mut sent = 16; // what the header above already counted
    big.write_all(&chunk[..1024 * 1024 - sent]).unwrap();
    sent = 1024 * 1024;

    // Mid-frame, another sender is served.
    let other = marker("midframe");
    node.send_tcp(&valid(&other));
    node.wait_for(&other, 1);

    while sent < LEN {
        big.write_all(&chunk).unwrap();
        sent += chunk.len();
    }
    let next = marker("afterbig");
    big.write_all(&valid(&next)).unwrap();
    node.wait_for(&next, 1);

    let grown_mib = node.rss_kib().saturating_sub(rss_before) / 1024;
    eprintln!("node memory grew by {grown_mib} MiB while skipping the frame");
    // Growth is a few MiB; the bound only has to show the frame was not buffered.
    assert!(grown_mib < 32, "memory grew by {grown_mib} MiB");
    let log = node.log();
    assert!(
        log.contains("syslog frame skipped") && log.contains("exceeds the limit"),
        "no log line for the oversized frame:\n{log}"
    );
    // warm, midframe, afterbig: the big frame stored nothing.
    assert_eq!(node.count("*"), 3);
}

#[test]
fn an_overlong_line_is_skipped_up_to_its_newline() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let mut stream = node.connect();
    let long = marker("longline");
    let mut line = format!("<13>Nov 20 10:00:00 web01 app: {long} ").into_bytes();
    line.resize(1024 * 1024, b'x');
    line.push(b'\n');
    stream.write_all(&line).unwrap();
    let next = marker("nextline");
    stream
        .write_all(format!("<13>Nov 20 10:00:01 web01 app: {next}\n").as_bytes())
        .unwrap();
    node.wait_for(&next, 1);
    assert!(node.search(&long).is_empty());
    assert!(node.log().contains("line longer than the limit"));
}

#[test]
fn a_slow_sender_does_not_hold_up_others() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let slow_word = marker("slow");
    let slow_frame = valid(&slow_word);
    let mut slow = node.connect();
    slow.set_nodelay(true).unwrap();
    let (half, rest) = slow_frame.split_at(slow_frame.len() / 2);
    for b in half {
        slow.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let fast = marker("fast");
    node.send_tcp(&valid(&fast));
    node.wait_for(&fast, 1);
    assert!(node.search(&slow_word).is_empty());
    for b in rest {
        slow.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    node.wait_for(&slow_word, 1);
}

#[test]
fn many_idle_connections_do_not_stop_a_new_sender() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let idle: Vec<TcpStream> = (0..500).map(|_| node.connect()).collect();
    let word = marker("pastidle");
    node.send_tcp(&valid(&word));
    node.wait_for(&word, 1);
    drop(idle);
}

/// Issue 13's token hygiene defect: a `Meniscus` SD-ID in another case, and lines that fail to
/// parse but carry a `meniscus` token, stored their token.
#[test]
fn a_token_never_reaches_storage_whatever_the_sd_id_case_or_a_broken_line() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let acme = node.create_tenant("acme");
    let tag = marker("hygiene");
    let lines = [
        format!("<13>1 2026-11-20T10:00:00Z web01 app - - [Meniscus tenant=\"acme\" token=\"{acme}\"] {tag} one"),
        format!("<13>1 2026-11-20T10:00:00Z web01 app - - [MENISCUS@32473 tenant=\"acme\" token=\"{acme}\"] {tag} two"),
        // Broken structured data: stored whole with a parse error, token redacted.
        format!("<13>1 2026-11-20T10:00:00Z web01 app - - [meniscus token=\"{acme}\" {tag} three"),
        format!("{tag} four garbage Meniscus TOKEN={acme}"),
    ];
    for line in &lines {
        node.send_tcp(&octet_counted(line));
    }
    node.wait_for_as(&acme, &tag, 2);
    node.wait_for(&tag, 2);
    let mut stored = node.search_as(&acme, &tag);
    stored.extend(node.search(&tag));
    assert_eq!(stored.len(), 4, "{stored:#?}");
    for event in &stored {
        let text = event.to_string();
        assert!(!text.contains(&acme), "the token was stored: {text}");
    }
}
