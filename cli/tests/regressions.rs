//! One regression test per defect found by trying Meniscus as a new user and as an attacker
//! (issue 13), named after the defect.

mod common;

use common::{Node, Resp, TestDir};
use serde_json::{json, Value};

fn rotate(node: &Node, tenant: &str, body: &Value) -> Resp {
    node.post_json(
        &format!("/v1/tenants/{tenant}/tokens"),
        Some(&node.creds.admin),
        body,
    )
}

fn works(node: &Node, token: &str) -> bool {
    node.search(token, "*", Some(1), None).status == 200
}

#[test]
fn grace_seconds_zero_revokes_every_previous_token_not_only_the_newest() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let first = node.create_tenant("acme");
    let r = rotate(&node, "acme", &json!({"grace_seconds": 3600}));
    assert_eq!(r.status, 200, "{r:?}");
    let second = r.body["token"].as_str().unwrap().to_owned();
    assert!(works(&node, &first), "in its grace period");
    let r = rotate(&node, "acme", &json!({"grace_seconds": 0}));
    assert_eq!(r.status, 200, "{r:?}");
    let third = r.body["token"].as_str().unwrap().to_owned();
    assert!(
        !works(&node, &first),
        "a token in an earlier grace period still works"
    );
    assert!(!works(&node, &second));
    assert!(works(&node, &third));
    // A longer grace never extends an earlier, shorter one.
    let r = rotate(&node, "acme", &json!({"grace_seconds": 60}));
    let fourth = r.body["token"].as_str().unwrap().to_owned();
    assert!(works(&node, &third) && works(&node, &fourth));
    assert!(!works(&node, &first));
}

#[test]
fn grace_seconds_out_of_range_is_a_400_not_a_panic_or_a_wrap() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let token = node.create_tenant("acme");
    for grace in [
        json!(u64::MAX),
        json!(9_223_372_036u64),
        json!(315_360_001u64),
    ] {
        let r = rotate(&node, "acme", &json!({"grace_seconds": grace}));
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_parameters"),
            "{grace}: {r:?}"
        );
        assert!(r.message().contains("at most"), "{r:?}");
    }
    for grace in [json!(-1), json!("soon"), json!(1.5)] {
        let r = rotate(&node, "acme", &json!({"grace_seconds": grace}));
        assert_eq!(
            (r.status, r.code()),
            (400, "invalid_json"),
            "{grace}: {r:?}"
        );
    }
    assert!(works(&node, &token), "nothing was rotated");
    let r = rotate(&node, "acme", &json!({"grace_seconds": 315_360_000u64}));
    assert_eq!(r.status, 200, "ten years is allowed: {r:?}");
}

#[test]
fn every_error_is_in_the_json_envelope_with_its_documented_status() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let admin = node.creds.admin.clone();
    let http = &node.http;
    let envelope = |r: reqwest::blocking::Response| {
        let status = r.status().as_u16();
        let kind = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body: Value = r.json().unwrap_or(Value::Null);
        assert!(kind.starts_with("application/json"), "{status}: {kind}");
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{status}: {body}"
        );
        (status, body["error"]["code"].as_str().unwrap().to_owned())
    };
    let cases: Vec<(&str, reqwest::blocking::RequestBuilder, u16, &str)> = vec![
        (
            "malformed tenant JSON",
            http.post(node.url("/v1/tenants"))
                .bearer_auth(&admin)
                .body("{\"name\":"),
            400,
            "invalid_json",
        ),
        (
            "tenant JSON without a name",
            http.post(node.url("/v1/tenants"))
                .bearer_auth(&admin)
                .header("content-type", "application/json")
                .body("{}"),
            400,
            "invalid_json",
        ),
        (
            "tenant JSON of the wrong type",
            http.post(node.url("/v1/tenants"))
                .bearer_auth(&admin)
                .header("content-type", "application/json")
                .body("{\"name\": 7}"),
            400,
            "invalid_json",
        ),
        (
            "malformed rotation JSON",
            http.post(node.url("/v1/tenants/default/tokens"))
                .bearer_auth(&admin)
                .header("content-type", "application/json")
                .body("[1,"),
            400,
            "invalid_json",
        ),
        (
            "a node id that is not a number",
            http.delete(node.url("/v1/cluster/nodes/abc"))
                .bearer_auth(&admin),
            400,
            "invalid_parameters",
        ),
        (
            "a method the route does not take",
            http.put(node.url("/v1/events")).bearer_auth(&admin),
            405,
            "method_not_allowed",
        ),
        (
            "an unknown route",
            http.get(node.url("/v2/nothing")),
            404,
            "not_found",
        ),
        (
            "an oversize admin body",
            http.post(node.url("/v1/tenants"))
                .bearer_auth(&admin)
                .body(vec![b' '; 1024 * 1024]),
            413,
            "payload_too_large",
        ),
    ];
    for (what, request, status, code) in cases {
        let (got_status, got_code) = envelope(request.send().unwrap());
        assert_eq!((got_status, got_code.as_str()), (status, code), "{what}");
    }
}

#[test]
fn healthz_is_liveness_and_readyz_is_200_on_followers_too() {
    let cluster = common::cluster::start(&common::certs_args());
    cluster.wait_writable();
    let mut leaders = 0;
    for node in 0..3 {
        let (status, body) = cluster.get(node, "/readyz", "");
        assert_eq!(status, 200, "node {node} is ready: {body}");
        assert_eq!(body["ready"], true);
        let (status, body) = cluster.get(node, "/healthz", "");
        assert_eq!(status, 200, "node {node} is live: {body}");
        assert_eq!(cluster.get(node, "/livez", "").0, 200);
        leaders += usize::from(body["writable"] == true);
    }
    assert_eq!(leaders, 1, "one node leads the metadata group");
}

#[test]
fn severity_and_facility_search_the_vocabulary_publish_accepts() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let token = node.creds.default.clone();
    node.publish_json(
        &token,
        &json!([
            {"message": "one", "severity": "error", "facility": "auth"},
            {"message": "two", "severity": 3, "facility": 4},
            {"message": "three", "severity": "ERR"},
            {"message": "four", "severity": "warn"},
        ]),
    );
    node.wait_total(&token, "*", 4);
    for (query, expected) in [
        ("severity:error", 3),
        ("severity:3", 3),
        ("severity:err", 3),
        ("severity:ERR", 3),
        ("severity:warning", 1),
        ("severity:4", 1),
        ("facility:4", 2),
        ("facility:AUTH", 2),
        ("* -severity:error", 1),
    ] {
        assert_eq!(node.total(&token, query), expected, "{query}");
    }
}

#[test]
fn tenant_create_saves_the_token_so_the_next_search_with_tenant_works() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let out = node.cli(&["tenant", "create", "acme"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = node.cli(&["search", "*", "--tenant", "acme"], "");
    assert!(
        out.status.success(),
        "search --tenant acme after tenant create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = node.cli(
        &["tenant", "rotate-token", "acme", "--grace-seconds", "0"],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = node.cli(&["search", "*", "--tenant", "acme"], "");
    assert!(
        out.status.success(),
        "search --tenant acme after a rotation: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
