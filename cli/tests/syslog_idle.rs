//! Idle syslog connections: ten thousand of them leave the node serving new senders in bounded
//! memory, and an idle timeout closes them (and counts them) while busy senders stay connected.

mod syslog_common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use syslog_common::{marker, octet_counted, Dir, Listeners, SyslogNode};

/// Idle connections the first test opens when the open-file limit allows.
const IDLE: usize = 10_000;
/// Descriptors this test process keeps for everything else (the other test, HTTP clients, ...).
const SPARE_FDS: u64 = 1_024;
/// How much the node's resident memory may grow for [`IDLE`] idle connections.
const MAX_RSS_GROWTH_MIB: u64 = 300;
const WAIT: Duration = Duration::from_secs(30);

fn valid(msg: &str) -> Vec<u8> {
    octet_counted(&format!("<13>1 2026-11-20T10:00:00Z web01 app - - - {msg}"))
}

/// Raises this process's soft open-file limit as far as its hard limit allows and returns how
/// many idle connections fit (at most `wanted`), saying why when that is fewer.
fn idle_connections_that_fit(wanted: usize) -> usize {
    let needed = wanted as u64 + SPARE_FDS;
    let limit = match rlimit::increase_nofile_limit(needed) {
        Ok(limit) => limit,
        Err(e) => {
            eprintln!("cannot read or raise RLIMIT_NOFILE ({e}); trying {wanted} connections");
            return wanted;
        }
    };
    let fit = usize::try_from(limit.saturating_sub(SPARE_FDS)).unwrap_or(usize::MAX);
    if fit < wanted {
        eprintln!(
            "RLIMIT_NOFILE is {limit} even after raising the soft limit to the hard limit, \
             which leaves room for {fit} of the {wanted} idle connections (beside {SPARE_FDS} \
             kept for the rest): testing with {fit}. Raise the hard limit (ulimit -Hn, \
             LimitNOFILE=) to test {wanted}."
        );
    }
    fit.min(wanted)
}

/// Opens `n` TCP connections to `node`'s syslog-tcp listener, sending nothing.
fn open_idle(node: &SyslogNode, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            TcpStream::connect(node.tcp)
                .unwrap_or_else(|e| panic!("idle connection {i} of {n}: {e}"))
        })
        .collect()
}

#[test]
fn ten_thousand_idle_connections_leave_a_new_sender_served_in_bounded_memory() {
    let n = idle_connections_that_fit(IDLE);
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let warm = marker("warm");
    node.send_tcp(&valid(&warm));
    node.wait_for(&warm, 1);
    node.wait_until_indexed();
    let rss_before = node.rss_kib();

    let started = Instant::now();
    let idle = open_idle(&node, n);
    let opened = started.elapsed();
    node.wait_for_metric(
        "meniscus_syslog_open_connections",
        "tcp",
        |open| open >= n as u64,
        WAIT,
    );
    let accepted = started.elapsed();

    // A new sender is served while every idle connection is held open.
    let word = marker("pastidle");
    node.send_tcp(&valid(&word));
    node.wait_for(&word, 1);
    let served = started.elapsed();

    let rss_after = node.rss_kib();
    let growth_kib = rss_after.saturating_sub(rss_before);
    eprintln!(
        "{n} idle connections: opened in {opened:?}, all accepted after {accepted:?}, new sender \
         searchable after {served:?}; node RSS {rss_before} KiB -> {rss_after} KiB \
         ({:.1} KiB per connection)",
        growth_kib as f64 / n as f64
    );
    assert!(
        growth_kib / 1024 < MAX_RSS_GROWTH_MIB,
        "node memory grew by {} MiB for {n} idle connections",
        growth_kib / 1024
    );
    // None was closed: the default idle timeout is minutes.
    assert_eq!(node.metric("meniscus_syslog_idle_closed_total", "tcp"), 0);
    drop(idle);
    node.wait_for_metric("meniscus_syslog_open_connections", "tcp", |o| o == 0, WAIT);
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout_and_counted() {
    const N: usize = 200;
    let dir = Dir::new();
    let listeners = Listeners {
        args: vec!["--syslog-idle-timeout-secs".into(), "2".into()],
        ..Listeners::default()
    };
    let node = SyslogNode::start_with(&dir, &listeners);
    let mut idle = open_idle(&node, N);
    // A sender that sends every half second, until the checks are done, stays connected. (It
    // must not stop early: on a loaded machine the checks can outlast the timeout.)
    let busy_word = marker("busy");
    let mut busy = node.connect();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (stop, word) = (stop.clone(), busy_word.clone());
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::SeqCst) {
                busy.write_all(&valid(&word)).unwrap();
                sent += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            (busy, sent)
        })
    };
    let opened = Instant::now();

    node.wait_for_metric(
        "meniscus_syslog_idle_closed_total",
        "tcp",
        |closed| closed >= N as u64,
        WAIT,
    );
    // Every idle connection sees the node close it.
    for stream in &mut idle {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("an idle connection was not closed: {other:?}"),
        }
    }
    node.wait_for_metric("meniscus_syslog_open_connections", "tcp", |o| o == 1, WAIT);
    while opened.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        node.metric("meniscus_syslog_idle_closed_total", "tcp"),
        N as u64
    );
    // The busy sender was not cut off: all its messages are stored, and it can send more.
    stop.store(true, Ordering::SeqCst);
    let (mut busy, sent) = sender.join().unwrap();
    let last = marker("stillopen");
    busy.write_all(&valid(&last)).unwrap();
    node.wait_for(&last, 1);
    node.wait_for(&busy_word, sent);
    assert!(
        node.log()
            .contains("syslog connection closed: idle for the idle timeout"),
        "no log line for idle connections"
    );
}

#[test]
fn a_sender_past_the_connection_limit_waits_until_a_connection_closes() {
    let dir = Dir::new();
    let listeners = Listeners {
        args: vec!["--syslog-max-connections".into(), "3".into()],
        ..Listeners::default()
    };
    let node = SyslogNode::start_with(&dir, &listeners);
    let mut idle = open_idle(&node, 3);
    node.wait_for_metric("meniscus_syslog_open_connections", "tcp", |o| o == 3, WAIT);
    node.wait_for_metric(
        "meniscus_syslog_limit_reached_total",
        "tcp",
        |n| n >= 1,
        WAIT,
    );

    // The fourth sender's connection waits in the backlog: nothing it sends is read yet.
    let word = marker("pastlimit");
    let mut waiting = node.connect();
    waiting.write_all(&valid(&word)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(node.count(&word), 0);
    assert_eq!(node.metric("meniscus_syslog_open_connections", "tcp"), 3);

    // One idle connection closes: the waiting sender is accepted and served.
    drop(idle.pop());
    node.wait_for(&word, 1);
    assert!(node.log().contains("syslog connection limit reached"));
}
