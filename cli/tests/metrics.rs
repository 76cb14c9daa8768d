//! `GET /metrics` speaks Prometheus text and follows the node's state.

mod common;

use common::{Node, TestDir};
use serde_json::json;

/// The value of series `name` (with its labels, e.g. `name{group="0"}`).
fn gauge(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from:\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

/// The metadata group's commit index (a single node has no other group).
const COMMIT: &str = r#"meniscus_raft_commit_index{group="0"}"#;

#[test]
fn metrics_expose_raft_progress_in_prometheus_text() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let client = common::client(std::time::Duration::from_secs(10));
    let scrape = || {
        let response = client.get(node.url("/metrics")).send().unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        response.text().unwrap()
    };
    let before = scrape();
    assert!(before.contains("# TYPE meniscus_raft_commit_index gauge"));
    assert_eq!(gauge(&before, "meniscus_writable"), 1);
    let token = node.creds.default.clone();
    let ack = node.publish_json(&token, &json!([{"message": "a"}, {"message": "b"}]));
    let after = scrape();
    assert!(gauge(&after, COMMIT) >= ack["commit_index"].as_u64().unwrap());
    assert!(gauge(&after, COMMIT) > gauge(&before, COMMIT));
    assert_eq!(gauge(&after, r#"meniscus_raft_leader{group="0"}"#), 1);
}
