//! Acceptance 4: bad input gets a 4xx with a clear message, stores nothing, and the node keeps
//! serving.

mod common;

use common::{ndjson, Node, Resp, TestDir};
use serde_json::{json, Value};

const JSON: Option<&str> = Some("application/json");
const NDJSON: Option<&str> = Some("application/x-ndjson");

struct Case {
    name: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    /// Substrings the error message must contain.
    message: &'static [&'static str],
}

fn good(tag: &str, i: usize) -> Value {
    json!({"id": format!("{tag}-{i}"), "message": format!("rejected batch {tag} event {i}"), "host": "bad-input"})
}

fn cases() -> Vec<Case> {
    let big_message = "x".repeat(2_000);
    let mut oversize_event: Vec<Value> = (0..3).map(|i| good("oversize-event", i)).collect();
    oversize_event.push(json!({"id": "oversize-event-big", "message": big_message}));
    let huge_body: Vec<Value> = (0..300)
        .map(|i| json!({"id": format!("huge-body-{i}"), "message": "y".repeat(400)}))
        .collect();
    let too_many: Vec<Value> = (0..11).map(|i| good("too-many", i)).collect();
    let mut bad_ts: Vec<Value> = (0..3).map(|i| good("bad-ts", i)).collect();
    bad_ts.insert(
        1,
        json!({"id": "bad-ts-x", "message": "m", "timestamp": "yesterday at noon"}),
    );
    let mut non_object: Vec<Value> = (0..3).map(|i| good("non-object", i)).collect();
    non_object.push(json!(42));
    let mut nd_bad = ndjson(&[good("nd-bad", 0)]);
    nd_bad.extend_from_slice(b"{\"id\": \"nd-bad-1\", \"message\": \n");
    nd_bad.extend_from_slice(&ndjson(&[good("nd-bad", 2)]));
    let mut bad_severity: Vec<Value> = (0..2).map(|i| good("bad-sev", i)).collect();
    bad_severity.push(json!({"id": "bad-sev-x", "message": "m", "severity": "catastrophic"}));

    vec![
        Case {
            name: "malformed JSON object",
            content_type: JSON,
            body: b"{\"id\": \"malformed-1\", \"message\": \"unterminated".to_vec(),
            status: 400,
            code: "invalid_event",
            message: &["line 1", "column"],
        },
        Case {
            name: "malformed JSON array on line 3",
            content_type: JSON,
            body: b"[\n{\"id\": \"malformed-2\", \"message\": \"ok\"},\n{\"id\": \"malformed-3\" \"message\": \"no comma\"}\n]"
                .to_vec(),
            status: 400,
            code: "invalid_event",
            message: &["line 3", "column"],
        },
        Case {
            name: "malformed NDJSON line 2",
            content_type: NDJSON,
            body: nd_bad,
            status: 400,
            code: "invalid_event",
            message: &["line 2"],
        },
        Case {
            name: "oversize event among good ones",
            content_type: JSON,
            body: serde_json::to_vec(&oversize_event).unwrap(),
            status: 413,
            code: "event_too_large",
            message: &["1000"],
        },
        Case {
            name: "oversize NDJSON event",
            content_type: NDJSON,
            body: ndjson(&[good("oversize-nd", 0), json!({"id": "oversize-nd-big", "message": "z".repeat(2_000)})]),
            status: 413,
            code: "event_too_large",
            message: &["line 2", "1000"],
        },
        Case {
            name: "oversize body",
            content_type: NDJSON,
            body: ndjson(&huge_body),
            status: 413,
            code: "payload_too_large",
            message: &["100000"],
        },
        Case {
            name: "too many events",
            content_type: JSON,
            body: serde_json::to_vec(&too_many).unwrap(),
            status: 413,
            code: "too_many_events",
            message: &["11", "10"],
        },
        Case {
            name: "too many NDJSON events",
            content_type: NDJSON,
            body: ndjson(&too_many),
            status: 413,
            code: "too_many_events",
            message: &["10"],
        },
        Case {
            name: "wrong content type",
            content_type: Some("text/plain"),
            body: serde_json::to_vec(&good("text-plain", 0)).unwrap(),
            status: 415,
            code: "unsupported_media_type",
            message: &["text/plain", "application/json"],
        },
        Case {
            name: "form content type",
            content_type: Some("application/x-www-form-urlencoded"),
            body: serde_json::to_vec(&good("form", 0)).unwrap(),
            status: 415,
            code: "unsupported_media_type",
            message: &["application/json"],
        },
        Case {
            name: "missing content type",
            content_type: None,
            body: serde_json::to_vec(&good("no-ct", 0)).unwrap(),
            status: 415,
            code: "unsupported_media_type",
            message: &["Content-Type"],
        },
        Case {
            name: "invalid timestamp among good events",
            content_type: JSON,
            body: serde_json::to_vec(&bad_ts).unwrap(),
            status: 400,
            code: "invalid_event",
            message: &["RFC 3339", "event 2", "yesterday at noon"],
        },
        Case {
            name: "non-object array element",
            content_type: JSON,
            body: serde_json::to_vec(&non_object).unwrap(),
            status: 400,
            code: "invalid_event",
            message: &["event 4", "object"],
        },
        Case {
            name: "non-object NDJSON line",
            content_type: NDJSON,
            body: b"{\"id\": \"nd-scalar-0\", \"message\": \"ok\"}\n\"just a string\"\n".to_vec(),
            status: 400,
            code: "invalid_event",
            message: &["line 2", "object"],
        },
        Case {
            name: "unknown severity",
            content_type: JSON,
            body: serde_json::to_vec(&bad_severity).unwrap(),
            status: 400,
            code: "invalid_event",
            message: &["severity", "catastrophic"],
        },
        Case {
            name: "message not a string",
            content_type: JSON,
            body: br#"[{"id": "msg-num-0", "message": "ok"}, {"id": "msg-num-1", "message": 5}]"#.to_vec(),
            status: 400,
            code: "invalid_event",
            message: &["message", "string"],
        },
        Case {
            name: "empty body",
            content_type: JSON,
            body: Vec::new(),
            status: 400,
            code: "invalid_event",
            message: &["empty"],
        },
        Case {
            name: "idempotency key too long",
            content_type: JSON,
            body: serde_json::to_vec(&json!([good("long-id", 0), {"id": "i".repeat(300), "message": "m"}])).unwrap(),
            status: 400,
            code: "invalid_event",
            message: &["event 2", "id"],
        },
        Case {
            name: "not UTF-8",
            content_type: JSON,
            body: b"{\"id\": \"latin1\", \"message\": \"caf\xe9\"}".to_vec(),
            status: 400,
            code: "invalid_event",
            message: &[],
        },
    ]
}

