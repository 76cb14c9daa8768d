//! Acceptance 3: tenant isolation and authentication. Tenant B's token finds none of tenant A's
//! events for any query; admin routes refuse tenant tokens; bad or missing tokens get 401; token
//! rotation revokes (grace 0) or keeps (grace > 0) the previous token.

mod common;

use common::{ids, Node, TestDir};
use serde_json::{json, Value};

fn a_events() -> Vec<Value> {
    (0..30)
        .map(|i| {
            json!({
                "id": format!("a-secret-{i}"),
                "host": "alpha-host",
                "app": "alpha-app",
                "severity": "crit",
                "message": format!("alphaonlyterm payload {i}"),
                "structured_data": {"origin@1": {"team": "alpha"}},
                "fields": {"customer": "alpha-customer"},
            })
        })
        .collect()
}

fn b_events() -> Vec<Value> {
    (0..5)
        .map(|i| json!({"id": format!("b-{i}"), "host": "beta-host", "message": format!("betaonlyterm {i}")}))
        .collect()
}

#[test]
fn tenants_see_only_their_own_events() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let a = node.create_tenant("tenant-a");
    let b = node.create_tenant("tenant_b");
    assert_ne!(a, b);
    assert!(
        a.len() >= 22,
        "a token of >= 128 bits, got {} chars",
        a.len()
    );

    let a_commit = node.publish_json(&a, &Value::Array(a_events()))["commit_index"]
        .as_u64()
        .unwrap();
    node.publish_ndjson(&b, &b_events());
    // The default tenant publishes too, with an id that collides with one of A's.
    node.publish_json(
        &node.creds.default,
        &json!({"id": "a-secret-0", "message": "default tenant's own event"}),
    );
    node.wait_total(&a, "*", 30);
    node.wait_total(&b, "*", 5);
    node.wait_total(&node.creds.default, "*", 1);

    // A's events are indexed too (only the index answers `fields.*` and `structured_data.*`),
    // so B's queries below could find them if isolation failed.
    assert_eq!(
        node.total_after(&a, "fields.customer:alpha-customer", a_commit),
        30
    );
    let a_ids: std::collections::HashSet<String> =
        ids(&node.search_all(&a, "*", 100)).into_iter().collect();
    assert_eq!(a_ids.len(), 30);

    let queries = [
        "*",
        "alphaonlyterm",
        "message:alphaonlyterm",
        "payload",
        "host:alpha-host",
        "app:alpha-app",
        "severity:crit",
        "id:a-secret-1",
        "id:\"a-secret-7\"",
        "structured_data.origin@1.team:alpha",
        "fields.customer:alpha-customer",
        "alphaonlyterm OR betaonlyterm",
        "alphaonlyterm OR *",
        "id:a-secret-0",
    ];
    for q in queries {
        let r = node.search(&b, q, Some(10_000), None);
        assert_eq!(r.status, 200, "{q}: {r:?}");
        let leaked: Vec<&Value> = r.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["tenant"] != "tenant_b" || e["id"].as_str().unwrap().starts_with("a-"))
            .collect();
        assert!(
            leaked.is_empty(),
            "B's query {q:?} returned A's events: {leaked:?}"
        );
        let total = r.body["total"].as_u64().unwrap();
        let own = r.body["events"].as_array().unwrap().len() as u64;
        assert_eq!(total, own, "{q}: total counts events B cannot see");
    }
    // A's queries do find them (the queries are meaningful).
    assert_eq!(node.total(&a, "alphaonlyterm"), 30);
    assert_eq!(node.total(&a, "host:alpha-host"), 30);
    assert_eq!(node.total(&a, "id:a-secret-1"), 1);
    assert_eq!(node.total(&a, "betaonlyterm"), 0);
    // The colliding id stayed separate per tenant: A still has its own a-secret-0.
    let r = node.search(&a, "id:a-secret-0", None, None);
    assert_eq!(r.body["events"][0]["message"], "alphaonlyterm payload 0");
    let r = node.search(&node.creds.default, "id:a-secret-0", None, None);
    assert_eq!(r.body["total"], 1);
    assert_eq!(r.body["events"][0]["message"], "default tenant's own event");
    // A cursor from A's results gives B nothing of A's.
    let page = node.search(&a, "*", Some(5), None);
    let cursor = page.body["next"].as_str().unwrap().to_owned();
    let r = node.search(&b, "*", Some(100), Some(&cursor));
    for e in r.body["events"].as_array().unwrap() {
        assert_eq!(e["tenant"], "tenant_b", "{e}");
    }
    // A tenant cannot publish into another tenant by naming it in the event.
    node.publish_json(
        &b,
        &json!({"id": "b-spoof", "tenant": "tenant-a", "message": "spoofed"}),
    );
    node.wait_total(&b, "id:b-spoof", 1);
    assert_eq!(node.total(&a, "spoofed"), 0);
    assert_eq!(node.total(&a, "*"), 30);
}

