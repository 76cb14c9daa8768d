//! A pipeline replaced twice while a publisher sends 100,000 events to a three-node cluster:
//! every acknowledged event is stored once, shaped by exactly one version (recorded on it),
//! and each change reaches every node without a restart.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{self, Cluster};
use serde_json::{json, Value};

const EVENTS: usize = 100_000;
const BATCH: usize = 500;
/// How long one batch may be refused before the test gives up.
const RETRY_FOR: Duration = Duration::from_secs(120);

/// Stores version `n` of the pipeline `shape` through `node`; returns its version number once
/// every node runs it.
fn put_shape(c: &Cluster, node: usize, n: u32) -> u64 {
    let r = c
        .http
        .put(format!("{}/v1/pipelines/shape", c.bases[node]))
        .bearer_auth(&c.token)
        .json(&json!({"source": format!(".fields.shape = \"s{n}\"")}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let version = r.json::<Value>().unwrap()["version"].as_u64().unwrap();
    for other in 0..3 {
        let seen = common::poll_until(Duration::from_secs(10), || {
            let (status, body) = c.get(other, "/v1/pipelines/shape", &c.token);
            (status == 200 && body["version"] == version).then_some(())
        });
        assert!(seen.is_some(), "node {other} never ran version {version}");
        // What the node receives now is shaped by the new version.
        let probe = c
            .http
            .post(format!("{}/v1/events", c.bases[other]))
            .bearer_auth(&c.token)
            .json(&json!({"message": format!("probe {n} {other}"), "fields": {"run": "probe"}}))
            .send()
            .unwrap();
        assert_eq!(probe.status(), 200);
    }
    version
}

#[test]
fn replacing_a_pipeline_twice_under_load_shapes_each_event_once_with_one_version() {
    let c = Arc::new(cluster::start(&common::certs_args()));
    c.wait_writable();
    let v1 = put_shape(&c, 0, 1);

    let acked = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let c = c.clone();
        let acked = acked.clone();
        std::thread::spawn(move || {
            let mut node = 0;
            for batch in 0..EVENTS / BATCH {
                let events: Vec<Value> = (0..BATCH)
                    .map(|i| {
                        let n = batch * BATCH + i;
                        json!({"id": format!("hot-{n}"), "message": format!("event {n}"),
                               "fields": {"run": "hot"}})
                    })
                    .collect();
                // A batch that fails is retried with the same ids on the next node, for a
                // while: a cluster that refuses for minutes fails the test rather than hang it.
                let deadline = Instant::now() + RETRY_FOR;
                loop {
                    node = (node + 1) % 3;
                    let sent = c
                        .http
                        .post(format!("{}/v1/events", c.bases[node]))
                        .bearer_auth(&c.token)
                        .json(&events)
                        .send();
                    match sent {
                        Ok(r) if r.status() == 200 => break,
                        other => {
                            let why = match other {
                                Ok(r) => format!("{} {}", r.status(), r.text().unwrap_or_default()),
                                Err(e) => e.to_string(),
                            };
                            assert!(
                                Instant::now() < deadline,
                                "batch {batch} refused for {RETRY_FOR:?}, last by node {node}: {why}"
                            );
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                acked.fetch_add(BATCH, Ordering::SeqCst);
            }
        })
    };
    let wait_for = |n: usize| {
        while acked.load(Ordering::SeqCst) < n {
            assert!(!publisher.is_finished(), "the publisher stopped early");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(EVENTS / 3);
    let v2 = put_shape(&c, 1, 2);
    wait_for(2 * EVENTS / 3);
    let v3 = put_shape(&c, 2, 3);
    publisher.join().expect("the publisher finished");
    assert!(v1 < v2 && v2 < v3);

    for node in 0..3 {
        c.wait_total(node, "fields.run:hot", EVENTS as u64);
        let count = |q: &str| c.total(node, q);
        assert_eq!(count("fields.run:hot"), EVENTS as u64, "node {node}");
        let mut shaped = 0;
        for (n, version) in [(1, v1), (2, v2), (3, v3)] {
            let by_field = count(&format!("fields.run:hot AND fields.shape:s{n}"));
            let by_version = count(&format!(
                "fields.run:hot AND fields.pipelines.shape:{version}"
            ));
            assert_eq!(by_field, by_version, "node {node}: version {version}");
            assert!(
                by_field > 0,
                "node {node}: version {version} shaped nothing"
            );
            shaped += by_field;
        }
        assert_eq!(
            shaped, EVENTS as u64,
            "node {node}: each event by exactly one version"
        );
        // The probes sent right after each change were shaped by it, on every node.
        for n in 1..=3 {
            assert_eq!(
                count(&format!("fields.run:probe AND fields.shape:s{n}")),
                3,
                "node {node}"
            );
        }
    }

    // Every id once: read them all from one node.
    let mut seen = vec![0u8; EVENTS];
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/search?q=fields.run:hot&limit=10000".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, body) = c.get(0, &path, &c.token);
        assert_eq!(status, 200, "{body}");
        let events = body["events"].as_array().unwrap();
        for e in events {
            let n: usize = e["id"].as_str().unwrap()["hot-".len()..].parse().unwrap();
            seen[n] += 1;
            assert_eq!(
                e["fields"]["pipelines"].as_object().unwrap().len(),
                1,
                "{e}"
            );
        }
        match body["next"].as_str() {
            Some(next) if !events.is_empty() => cursor = Some(next.to_owned()),
            _ => break,
        }
    }
    assert!(seen.iter().all(|n| *n == 1), "ids stored other than once");
}
