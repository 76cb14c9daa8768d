//! The indexing flags of `meniscus dev`: `--max-indexing-backlog-mib` bounds the events
//! waiting for their index (publishes past it are refused, nothing acknowledged is lost), and
//! `--indexer-nice` sets the indexing threads' CPU priority.

mod common;

use std::time::Duration;

use common::{Node, TestDir};
use serde_json::{json, Value};

/// Index commits only at shutdown: the backlog only grows while the node runs.
const NO_COMMITS: [&str; 2] = ["--commit-interval-ms", "3600000"];

fn batch(b: usize) -> Value {
    let events: Vec<Value> = (0..500)
        .map(|i| {
            json!({
                "id": format!("ev-{b}-{i}"),
                "message": format!("backlog {b} {i} {}", "x".repeat(200)),
            })
        })
        .collect();
    Value::Array(events)
}

#[test]
fn past_the_backlog_bound_publishes_are_refused_and_nothing_acknowledged_is_lost() {
    let dir = TestDir::new();
    let args = [&NO_COMMITS[..], &["--max-indexing-backlog-mib", "1"]].concat();
    let node = Node::start(&dir, &args);
    let token = node.creds.default.clone();
    // A pipeline counts the events it runs on: a refused batch must be refused before it.
    let put = node
        .http
        .put(node.url("/v1/pipelines/count"))
        .bearer_auth(&token)
        .json(&json!({"source": ".fields.counted = true"}))
        .send()
        .expect("PUT /v1/pipelines/count");
    assert_eq!(put.status(), 200);

    let send = |b: usize| {
        node.http
            .post(node.url("/v1/events"))
            .bearer_auth(&token)
            .json(&batch(b))
            .send()
            .expect("POST /v1/events")
    };
    // Each batch is about 150 KB: within ten or so the bound is passed.
    let mut acked = 0;
    let refused = (0..100).find_map(|b| {
        let response = send(b);
        if response.status() == 200 {
            acked += 500;
            return None;
        }
        Some(response)
    });
    let refused = refused.expect("no publish refused past a 1 MiB backlog");
    assert_eq!(refused.status(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = refused.json().unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("indexing is behind"), "{body}");
    eprintln!("refused after {acked} events were acknowledged");
    // Refused again and again while the backlog stands: the pipeline never ran on any of them.
    for b in 100..105 {
        assert_eq!(send(b).status(), 503);
    }
    let metrics = node
        .http
        .get(node.url("/metrics"))
        .send()
        .and_then(|r| r.text())
        .expect("GET /metrics");
    let ran: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("meniscus_pipeline_events_total{tenant=\"default\",pipeline=\"count\"} ")
        })
        .unwrap_or_else(|| panic!("no pipeline series in\n{metrics}"))
        .parse()
        .unwrap();
    assert_eq!(ran, acked, "the pipeline ran on refused batches");
    assert!(acked >= 3_000, "refused after only {acked} events");
    // Everything acknowledged is searchable meanwhile, from the unindexed tail.
    assert_eq!(node.total(&token, "backlog"), acked);

    // Shutdown commits the index; restarted, the node takes events again and has lost none.
    assert!(node.sigterm(Duration::from_secs(60)).success());
    let node = Node::start(&dir, &args);
    node.publish_json(&token, &batch(1_000));
    assert_eq!(node.total(&token, "backlog"), acked + 500);
}

/// Each thread of process `pid`: its name and nice value, from /proc.
fn threads(pid: u32) -> Vec<(String, i64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the node's threads");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .filter_map(|stat| {
            // `TID (COMM) STATE ...`: the name may hold spaces; fields count from the ')'.
            let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
            // After the name: state is field 3, nice field 19.
            let nice = rest.split_whitespace().nth(19 - 3)?.parse().ok()?;
            Some((comm.to_owned(), nice))
        })
        .collect()
}

#[test]
fn indexing_runs_at_the_nice_value_given() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[&NO_COMMITS[..], &["--indexer-nice", "7"]].concat());
    let token = node.creds.default.clone();
    node.publish_json(&token, &batch(0));
    // The tenant's indexer thread (`index-default`: names are cut to 15 bytes) starts with
    // its first event, and opens the tantivy writer, whose threads inherit its nice value.
    let all = common::poll_until(Duration::from_secs(10), || {
        let all = threads(node.pid);
        let started = all.iter().any(|(name, _)| name.starts_with("thrd-tantivy"));
        started.then_some(all)
    })
    .expect("no tantivy indexing thread within 10 s");
    assert!(
        all.iter()
            .any(|(name, nice)| name == "index-default" && *nice == 7),
        "no indexer thread at nice 7: {all:?}"
    );
    // The node's own threads keep their priority.
    let tantivy = ["thrd-tantivy", "merge_thread", "segment_updater"];
    for (name, nice) in &all {
        let indexing = name == "index-default" || tantivy.iter().any(|t| name.starts_with(t));
        let node_own =
            ["meniscus", "tokio-rt-worker"].contains(&name.as_str()) || name.starts_with("raft-");
        assert!(
            (!indexing || *nice == 7) && (!node_own || *nice == 0),
            "thread {name} runs at nice {nice}: {all:?}"
        );
    }
}