/// The answer to a request, retrying transport errors a few times. A server that answers 413
/// before reading the whole body and then closes the connection can make the client fail while
/// still sending (reqwest reports a body send error instead of the answer); those attempts are
/// counted and reported, and the request must get its answer on some attempt.
fn answer(mut send: impl FnMut() -> Result<Resp, reqwest::Error>) -> Result<Resp, String> {
    let mut errors = Vec::new();
    for _ in 0..20 {
        match send() {
            Ok(r) => {
                if !errors.is_empty() {
                    eprintln!(
                        "note: {} attempt(s) failed at the transport before the answer: {errors:?}",
                        errors.len()
                    );
                }
                return Ok(r);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(format!("no answer in 20 attempts: {errors:?}"))
}

#[test]
fn bad_input_is_refused_clearly_stores_nothing_and_the_node_keeps_serving() {
    let dir = TestDir::new();
    let node = Node::start(
        &dir,
        &[
            "--max-event-bytes",
            "1000",
            "--max-body-bytes",
            "100000",
            "--max-batch-events",
            "10",
            "--commit-interval-ms",
            "100",
        ],
    );
    let token = node.creds.default.clone();
    // Refused requests go through a client that never reuses a connection: after a 413 for a
    // body over the limit the node closes the connection without `Connection: close` (see
    // `connection_survives_or_is_closed_explicitly_after_413`), which would fail the *next*
    // request of a pooling client.
    let once = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let mut stored = 0u64;
    let mut failures = Vec::new();

    for (n, case) in cases().into_iter().enumerate() {
        let r: Resp = answer(|| {
            common::post_events(
                &once,
                &node.base,
                Some(&token),
                case.content_type,
                case.body.clone(),
            )
        })
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let mut problems = Vec::new();
        if r.status != case.status {
            problems.push(format!("status {} (expected {})", r.status, case.status));
        }
        if !case.code.is_empty() && r.code() != case.code {
            problems.push(format!("code {:?} (expected {:?})", r.code(), case.code));
        }
        if r.body["error"]["message"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            problems.push("no error message".into());
        }
        for want in case.message {
            if !r.message().contains(want) {
                problems.push(format!("message lacks {want:?}"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {} — answer {:?}",
                case.name,
                problems.join(", "),
                r.body
            ));
        }

        // The node still serves, and a valid publish after the refusal works...
        assert_eq!(node.healthz(), 200, "after {}", case.name);
        let marker = format!("marker-{n}");
        node.publish_json(
            &token,
            &json!({"id": marker, "message": "valid after a refusal", "host": "marker"}),
        );
        stored += 1;
        // ...and once the marker is searchable (published after the refused request, so indexed
        // after anything the refused request might have stored), nothing else was stored.
        node.wait_total(&token, &format!("id:{marker}"), 1);
        let total = node.total(&token, "*");
        if total != stored {
            let extra: Vec<Value> = node
                .search_all(&token, "*", 1000)
                .into_iter()
                .filter(|e| e["host"] != "marker")
                .take(5)
                .collect();
            failures.push(format!(
                "{}: stored something: total {total}, expected {stored}; e.g. {extra:?}",
                case.name
            ));
            stored = total;
        }
    }
    assert!(
        failures.is_empty(),
        "bad input handling:\n{}",
        failures.join("\n")
    );

    // An oversize body sent chunked (no Content-Length) is refused the same way.
    let chunked: Vec<u8> = ndjson(
        &(0..300)
            .map(|i| json!({"id": format!("chunked-{i}"), "message": "c".repeat(400)}))
            .collect::<Vec<_>>(),
    );
    let r = answer(|| {
        common::try_send(
            once.post(node.url("/v1/events"))
                .bearer_auth(&token)
                .header("content-type", "application/x-ndjson")
                .body(reqwest::blocking::Body::new(std::io::Cursor::new(
                    chunked.clone(),
                ))),
        )
    })
    .unwrap_or_else(|e| panic!("chunked oversize body: {e}"));
    assert_eq!(r.status, 413, "chunked oversize body: {r:?}");
    assert_eq!(r.code(), "payload_too_large", "{r:?}");
    assert_eq!(node.healthz(), 200);
    node.publish_json(
        &token,
        &json!({"id": "marker-chunked", "message": "valid", "host": "marker"}),
    );
    stored += 1;
    node.wait_total(&token, "id:marker-chunked", 1);
    assert_eq!(
        node.total(&token, "*"),
        stored,
        "the chunked oversize body stored something"
    );

    // The limits are inclusive of what fits: exactly 10 events of < 1000 bytes in < 100000 bytes.
    let ten: Vec<Value> = (0..10).map(|i| good("fits", i)).collect();
    let r = node.publish_json(&token, &Value::Array(ten));
    assert_eq!(r["accepted"], 10);
    node.wait_total(&token, "*", stored + 10);
    assert_eq!(node.total(&token, "host:bad-input"), 10);
}

/// A raw HTTP/1.1 exchange on one connection: an oversize chunked publish, then GET /healthz.
/// The node answers 413 before reading the whole body and then closes the connection; it must
/// say so (`Connection: close`) or keep the connection usable, or a keep-alive client's next
/// request fails.
#[test]
fn connection_survives_or_is_closed_explicitly_after_413() {
    use std::io::{Read, Write};
    let dir = TestDir::new();
    let node = Node::start(&dir, &["--max-body-bytes", "100000"]);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", node.port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let chunk = format!("{}\n", json!({"message": "y".repeat(400)}));
    let mut request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n",
        node.creds.default
    );
    for _ in 0..300 {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    let _ = stream.write_all(request.as_bytes());
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 413"), "{head}");
    if head.contains("connection: close") {
        return;
    }
    let again = stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .and_then(|_| stream.read(&mut buf));
    match again {
        Ok(n) if n > 0 => {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        }
        other => panic!(
            "the 413 answer kept the connection open for reuse (no `Connection: close`), but the next request on it failed: {other:?}; 413 head: {head}"
        ),
    }
}
