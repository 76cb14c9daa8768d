//! Acceptance 1: through the real binary, 2,000 events published in batches (JSON arrays and
//! NDJSON) are all found by `q=*`; term queries find exactly the matching subset; results are
//! newest first. Also `meniscus send` and `meniscus search --count` once each.

mod common;

use std::collections::HashMap;

use common::{distinct, ids, poll_until, Node, TestDir, SEARCHABLE_TIMEOUT};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const EVENTS: usize = 2_000;
const BATCH: usize = 100;
const HOSTS: usize = 7;
const SEVERITIES: [&str; 5] = ["err", "info", "warning", "debug", "notice"];

/// Event `i`: its timestamp is a permutation of the publish order (7919 is prime to 2,000), so
/// "newest first" cannot be satisfied by arrival order by accident.
fn event(i: usize) -> Value {
    let base = OffsetDateTime::parse("2026-03-01T00:00:00Z", &Rfc3339).unwrap();
    let offset = ((i * 7919) % EVENTS) as i64;
    let ts = base + time::Duration::seconds(offset) + time::Duration::microseconds(offset);
    json!({
        "id": format!("ev-{i:04}"),
        "timestamp": ts.format(&Rfc3339).unwrap(),
        "host": format!("web-{}", i % HOSTS),
        "app": "checkout",
        "severity": SEVERITIES[i % SEVERITIES.len()],
        "message": format!("request {i} handled by web-{} parity{}", i % HOSTS, i % 2),
        "status": 200 + (i % 3) as u64,
    })
}

fn ts_of(e: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(e["timestamp"].as_str().expect("timestamp"), &Rfc3339).unwrap()
}

#[test]
fn two_thousand_events_all_found_filtered_and_newest_first() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let token = node.creds.default.clone();

    let sent: Vec<Value> = (0..EVENTS).map(event).collect();
    let mut last_commit = 0;
    for (b, batch) in sent.chunks(BATCH).enumerate() {
        let answer = if b % 2 == 0 {
            node.publish_json(&token, &Value::Array(batch.to_vec()))
        } else {
            node.publish_ndjson(&token, batch)
        };
        assert_eq!(answer["accepted"], BATCH as u64, "{answer}");
        let commit = answer["commit_index"].as_u64().unwrap();
        assert!(
            commit > last_commit,
            "commit_index must grow: {commit} after {last_commit}"
        );
        last_commit = commit;
    }

    node.wait_total(&token, "*", EVENTS as u64);

    // Every event, paged with cursors: 2,000 distinct ids, exactly the ones sent.
    let all = node.search_all(&token, "*", 300);
    let found = distinct(&ids(&all));
    assert_eq!(found.len(), EVENTS);
    for e in &sent {
        assert!(found.contains(e["id"].as_str().unwrap()), "missing {e}");
    }

    // Newest first, across pages; the timestamps are distinct, so the order is fully determined.
    let times: Vec<OffsetDateTime> = all.iter().map(ts_of).collect();
    for w in times.windows(2) {
        assert!(w[0] >= w[1], "not newest first: {} then {}", w[0], w[1]);
    }
    let mut expected: Vec<&Value> = sent.iter().collect();
    expected.sort_by_key(|e| std::cmp::Reverse(ts_of(e)));
    let expected_ids: Vec<String> = expected
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids(&all),
        expected_ids,
        "order differs from timestamp-descending"
    );

    // Stored events come back with what was sent.
    let by_id: HashMap<&str, &Value> = all.iter().map(|e| (e["id"].as_str().unwrap(), e)).collect();
    for e in sent.iter().step_by(97) {
        let got = by_id[e["id"].as_str().unwrap()];
        assert_eq!(got["host"], e["host"]);
        assert_eq!(got["severity"], e["severity"]);
        assert_eq!(got["message"], e["message"]);
        assert_eq!(ts_of(got), ts_of(e));
        assert_eq!(got["tenant"], "default");
    }

    // Default page: 100 events and a cursor.
    let first = node.search(&token, "*", None, None);
    assert_eq!(first.status, 200);
    assert_eq!(first.body["events"].as_array().unwrap().len(), 100);
    assert_eq!(first.body["total"], EVENTS as u64);
    assert!(first.body["next"].is_string(), "{:?}", first.body["next"]);
    // One page of everything: no next.
    let whole = node.search(&token, "*", Some(10_000), None);
    assert_eq!(whole.body["events"].as_array().unwrap().len(), EVENTS);
    assert!(whole.body["next"].is_null(), "{:?}", whole.body["next"]);
    assert_eq!(node.search(&token, "*", Some(10_001), None).status, 400);
    assert_eq!(node.search(&token, "*", Some(0), None).status, 400);

    // Term queries find exactly the matching subset.
    let count = |pred: &dyn Fn(usize) -> bool| (0..EVENTS).filter(|i| pred(*i)).count() as u64;
    let cases: Vec<(&str, u64)> = vec![
        ("host:web-3", count(&|i| i % HOSTS == 3)),
        ("host:\"web-3\"", count(&|i| i % HOSTS == 3)),
        ("severity:err", count(&|i| i % 5 == 0)),
        (
            "host:web-3 AND severity:err",
            count(&|i| i % HOSTS == 3 && i % 5 == 0),
        ),
        (
            "severity:err OR severity:debug",
            count(&|i| i % 5 == 0 || i % 5 == 3),
        ),
        ("parity1", count(&|i| i % 2 == 1)),
        // Exclusion as `-term`: tantivy 0.27 parses `a AND NOT b` as `+a +(-b)`, which matches
        // nothing (see the test report).
        (
            "message:parity0 -host:web-0",
            count(&|i| i % 2 == 0 && i % HOSTS != 0),
        ),
        ("request", EVENTS as u64),
        ("id:ev-0042", 1),
        ("fields.status:201", count(&|i| i % 3 == 1)),
        ("app:checkout", EVENTS as u64),
        ("host:web-99", 0),
    ];
    // Read your writes: `min_index` waits until the last publish is searchable for each query
    // (for `fields.*`, which only the index answers, until the index has committed it).
    for (q, expected) in &cases {
        assert_eq!(
            node.total_after(&token, q, last_commit),
            *expected,
            "total of {q:?}"
        );
    }
    // The subset itself, not just its size, for one query.
    let web3 = node.search_all(&token, "host:web-3 AND severity:err", 50);
    let got = distinct(&ids(&web3));
    let want: std::collections::HashSet<String> = (0..EVENTS)
        .filter(|i| i % HOSTS == 3 && i % 5 == 0)
        .map(|i| format!("ev-{i:04}"))
        .collect();
    assert_eq!(got, want);
    for w in web3.windows(2) {
        assert!(ts_of(&w[0]) >= ts_of(&w[1]), "subset not newest first");
    }

    // Time range: from inclusive, to exclusive.
    let from = "2026-03-01T00:01:40Z"; // offset 100 s
    let to = "2026-03-01T00:03:20Z"; // offset 200 s
    let r = node.get(
        &format!("/v1/search?q=*&from={from}&to={to}&limit=1000"),
        Some(&token),
    );
    assert_eq!(r.status, 200, "{r:?}");
    // Offsets 100..200 (offset k has timestamp base + k s + k µs, so 200 is past `to`).
    assert_eq!(r.body["total"], 100, "{}", r.body["total"]);
    node.sigterm(std::time::Duration::from_secs(30));
}

