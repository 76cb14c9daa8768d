//! Pipelines through real processes: a VRL program stored over the API shapes what `logger`
//! sends over TCP syslog and what is published over HTTP, before it is stored; bad programs
//! are refused with their position; the test endpoint and `meniscus pipeline test` show what
//! a publish stores; a program that loops or panics keeps its events and holds up no other
//! tenant.

mod syslog_common;

use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{json, Value};
use syslog_common::{logger, marker, Dir, SyslogNode};

const BIN: &str = env!("CARGO_BIN_EXE_meniscus");

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A request's status and JSON body.
fn call(request: reqwest::blocking::RequestBuilder) -> (u16, Value) {
    let response = request.send().expect("HTTP request");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn put_pipeline(node: &SyslogNode, token: &str, name: &str, body: &Value) -> (u16, Value) {
    call(
        client()
            .put(format!("{}/v1/pipelines/{name}", node.http))
            .bearer_auth(token)
            .json(body),
    )
}

fn publish(node: &SyslogNode, token: &str, events: &Value) -> Value {
    let (status, body) = call(
        client()
            .post(format!("{}/v1/events", node.http))
            .bearer_auth(token)
            .json(events),
    );
    assert_eq!(status, 200, "{body}");
    body
}

fn example(node: &SyslogNode, name: &str) -> Value {
    let (status, body) = call(
        client()
            .get(format!("{}/v1/pipelines/examples", node.http))
            .bearer_auth(&node.token),
    );
    assert_eq!(status, 200, "{body}");
    body["examples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no example {name}"))
        .clone()
}

fn access_line(word: &str, status: u16, bytes: u32) -> String {
    format!(
        r#"10.0.0.7 - - [08/Dec/2026:10:15:32 +0000] "GET /{word}/{status} HTTP/1.1" {status} {bytes} "-" "curl/8.5.0""#
    )
}

#[test]
fn an_nginx_pipeline_turns_access_lines_into_fields_that_search_and_ranges_find() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let nginx = example(&node, "nginx-access");
    let (status, put) = put_pipeline(
        &node,
        &node.token,
        "nginx",
        &json!({"source": nginx["source"], "when": nginx["when"], "order": 10}),
    );
    assert_eq!(status, 200, "{put}");
    let version = put["version"].as_u64().expect("a version");

    let word = marker("nginxpipe");
    let port = node.tcp.port().to_string();
    for (status, bytes) in [(404, 512), (200, 1500), (404, 20_000)] {
        logger(&[
            "--tcp",
            "--octet-count",
            "--rfc5424",
            "-n",
            "127.0.0.1",
            "-P",
            &port,
            "-t",
            "nginx",
            &access_line(&word, status, bytes),
        ]);
    }
    let http_events = json!([
        {"app": "nginx", "message": access_line(&word, 404, 700)},
        {"app": "nginx", "message": access_line(&word, 500, 100)},
        {"app": "cron", "message": format!("{word} not a web server line")},
    ]);
    publish(&node, &node.token, &http_events);
    node.wait_for(&word, 6);
    node.wait_until_indexed();

    let paths = |query: &str| -> Vec<String> {
        let mut found: Vec<String> = node
            .search(query)
            .iter()
            .map(|e| e["fields"]["path"].as_str().unwrap_or("-").to_owned())
            .collect();
        found.sort();
        found
    };
    assert_eq!(
        paths("fields.status:404"),
        [
            format!("/{word}/404"),
            format!("/{word}/404"),
            format!("/{word}/404")
        ]
    );
    let ranged = node.search("fields.bytes:[500 TO 1000]");
    let mut bytes: Vec<u64> = ranged
        .iter()
        .map(|e| e["fields"]["bytes"].as_u64().unwrap())
        .collect();
    bytes.sort();
    assert_eq!(bytes, [512, 700]);
    assert_eq!(node.count("fields.status:[500 TO 599]"), 1);

    // Shaped events say which version shaped them; the cron line was not touched.
    let shaped = node.search(&format!("fields.pipelines.nginx:{version}"));
    assert_eq!(shaped.len(), 5, "{shaped:?}");
    let e = &shaped
        .iter()
        .find(|e| e["fields"]["bytes"] == 20_000)
        .unwrap();
    assert_eq!(e["source"]["transport"], "syslog-tcp");
    assert_eq!(e["fields"]["method"], "GET");
    assert_eq!(e["fields"]["client"], "10.0.0.7");
    assert_eq!(e["timestamp"], "2026-12-08T10:15:32Z", "the line's time");
    let cron = node.search("app:cron");
    assert_eq!(cron.len(), 1);
    assert!(cron[0]["fields"].get("pipelines").is_none(), "{cron:?}");

    // The test endpoint makes the same of a sample as a publish stored.
    let stored = node
        .search("fields.bytes:700")
        .pop()
        .expect("the HTTP event with 700 bytes");
    let (status, tested) = call(
        client()
            .post(format!("{}/v1/pipelines/test", node.http))
            .bearer_auth(&node.token)
            .json(&json!({"name": "nginx", "events": [http_events[0]]})),
    );
    assert_eq!(status, 200, "{tested}");
    let result = &tested["results"][0];
    assert_eq!(result["error"], Value::Null);
    assert_eq!(result["stored"]["fields"], stored["fields"]);
    assert_eq!(result["stored"]["timestamp"], stored["timestamp"]);
    assert_eq!(result["stored"]["message"], stored["message"]);

    // So does `meniscus pipeline test` on a syslog line from standard input.
    let out = std::process::Command::new(BIN)
        .args([
            "pipeline",
            "test",
            "--name",
            "nginx",
            "--server",
            &node.http,
            "--token",
            &node.token,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            let line = format!(
                "<13>1 - host nginx - - - {}\n",
                access_line(&word, 404, 700)
            );
            child.stdin.take().unwrap().write_all(line.as_bytes())?;
            child.wait_with_output()
        })
        .expect("running meniscus pipeline test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(printed["stored"]["fields"]["status"], 404);
    assert_eq!(printed["stored"]["fields"]["bytes"], 700);
}

