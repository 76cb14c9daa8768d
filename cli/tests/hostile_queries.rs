//! Search queries from a hostile or careless tenant: refused with a 400 in the JSON envelope
//! before they can recurse deeply or cost much, and the node keeps serving.

mod common;

use common::{Node, TestDir};
use serde_json::json;

fn nested(levels: usize) -> String {
    format!("{}error{}", "(".repeat(levels), ")".repeat(levels))
}

#[test]
fn deeply_nested_long_and_wide_queries_are_refused_and_the_process_stays_up() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let token = node.creds.default.clone();
    node.publish_json(&token, &json!({"message": "an error happened"}));
    node.wait_total(&token, "error", 1);
    assert_eq!(node.total(&token, &nested(20)), 1, "modest nesting works");

    // 3,000 levels fit in a URL; 100,000 (200 KB) only in a POST body.
    let r = node.search(&token, &nested(3_000), None, None);
    assert_eq!((r.status, r.code()), (400, "invalid_query"), "3,000 levels");
    assert!(r.message().contains("nests parentheses"), "{}", r.message());
    for (levels, needle) in [(3_000, "nests parentheses"), (100_000, "bytes long")] {
        let r = node.post_json("/v1/search", Some(&token), &json!({"q": nested(levels)}));
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_query"),
            "{levels} levels"
        );
        assert!(r.message().contains(needle), "{}", r.message());
    }
    // POST takes the same parameters as GET.
    let r = node.post_json(
        "/v1/search",
        Some(&token),
        &json!({"q": "error", "limit": 5}),
    );
    assert_eq!(
        (r.status, r.body["total"].as_u64()),
        (200, Some(1)),
        "{r:?}"
    );
    let r = node.post_json(
        "/v1/search",
        Some(&token),
        &json!({"q": "error", "bogus": 1}),
    );
    assert_eq!((r.status, r.code()), (400, "invalid_parameters"), "{r:?}");
    let r = node.post_json("/v1/search", Some("mns_wrong"), &json!({"q": "error"}));
    assert_eq!(r.status, 401, "{r:?}");
    let r = node.post_json(
        "/v1/search",
        Some(&token),
        &json!({"q": "x".repeat(2 * 1024 * 1024)}),
    );
    assert_eq!(
        (r.status, r.code()),
        (413, "payload_too_large"),
        "a 2 MiB search body"
    );
    let r = common::try_send(
        node.http
            .post(node.url("/v1/search"))
            .bearer_auth(&token)
            .body("{\"q\": "),
    )
    .unwrap();
    assert_eq!((r.status, r.code()), (400, "invalid_parameters"), "{r:?}");
    let wide = vec!["error"; 5_000].join(" OR ");
    let r = node.search(&token, &wide, None, None);
    assert_eq!((r.status, r.code()), (400, "invalid_query"), "{r:?}");

    // Still up, and still answering.
    assert_eq!(node.total(&token, "error"), 1);
}

#[test]
fn a_time_range_that_ends_before_it_starts_is_a_400() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let token = node.creds.default.clone();
    let r = node.search_with(
        &token,
        &[
            ("q", "*".to_owned()),
            ("from", "2026-02-01T00:00:00Z".to_owned()),
            ("to", "2026-01-01T00:00:00Z".to_owned()),
        ],
    );
    assert_eq!((r.status, r.code()), (400, "invalid_parameters"), "{r:?}");
    assert!(r.message().contains("from is later than to"), "{r:?}");
}