#[test]
fn cli_send_and_search_count() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let lines: String = (0..7)
        .map(|i| format!("cli plain line {i} clisendmarker\n"))
        .collect();
    let out = node.cli(&["send", "--format", "lines"], &lines);
    assert!(
        out.status.success(),
        "meniscus send failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut last = String::new();
    let counted = poll_until(SEARCHABLE_TIMEOUT, || {
        let out = node.cli(&["search", "--count", "clisendmarker"], "");
        assert!(
            out.status.success(),
            "meniscus search failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        last = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (last == "7").then_some(())
    });
    assert!(
        counted.is_some(),
        "meniscus search --count printed {last:?}, expected 7"
    );

    // And `meniscus search` prints the events themselves, one JSON object per line.
    let out = node.cli(&["search", "--limit", "3", "clisendmarker"], "");
    assert!(out.status.success());
    let printed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON event per line"))
        .collect();
    assert_eq!(printed.len(), 3);
    for e in &printed {
        assert!(
            e["message"].as_str().unwrap().contains("clisendmarker"),
            "{e}"
        );
    }
}

#[test]
fn ids_are_idempotency_keys_and_ties_break_by_arrival() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &["--commit-interval-ms", "100"]);
    let token = node.creds.default.clone();

    // Same timestamp everywhere: the order is by arrival, newest first (also within a batch).
    let ts = "2026-05-05T05:05:05Z";
    let batch = |tag: &str, n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"id": format!("{tag}-{i}"), "timestamp": ts, "message": format!("tie {tag} {i}")}))
            .collect()
    };
    node.publish_json(&token, &Value::Array(batch("first", 3)));
    node.publish_ndjson(&token, &batch("second", 3));
    node.publish_json(
        &token,
        &json!({"id": "third-0", "timestamp": ts, "message": "tie third"}),
    );
    node.wait_total(&token, "tie", 7);
    let order = ids(&node.search_all(&token, "tie", 2));
    assert_eq!(
        order,
        ["third-0", "second-2", "second-1", "second-0", "first-2", "first-1", "first-0"],
        "equal timestamps must come newest arrival first"
    );

    // Re-publishing an id replaces the event (latest content wins), never duplicates it;
    // duplicates inside one batch collapse to the last.
    node.publish_json(
        &token,
        &json!([
            {"id": "dup", "message": "version one", "host": "v1"},
            {"id": "dup", "message": "version two", "host": "v2"},
        ]),
    );
    node.wait_total(&token, "id:dup", 1);
    node.publish_ndjson(
        &token,
        &[json!({"id": "dup", "message": "version three", "host": "v3"})],
    );
    let replaced = poll_until(SEARCHABLE_TIMEOUT, || {
        let r = node.search(&token, "id:dup", None, None);
        (r.body["events"][0]["host"] == "v3").then_some(r)
    })
    .expect("the re-published event never replaced the old one");
    assert_eq!(replaced.body["total"], 1, "{:?}", replaced.body);
    assert_eq!(node.total(&token, "host:v1 OR host:v2"), 0);
    assert_eq!(node.total(&token, "*"), 8);
    // Events without an id get distinct generated ones.
    node.publish_json(&token, &json!([{"message": "anon"}, {"message": "anon"}]));
    node.wait_total(&token, "anon", 2);
    let anon = distinct(&ids(&node.search_all(&token, "anon", 10)));
    assert_eq!(anon.len(), 2);

    // Search parameter errors are 400s with a message.
    for query in [
        "q=message:(unclosed",
        "q=*&cursor=not-a-cursor",
        "q=*&from=yesterday",
        "q=*&to=2026-13-01T00:00:00Z",
        "q=*&limit=many",
        "q=*&unknown=1",
    ] {
        let r = node.get(&format!("/v1/search?{query}"), Some(&token));
        assert_eq!(r.status, 400, "{query}: {r:?}");
        assert!(!r.message().is_empty(), "{query}: {r:?}");
    }
}