#[test]
fn programs_that_do_not_compile_are_refused_with_where_and_nothing_changes() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let (status, body) = put_pipeline(
        &node,
        &node.token,
        "broken",
        &json!({"source": ".a = 1\n.b = parse_json!(.message\n"}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_program");
    assert_eq!(body["error"]["details"]["part"], "source");
    assert_eq!(
        body["error"]["details"]["diagnostics"][0]["line"], 3,
        "{body}"
    );

    let (status, body) = put_pipeline(
        &node,
        &node.token,
        "typed",
        &json!({"source": ".fields.n = 1\n.fields.m = 2 + \"x\""}),
    );
    assert_eq!(status, 400, "{body}");
    let at = &body["error"]["details"]["diagnostics"][0];
    assert_eq!(
        (at["line"].as_u64(), at["column"].as_u64()),
        (Some(2), Some(13)),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 + \"x\""),
        "{body}"
    );

    let (status, body) = put_pipeline(
        &node,
        &node.token,
        "when",
        &json!({"source": ".a = 1", "when": ".app"}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"]["part"], "when");
    let (status, body) = put_pipeline(
        &node,
        &node.token,
        "x",
        &json!({"source": ".a = 1", "extra": 1}),
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = put_pipeline(
        &node,
        &node.token,
        "bad%20name",
        &json!({"source": ".a = 1"}),
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(
        client()
            .put(format!("{}/v1/pipelines/p", node.http))
            .bearer_auth(&node.admin_token)
            .json(&json!({"source": ".a = 1"})),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("missing_tenant")),
        "{body}"
    );
    let (status, _) = call(
        client()
            .delete(format!("{}/v1/pipelines/none", node.http))
            .bearer_auth(&node.token),
    );
    assert_eq!(status, 404);

    let (status, listed) = call(
        client()
            .get(format!("{}/v1/pipelines", node.http))
            .bearer_auth(&node.token),
    );
    assert_eq!(status, 200);
    assert_eq!(listed["pipelines"], json!([]), "nothing was stored");
}

#[test]
fn a_program_that_loops_or_panics_keeps_its_events_and_other_tenants_publish_on() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let noisy = node.create_tenant("noisy");
    let quiet = node.create_tenant("quiet");
    let spin = r#"n = 0
for_each(range!(0, 100000)) -> |_i, _a| {
  for_each(range!(0, 100000)) -> |_j, _b| { n = n + 1 }
}
.fields.n = n"#;
    let (status, body) = put_pipeline(
        &node,
        &noisy,
        "spin",
        &json!({"source": spin, "when": "contains(.message, \"spin\")"}),
    );
    assert_eq!(status, 200, "{body}");
    // format_int negates its argument: for the smallest integer that overflows, a panic where
    // overflow checks are on (debug builds, which the tests run).
    let (status, body) = put_pipeline(
        &node,
        &noisy,
        "overflow",
        &json!({"source": ".fields.formatted = format_int!(to_int!(.fields.n) - 1, 10)",
                "when": "contains(.message, \"overflow\")"}),
    );
    assert_eq!(status, 200, "{body}");
    // 64 doublings of the message would be exabytes: the memory limit stops it, not the machine.
    let (status, body) = put_pipeline(
        &node,
        &noisy,
        "grow",
        &json!({"source": ".message = .message + .message\n".repeat(64),
                "when": "contains(.message, \"grow\")"}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = put_pipeline(
        &node,
        &quiet,
        "tag",
        &json!({"source": ".fields.tagged = true"}),
    );
    assert_eq!(status, 200, "{body}");

    let word = marker("contained");
    let quiet_publisher = {
        let node_http = node.http.clone();
        let quiet = quiet.clone();
        let word = word.clone();
        std::thread::spawn(move || {
            for i in 0..20 {
                let (status, body) = call(
                    client()
                        .post(format!("{node_http}/v1/events"))
                        .bearer_auth(&quiet)
                        .json(&json!([{"message": format!("{word} quiet {i}")}])),
                );
                assert_eq!(status, 200, "{body}");
            }
        })
    };
    let spins: Vec<Value> = (0..10)
        .map(|i| json!({"message": format!("{word} spin {i}")}))
        .collect();
    publish(&node, &noisy, &Value::Array(spins));
    publish(
        &node,
        &noisy,
        &json!([{"message": format!("{word} overflow"), "fields": {"n": -9_223_372_036_854_775_807_i64}}]),
    );
    let grows: Vec<Value> = (0..3)
        .map(|i| json!({"message": format!("{word} grow {i} {}", "x".repeat(1000))}))
        .collect();
    publish(&node, &noisy, &Value::Array(grows));
    quiet_publisher
        .join()
        .expect("the quiet tenant's publishes all succeeded");

    let spun = node.wait_for_as(&noisy, &format!("{word} AND spin"), 10);
    for e in &spun {
        let error = e["fields"]["pipeline_error"].as_str().unwrap_or_default();
        assert!(error.starts_with("spin (version "), "{e}");
        assert!(error.contains("time limit"), "{e}");
        assert!(
            e["message"].as_str().unwrap().contains("spin"),
            "stored as it came: {e}"
        );
    }
    let grown = node.wait_for_as(&noisy, &format!("{word} AND grow"), 3);
    for e in &grown {
        let error = e["fields"]["pipeline_error"].as_str().unwrap_or_default();
        assert!(error.starts_with("grow (version "), "{e}");
        assert!(error.contains("memory"), "{e}");
        assert!(
            e["message"].as_str().unwrap().len() < 1100,
            "stored as it came: {e}"
        );
    }
    let overflow = node.wait_for_as(&noisy, &format!("{word} AND overflow"), 1);
    let error = overflow[0]["fields"]["pipeline_error"]
        .as_str()
        .unwrap_or_default();
    if cfg!(debug_assertions) {
        assert!(error.contains("the program panicked"), "{}", overflow[0]);
    } else {
        assert_eq!(overflow[0]["fields"]["formatted"], "-9223372036854775808");
    }
    let quiet_events = node.wait_for_as(&quiet, &word, 20);
    assert!(
        quiet_events.iter().all(|e| e["fields"]["tagged"] == true),
        "{quiet_events:?}"
    );
    assert!(quiet_events
        .iter()
        .all(|e| e["fields"].get("pipeline_error").is_none()));

    let metrics = node.metrics();
    let series = |name: &str, tenant: &str, pipeline: &str| -> u64 {
        let prefix = format!("{name}{{tenant=\"{tenant}\",pipeline=\"{pipeline}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert_eq!(
        series("meniscus_pipeline_failed_total", "noisy", "spin"),
        10
    );
    assert_eq!(series("meniscus_pipeline_failed_total", "noisy", "grow"), 3);
    assert_eq!(series("meniscus_pipeline_events_total", "quiet", "tag"), 20);
    assert_eq!(series("meniscus_pipeline_failed_total", "quiet", "tag"), 0);
    assert!(series("meniscus_pipeline_nanoseconds_total", "noisy", "spin") >= 10 * 50_000_000);
}

#[test]
fn hostile_pipeline_requests_are_refused_in_the_json_envelope() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let other = node.create_tenant("other");
    let code = |(status, body): (u16, Value)| {
        (
            status,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
        )
    };

    // Another tenant's pipelines are out of reach of a tenant token.
    let r = call(
        client()
            .put(format!("{}/v1/pipelines/p?tenant=other", node.http))
            .bearer_auth(&node.token)
            .json(&json!({"source": ".a = 1"})),
    );
    assert_eq!(code(r), (403, "forbidden".into()));
    let r = call(
        client()
            .get(format!("{}/v1/pipelines?tenant=default", node.http))
            .bearer_auth(&other),
    );
    assert_eq!(code(r), (403, "forbidden".into()));
    let r = call(client().get(format!("{}/v1/pipelines/examples", node.http)));
    assert_eq!(code(r), (401, "unauthorized".into()));
    let r = call(
        client()
            .get(format!("{}/v1/pipelines?tenant=nobody", node.http))
            .bearer_auth(&node.admin_token),
    );
    assert_eq!(r.0, 404, "{}", r.1);

    // Huge, malformed and deeply nested bodies.
    let huge = json!({"source": format!(".a = \"{}\"", "x".repeat(300 * 1024))});
    let r = put_pipeline(&node, &node.token, "huge", &huge);
    assert_eq!(code(r), (413, "payload_too_large".into()));
    let r = call(
        client()
            .put(format!("{}/v1/pipelines/p", node.http))
            .bearer_auth(&node.token)
            .header("content-type", "application/json")
            .body("{\"source\": "),
    );
    assert_eq!(code(r), (400, "invalid_json".into()));
    let deep = format!(".a = {}1{}", "(".repeat(20_000), ")".repeat(20_000));
    let r = put_pipeline(&node, &node.token, "deep", &json!({"source": deep}));
    assert_eq!(r.0, 400, "{}", r.1);
    assert!(
        r.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nests deeper"),
        "{}",
        r.1
    );
    let long = format!(".a = 1{}", " + 1".repeat(20_000));
    let r = call(
        client()
            .post(format!("{}/v1/pipelines/test", node.http))
            .bearer_auth(&node.token)
            .json(&json!({"source": long, "events": ["x"]})),
    );
    assert_eq!(code(r), (400, "invalid_program".into()));

    // The test endpoint's samples are bounded and checked.
    let many: Vec<Value> = (0..1001).map(|i| json!(format!("line {i}"))).collect();
    let r = call(
        client()
            .post(format!("{}/v1/pipelines/test", node.http))
            .bearer_auth(&node.token)
            .json(&json!({"source": ".a = 1", "events": many})),
    );
    assert_eq!(code(r), (400, "too_many_events".into()));
    let r = call(
        client()
            .post(format!("{}/v1/pipelines/test", node.http))
            .bearer_auth(&node.token)
            .json(&json!({"source": ".a = 1", "events": [42]})),
    );
    assert_eq!(code(r), (400, "invalid_event".into()));
    let r = call(
        client()
            .post(format!("{}/v1/pipelines/test", node.http))
            .bearer_auth(&node.token)
            .json(&json!({"name": "none", "events": ["x"]})),
    );
    assert_eq!(r.0, 404, "{}", r.1);

    // Nothing of it was stored, and the node serves on.
    let (status, listed) = call(
        client()
            .get(format!("{}/v1/pipelines", node.http))
            .bearer_auth(&node.token),
    );
    assert_eq!((status, listed["pipelines"].clone()), (200, json!([])));
}
