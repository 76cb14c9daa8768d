//! Graceful stop: SIGTERM exits 0, and everything acknowledged before it is searchable after a
//! restart — also when SIGTERM arrives while publishes are in flight.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{distinct, ids, ndjson, post_events, Node, TestDir};
use serde_json::{json, Value};

const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn sigterm_while_idle_exits_zero() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    assert_eq!(node.readyz(), 200);
    let status = node.sigterm(STOP_TIMEOUT);
    assert!(status.success(), "exit status after SIGTERM: {status:?}");

    // Restarting on the same directory works and keeps the credentials.
    let creds_before = std::fs::read(dir.data_dir().join("credentials.json")).unwrap();
    let node = Node::start(&dir, &[]);
    // Not at once: see `ready_line_means_healthy_after_restart`.
    let healthy = common::poll_until(Duration::from_secs(10), || {
        (node.readyz() == 200).then_some(())
    });
    assert!(
        healthy.is_some(),
        "readyz never answered 200 after the restart"
    );
    assert_eq!(
        std::fs::read(dir.data_dir().join("credentials.json")).unwrap(),
        creds_before,
        "credentials.json must not change on restart"
    );
    assert_eq!(node.total(&node.creds.default, "*"), 0);
    let status = node.sigterm(STOP_TIMEOUT);
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}

/// The ready line promises a node that takes writes; on a restart (when the bootstrap has nothing
/// to propose) it could be printed before the Raft driver reports leadership, so /readyz
/// answered 503 for the first few milliseconds (a publish in that window still succeeds: it
/// waits).
#[test]
fn ready_line_means_healthy_after_restart() {
    let dir = TestDir::new();
    Node::start(&dir, &[]).sigterm(STOP_TIMEOUT);
    for _ in 0..5 {
        let node = Node::start(&dir, &[]);
        let r = node.get("/readyz", None);
        assert_eq!(r.status, 200, "readyz right after the ready line: {r:?}");
        node.sigkill();
    }
}

#[cfg(unix)]
#[test]
fn credentials_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let mode = std::fs::metadata(dir.data_dir().join("credentials.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "credentials.json mode {:o}",
        mode & 0o777
    );
    node.sigterm(STOP_TIMEOUT);
}

#[test]
fn events_acked_before_sigterm_survive_a_restart() {
    let dir = TestDir::new();
    // A long commit interval: the acked events are certainly not yet in a committed index
    // segment when SIGTERM arrives, so the stop itself must commit (or the restart replay).
    let node = Node::start(&dir, &["--commit-interval-ms", "60000"]);
    let token = node.creds.default.clone();
    let events: Vec<Value> = (0..300)
        .map(|i| json!({"id": format!("t-{i}"), "message": format!("before sigterm {i}")}))
        .collect();
    for chunk in events.chunks(100) {
        node.publish_ndjson(&token, chunk);
    }
    let status = node.sigterm(STOP_TIMEOUT);
    assert!(status.success(), "exit status after SIGTERM: {status:?}");

    let node = Node::start(&dir, &[]);
    node.wait_total(&token, "*", 300);
    let found = distinct(&ids(&node.search_all(&token, "*", 1000)));
    assert_eq!(found, ids(&events).into_iter().collect::<HashSet<_>>());
    node.sigterm(STOP_TIMEOUT);
}

#[test]
fn sigterm_during_publishing_exits_zero_and_keeps_every_ack() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let token = node.creds.default.clone();
    let base = node.base.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let sent = Arc::new(Mutex::new(HashSet::new()));

    let publishers: Vec<_> = (0..2)
        .map(|p| {
            let (stop, acked, sent, token, base) = (
                stop.clone(),
                acked.clone(),
                sent.clone(),
                token.clone(),
                base.clone(),
            );
            std::thread::spawn(move || {
                let http = common::client(Duration::from_secs(30));
                let mut n = 0;
                let mut errors = 0;
                while !stop.load(Ordering::SeqCst) && errors < 3 {
                    let batch: Vec<Value> = (0..50)
                        .map(|i| json!({"id": format!("p{p}-{n}-{i}"), "message": "in flight"}))
                        .collect();
                    sent.lock().unwrap().extend(ids(&batch));
                    match post_events(
                        &http,
                        &base,
                        Some(&token),
                        Some("application/x-ndjson"),
                        ndjson(&batch),
                    ) {
                        Ok(r) if r.status == 200 => acked.lock().unwrap().extend(ids(&batch)),
                        // After SIGTERM: refused connections, or an error answer; never a
                        // half-stored batch (checked below).
                        _ => errors += 1,
                    }
                    n += 1;
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(700));
    let status = node.sigterm(STOP_TIMEOUT);
    stop.store(true, Ordering::SeqCst);
    for p in publishers {
        p.join().unwrap();
    }
    assert!(
        status.success(),
        "exit status after SIGTERM under load: {status:?}"
    );
    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    assert!(!acked.is_empty(), "nothing was acknowledged before SIGTERM");

    let node = Node::start(&dir, &[]);
    let mut all = Vec::new();
    let ok = common::poll_until(common::SEARCHABLE_TIMEOUT, || {
        all = node.try_search_all(&token, "*", 10_000).ok()?;
        let found: HashSet<String> = ids(&all).into_iter().collect();
        acked.is_subset(&found).then_some(())
    });
    assert!(
        ok.is_some(),
        "acknowledged events missing after SIGTERM and restart"
    );
    let found = distinct(&ids(&all));
    assert!(found.is_subset(&sent));
    // Batches are all-or-nothing: every batch is either wholly present or wholly absent.
    let mut prefixes: std::collections::HashMap<String, usize> = Default::default();
    for id in &found {
        *prefixes
            .entry(id.rsplit_once('-').unwrap().0.to_owned())
            .or_default() += 1;
    }
    let partial: Vec<_> = prefixes.iter().filter(|(_, n)| **n != 50).collect();
    assert!(partial.is_empty(), "partially stored batches: {partial:?}");
    node.sigterm(STOP_TIMEOUT);
}
