//! RELP with a real rsyslog (`omrelp`): the node is killed with SIGKILL twice while rsyslog
//! forwards 100,000 messages, and restarted each time on the same data directory and port.
//! Every message must be searchable at the end; duplicates are counted and must stay within
//! what rsyslog resends after a reconnect (its unacknowledged window, 128 messages).
//!
//! `MENISCUS_RELP_MESSAGES=N` changes the number of messages (default 100,000).

mod syslog_common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use syslog_common::rsyslog::{rsyslogd, send_lines, Rsyslog};
use syslog_common::{marker, Dir, Listeners, SyslogNode};

const DEFAULT_MESSAGES: usize = 100_000;
/// rsyslog's default RELP window (`omrelp` `windowSize`): messages sent but not yet answered.
const RELP_WINDOW: usize = 128;
/// How long the writer takes to hand all messages to rsyslog.
const SEND_TIME: Duration = Duration::from_secs(20);
/// Lines written between two checks of the pace.
const PACE_CHUNK: usize = 500;
/// How long the whole run may take to get every message searchable.
const DEADLINE: Duration = Duration::from_secs(240);

fn messages() -> usize {
    std::env::var("MENISCUS_RELP_MESSAGES")
        .ok()
        .map(|v| v.parse().expect("MENISCUS_RELP_MESSAGES is a number"))
        .unwrap_or(DEFAULT_MESSAGES)
}

/// The omrelp action, with a disk-assisted queue that holds messages while the node is down
/// and retries forever.
fn omrelp(port: u16) -> String {
    format!(
        r#"action(type="omrelp" target="127.0.0.1" port="{port}"
       template="RSYSLOG_SyslogProtocol23Format"
       queue.type="LinkedList" queue.filename="relp_out" queue.saveOnShutdown="on"
       action.resumeRetryCount="-1" action.resumeInterval="1")"#
    )
}

/// How many times each sequence number was found.
fn sequence_counts(node: &SyslogNode, word: &str) -> HashMap<usize, usize> {
    let mut seen = HashMap::new();
    for message in node.all_messages(word) {
        let seq = message
            .rsplit_once(" seq")
            .and_then(|(_, n)| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no sequence number in {message:?}"));
        *seen.entry(seq).or_insert(0) += 1;
    }
    seen
}

#[test]
fn rsyslog_omrelp_loses_nothing_when_the_node_is_killed_twice() {
    let Some(binary) = rsyslogd() else { return };
    let n = messages();
    let dir = Dir::new();
    let start = Instant::now();
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut node = SyslogNode::start_with(
        &dir,
        &Listeners {
            relp: Some(any_port),
            ..Listeners::default()
        },
    );
    // Restarts keep the port: rsyslog reconnects to the address it was configured with.
    let same_port = Listeners {
        relp: Some(node.relp()),
        ..Listeners::default()
    };
    let modules = r#"module(load="omrelp")"#;
    let rsyslog = Rsyslog::start(
        &binary,
        &dir.path,
        "rsyslog",
        modules,
        &omrelp(node.relp().port()),
    );

    let word = marker("relpkill");
    let input = rsyslog.input;
    let lines_word = word.clone();
    let sending = Instant::now();
    // Paced, so that the kills land while rsyslog is still sending: the node takes the
    // messages faster than that, and would otherwise be done before the first kill.
    let writer = std::thread::spawn(move || {
        let pace = Instant::now();
        let lines = (0..n).map(|i| {
            if i % PACE_CHUNK == 0 {
                let due = SEND_TIME.mul_f64(i as f64 / n as f64);
                std::thread::sleep(due.saturating_sub(pace.elapsed()));
            }
            format!("<13>1 - testhost relptest - - - {lines_word} seq{i}")
        });
        send_lines(input, lines);
    });

    // Kill at about a third and two thirds of the sending time. (Going by what is searchable
    // does not work: after a restart the index catches up from the log in bursts.)
    let mut kills = Vec::new();
    for fraction in [0.3, 0.65] {
        let due = SEND_TIME.mul_f64(fraction);
        std::thread::sleep(due.saturating_sub(sending.elapsed()));
        let searchable = node.count(&word);
        assert!(
            !writer.is_finished(),
            "the writer finished before the kill: the kill would test nothing"
        );
        node.kill();
        kills.push(searchable);
        node = SyslogNode::start_with(&dir, &same_port);
    }
    writer.join().expect("the writer thread");
    let written_after = start.elapsed();

    // Wait until every sequence number is searchable.
    let seen = loop {
        let total = node.count(&word);
        if total >= n as u64 {
            let seen = sequence_counts(&node, &word);
            if seen.len() == n {
                break seen;
            }
        }
        if start.elapsed() > DEADLINE {
            let seen = sequence_counts(&node, &word);
            let missing: Vec<usize> = (0..n).filter(|i| !seen.contains_key(i)).take(20).collect();
            panic!(
                "{} of {n} sequence numbers searchable after {:?}; first missing: {missing:?}\nrsyslog log:\n{}\nnode log:\n{}",
                seen.len(),
                start.elapsed(),
                rsyslog.log(),
                node.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(seen.keys().all(|&seq| seq < n), "unknown sequence numbers");
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    let resent_twice = seen.values().filter(|&&c| c > 2).count();
    let suspended = rsyslog
        .log()
        .lines()
        .filter(|l| l.contains("forwarding to server") && l.contains("suspending"))
        .count();
    eprintln!(
        "relp: {n} messages through rsyslog omrelp, node killed with -9 twice (when {kills:?} were searchable); \
         rsyslog suspended the action {suspended} times; all searchable after {:?} (writer done after {written_after:?}); \
         {duplicates} duplicates, {resent_twice} messages stored more than twice",
        start.elapsed()
    );
    let bound = kills.len() * RELP_WINDOW;
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates: more than rsyslog's window of {RELP_WINDOW} per reconnect ({bound})"
    );
}
