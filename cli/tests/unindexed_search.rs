//! Events are searchable once applied, before the index commits them: searches scan the tail of
//! unindexed events (for the queries scanning supports), and nothing is counted twice once the
//! index has them.

mod common;

use std::time::Duration;

use common::{distinct, ids, Node, TestDir};
use serde_json::{json, Value};

const EVENTS: usize = 600;

fn event(i: usize) -> Value {
    json!({
        "id": format!("ev-{i:04}"),
        // Seconds out of publish order, so newest first is not arrival order.
        "timestamp": format!("2026-03-01T00:{:02}:{:02}Z", (i * 7) % 60, (i * 13) % 60),
        "host": format!("web-{}", i % 4),
        "severity": if i.is_multiple_of(3) { "err" } else { "info" },
        "message": format!("request {i} handled by web-{} disk {}", i % 4, if i.is_multiple_of(5) { "full" } else { "fine" }),
    })
}

/// The queries checked, with how many of the events each matches.
fn expected() -> Vec<(&'static str, usize)> {
    let count = |f: &dyn Fn(usize) -> bool| (0..EVENTS).filter(|i| f(*i)).count();
    vec![
        ("*", EVENTS),
        ("host:web-1", count(&|i| i % 4 == 1)),
        ("\"disk full\"", count(&|i| i % 5 == 0)),
        (
            "full AND severity:err",
            count(&|i| i % 5 == 0 && i % 3 == 0),
        ),
        ("handled -full", count(&|i| i % 5 != 0)),
    ]
}

/// What every page of every query finds: (query, total, ids newest first).
fn answers(node: &Node, token: &str) -> Vec<(String, usize, Vec<String>)> {
    expected()
        .into_iter()
        .map(|(q, _)| {
            let all = node.search_all(token, q, 70);
            let found = ids(&all);
            assert_eq!(distinct(&found).len(), found.len(), "{q:?} repeats events");
            let stamps: Vec<&str> = all
                .iter()
                .map(|e| e["timestamp"].as_str().unwrap())
                .collect();
            assert!(
                stamps.windows(2).all(|w| w[0] >= w[1]),
                "{q:?} is not newest first"
            );
            (q.to_owned(), found.len(), found)
        })
        .collect()
}

#[test]
fn applied_events_are_searchable_before_the_index_commits_them() {
    let dir = TestDir::new();
    // The index commits only at shutdown: whatever a search finds before, it found by scanning.
    let node = Node::start(&dir, &["--commit-interval-ms", "3600000"]);
    let token = node.creds.default.clone();
    let sent: Vec<Value> = (0..EVENTS).map(event).collect();
    let mut commit_index = 0;
    for batch in sent.chunks(100) {
        let answer = node.publish_json(&token, &Value::Array(batch.to_vec()));
        commit_index = answer["commit_index"].as_u64().unwrap();
    }
    // Read your writes: a search naming the last publish's index waits until it is applied
    // here (not indexed: the index commits once an hour).
    let first = node.get(
        &format!("/v1/search?q=*&limit=1&min_index={commit_index}"),
        Some(&token),
    );
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.body["total"], EVENTS as u64, "{first:?}");
    let before = answers(&node, &token);
    for ((q, want), (_, found, _)) in expected().into_iter().zip(&before) {
        assert_eq!(*found, want, "{q:?} before the index commit");
    }
    // A query scanning cannot answer (a range) sees indexed events only: none yet.
    assert_eq!(node.total(&token, "host:[web-0 TO web-9]"), 0);
    // And they are not indexed yet: their bytes wait for the indexer.
    let metrics = common::client(Duration::from_secs(10))
        .get(node.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let backlog = metric(&metrics, "meniscus_indexing_backlog_bytes");
    assert!(backlog > 0.0, "no indexing backlog in:\n{metrics}");

    // Killed before any index commit and restarted, the node finds the same events at once,
    // from the log: still none of them indexed.
    node.sigkill();
    let node = Node::start(&dir, &["--commit-interval-ms", "3600000"]);
    assert_eq!(node.total(&token, "host:[web-0 TO web-9]"), 0);
    assert_eq!(answers(&node, &token), before, "after kill -9 and restart");

    // Shutdown commits the index; restarted, the same events come from it, once each.
    assert!(node.sigterm(Duration::from_secs(30)).success());
    let node = Node::start(&dir, &["--commit-interval-ms", "3600000"]);
    assert_eq!(node.total(&token, "host:[web-0 TO web-9]"), EVENTS as u64);
    assert_eq!(answers(&node, &token), before);
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