#[test]
fn authentication_and_authorization_on_every_route() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let admin = node.creds.admin.clone();
    let tenant = node.creds.default.clone();
    let event = json!({"message": "x"});
    let body = serde_json::to_vec(&event).unwrap();

    // Missing and bad tokens: 401 on every authenticated route, with a JSON error.
    let bad_tokens: [Option<&str>; 3] = [None, Some("not-a-token"), Some("")];
    for token in bad_tokens {
        let mut answers = vec![
            (
                "POST /v1/events",
                node.post_events(token, Some("application/json"), body.clone()),
            ),
            ("GET /v1/search", node.get("/v1/search?q=*", token)),
            (
                "POST /v1/tenants",
                node.post_json("/v1/tenants", token, &json!({"name": "x1"})),
            ),
            ("GET /v1/tenants", node.get("/v1/tenants", token)),
            (
                "POST /v1/tenants/default/tokens",
                node.post_json(
                    "/v1/tenants/default/tokens",
                    token,
                    &json!({"grace_seconds": 0}),
                ),
            ),
        ];
        // A malformed Authorization header (not "Bearer ...").
        let basic = common::try_send(
            node.http
                .get(node.url("/v1/search"))
                .header("authorization", format!("Basic {tenant}")),
        )
        .unwrap();
        answers.push(("GET /v1/search with Basic auth", basic));
        for (route, r) in answers {
            assert_eq!(r.status, 401, "{route} with {token:?}: {r:?}");
            assert_eq!(r.code(), "unauthorized", "{route}: {r:?}");
            assert!(!r.message().is_empty(), "{route}: {r:?}");
        }
    }

    // Tenant tokens on admin routes: 403.
    for (route, r) in [
        (
            "POST /v1/tenants",
            node.post_json("/v1/tenants", Some(&tenant), &json!({"name": "sneaky"})),
        ),
        ("GET /v1/tenants", node.get("/v1/tenants", Some(&tenant))),
        (
            "POST /v1/tenants/default/tokens",
            node.post_json(
                "/v1/tenants/default/tokens",
                Some(&tenant),
                &json!({"grace_seconds": 0}),
            ),
        ),
    ] {
        assert_eq!(r.status, 403, "{route}: {r:?}");
        assert!(!r.message().is_empty());
    }
    // The refused create did not create the tenant.
    let list = node.get("/v1/tenants", Some(&admin));
    assert_eq!(list.status, 200);
    assert_eq!(list.body["tenants"], json!(["default"]));

    // The admin token speaks for no tenant: 403 on the tenant routes.
    let r = node.post_events(Some(&admin), Some("application/json"), body.clone());
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(node.get("/v1/search?q=*", Some(&admin)).status, 403);

    // Duplicate tenant: 409; invalid names: 4xx.
    node.create_tenant("acme");
    let r = node.post_json("/v1/tenants", Some(&admin), &json!({"name": "acme"}));
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(
        node.post_json("/v1/tenants", Some(&admin), &json!({"name": "default"}))
            .status,
        409
    );
    for bad in ["", "UPPER", "has space", "../etc", &"x".repeat(64)] {
        let r = node.post_json("/v1/tenants", Some(&admin), &json!({"name": bad}));
        assert!((400..500).contains(&r.status), "tenant name {bad:?}: {r:?}");
    }
    let list = node.get("/v1/tenants", Some(&admin));
    let mut names: Vec<String> = serde_json::from_value(list.body["tenants"].clone()).unwrap();
    names.sort();
    assert_eq!(names, ["acme", "default"]);

    // Nothing was stored by any refused publish.
    node.publish_json(
        &tenant,
        &json!({"id": "marker", "message": "after the refusals"}),
    );
    node.wait_total(&tenant, "id:marker", 1);
    assert_eq!(node.total(&tenant, "*"), 1);
    assert_eq!(node.healthz(), 200);
}

#[test]
fn token_rotation_revokes_or_keeps_the_previous_token() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let admin = node.creds.admin.clone();
    let old = node.create_tenant("rot");
    node.publish_json(&old, &json!({"id": "r1", "message": "before rotation"}));

    // grace_seconds = 0: the old token is revoked at once, the new one works.
    let r = node.post_json(
        "/v1/tenants/rot/tokens",
        Some(&admin),
        &json!({"grace_seconds": 0}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let new = r.body["token"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(r.body["previous_valid_until"].is_string(), "{r:?}");
    assert_eq!(node.get("/v1/search?q=*", Some(&old)).status, 401);
    let r = node.post_events(
        Some(&old),
        Some("application/json"),
        b"{\"message\":\"x\"}".to_vec(),
    );
    assert_eq!(r.status, 401, "{r:?}");
    node.publish_json(&new, &json!({"id": "r2", "message": "after rotation"}));
    node.wait_total(&new, "*", 2); // the new token sees the tenant's events from before too

    // With a grace period the previous token keeps working (for search and publish).
    let r = node.post_json(
        "/v1/tenants/rot/tokens",
        Some(&admin),
        &json!({"grace_seconds": 3600}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let newer = r.body["token"].as_str().unwrap().to_owned();
    assert_ne!(newer, new);
    assert_eq!(node.get("/v1/search?q=*", Some(&new)).status, 200);
    node.publish_json(&new, &json!({"id": "r3", "message": "old token in grace"}));
    node.publish_json(&newer, &json!({"id": "r4", "message": "newest token"}));
    node.wait_total(&newer, "*", 4);
    // The token revoked earlier stays revoked.
    assert_eq!(node.get("/v1/search?q=*", Some(&old)).status, 401);

    // Unknown tenant: 404 (or another 4xx), never 200.
    let r = node.post_json(
        "/v1/tenants/nope/tokens",
        Some(&admin),
        &json!({"grace_seconds": 0}),
    );
    assert!((400..500).contains(&r.status), "{r:?}");

    // The tokens' state survives a restart.
    node.sigkill();
    let node = Node::start(&dir, &[]);
    assert_eq!(node.get("/v1/search?q=*", Some(&old)).status, 401);
    assert_eq!(node.get("/v1/search?q=*", Some(&new)).status, 200);
    assert_eq!(node.get("/v1/search?q=*", Some(&newer)).status, 200);
    node.wait_total(&newer, "*", 4);
}
