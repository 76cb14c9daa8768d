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

#[test]
fn search_limit_zero_is_refused_rather_than_printing_one_event() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    node.publish_json(&node.creds.default, &json!({"message": "one"}));
    let out = node.cli(&["search", "*", "--limit", "0"], "");
    assert!(!out.status.success(), "--limit 0 was taken");
    assert!(
        out.stdout.is_empty(),
        "printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--limit"));
}

/// The metadata group's commit index, from /metrics.
fn commit_index(node: &Node) -> u64 {
    node.metric("meniscus_raft_commit_index{group=\"0\"}")
}

#[test]
fn an_empty_array_commits_no_raft_entry() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let before = commit_index(&node);
    for _ in 0..3 {
        let r = node.post_json("/v1/events", Some(&node.creds.default), &json!([]));
        assert_eq!(
            (r.status, r.body["accepted"].as_u64()),
            (200, Some(0)),
            "{r:?}"
        );
    }
    assert_eq!(commit_index(&node), before, "empty publishes were proposed");
}

#[test]
fn dev_help_shows_no_cluster_only_flags() {
    let help = |cmd: &str| {
        let out = std::process::Command::new(common::BIN)
            .args([cmd, "--help"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The flags' own lines (mentions in other flags' help do not count).
    let flags = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.trim_start().strip_prefix("--"))
            .map(|l| format!("--{}", l.split([' ', '<']).next().unwrap()))
            .collect()
    };
    let (dev, start) = (flags(&help("dev")), flags(&help("start")));
    for flag in [
        "--initial-cluster",
        "--join",
        "--certs-dir",
        "--insecure",
        "--node-id",
        "--shards",
    ] {
        assert!(!dev.iter().any(|f| f == flag), "dev --help shows {flag}");
        assert!(start.iter().any(|f| f == flag), "start --help lacks {flag}");
    }
    assert!(dev.iter().any(|f| f == "--http"), "{dev:?}");
}

#[test]
fn an_unknown_toml_key_is_reported_as_a_setting_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "http = \"127.0.0.1:0\"\nsyslog-tcpp = \"127.0.0.1:6514\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::BIN)
        .arg("dev")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown setting \"syslog-tcpp\""),
        "{stderr}"
    );
    assert!(stderr.contains("node.toml"), "{stderr}");
}

#[test]
fn logs_carry_no_ansi_colours_when_not_on_a_terminal() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    node.publish_json(&node.creds.default, &json!({"message": "logged"}));
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(log.contains("meniscus dev is ready"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escapes in the log file");
}

#[test]
fn a_busy_http_port_is_reported_before_credentials_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let data = dir.path().join("data");
    let out = std::process::Command::new(common::BIN)
        .args(["dev", "--http", &addr, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(
        !data.join("credentials.json").exists(),
        "credentials were written"
    );
}

#[test]
fn a_follower_logs_no_credentials_path_that_does_not_exist() {
    let cluster = common::cluster::start(&common::certs_args());
    cluster.wait_writable();
    for log in &cluster.logs[1..] {
        let text = std::fs::read_to_string(log).unwrap();
        let ready = text
            .lines()
            .find(|l| l.contains("meniscus dev is ready"))
            .expect("a ready line");
        assert!(!ready.contains("credentials.json"), "{ready}");
    }
    let first = std::fs::read_to_string(&cluster.logs[0]).unwrap();
    assert!(
        first.contains("credentials.json"),
        "the bootstrapping node names its file"
    );
}

#[test]
fn send_with_a_bad_line_says_how_many_were_sent_and_which_file_line_failed() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let file = dir.path().join("events.ndjson");
    let write = |bad: usize, text: &str| {
        let lines: Vec<String> = (1..=2500)
            .map(|i| {
                if i == bad {
                    text.to_owned()
                } else {
                    json!({"message": format!("sent line {i}")}).to_string()
                }
            })
            .collect();
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    };
    let path = file.to_str().unwrap();

    // Not JSON on line 1500: everything before it is sent, nothing after.
    write(1500, "{\"message\": oops");
    let out = node.cli(&["send", path], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 1500 of"), "{stderr}");
    assert!(
        stderr.contains("sent the 1499 events before it"),
        "{stderr}"
    );
    assert!(stderr.contains("tail -n +1500"), "{stderr}");
    node.wait_total(&node.creds.default, "sent", 1499);

    // --skip-invalid goes on past it, into another tenant.
    assert!(node.cli(&["tenant", "create", "acme"], "").status.success());
    let out = node.cli(&["send", path, "--skip-invalid", "--tenant", "acme"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("skipping line 1500"), "{stderr}");
    assert!(stderr.contains("sent 2499 events"), "{stderr}");

    // The server refuses line 2200 (valid JSON, invalid event): the message names the file's
    // line, not the batch's.
    write(
        2200,
        &json!({"message": "m", "severity": "loud"}).to_string(),
    );
    assert!(node
        .cli(&["tenant", "create", "initech"], "")
        .status
        .success());
    let out = node.cli(&["send", path, "--tenant", "initech"], "");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2200 of"), "{stderr}");
    assert!(
        stderr.contains("lines 2001-2500 was not stored"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the 2000 events before it were"),
        "{stderr}"
    );
}

#[test]
fn numeric_and_date_ranges_on_fields_work_and_a_bad_range_is_a_400_not_a_500() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let token = node.creds.default.clone();
    let events: Vec<Value> = [200, 404, 500, 503, 302]
        .iter()
        .enumerate()
        .map(|(i, status)| {
            json!({"message": format!("request {i}"), "fields": {
                "status": status, "took_ms": 10.5 * i as f64,
                "at": format!("2026-0{}-01T00:00:00Z", i + 1),
            }})
        })
        .collect();
    let r = node.publish_json(&token, &json!(events));
    let index = r["commit_index"].as_u64().unwrap();
    for (query, expected) in [
        ("fields.status:[400 TO 600]", 3),
        ("fields.status:>400", 3),
        ("fields.status:<=302", 2),
        ("fields.took_ms:>=21", 3),
        (
            "fields.at:[2026-02-01T00:00:00Z TO 2026-04-01T00:00:00Z}",
            2,
        ),
    ] {
        assert_eq!(node.total_after(&token, query, index), expected, "{query}");
    }
    // A range on a field that has no fast column is the user's mistake: 400, not 500.
    let r = node.search(&token, "structured_data.x:[1 TO 5]", None, None);
    assert_eq!((r.status, r.code()), (400, "invalid_query"), "{r:?}");
}
