//! Three real `meniscus start` processes: writes to a follower are forwarded to the leader,
//! every node answers `read=local` searches with every event, and a search with `min_index`
//! reads its writes on any node.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[test]
fn a_follower_forwards_writes_and_every_replica_serves_them() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let raft_ports: Vec<u16> = (0..3).map(|_| common::free_addr().port()).collect();
    let cluster = (0..3)
        .map(|i| format!("{}=127.0.0.1:{}", i + 1, raft_ports[i]))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs = Vec::new();
    let mut readers = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_meniscus"))
            .args([
                "start",
                "--node-id",
                &(i + 1).to_string(),
                "--initial-cluster",
                &cluster,
            ])
            .args([
                "--http",
                "127.0.0.1:0",
                "--commit-interval-ms",
                "100",
                "--data-dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().with_extension("log")).unwrap())
            .spawn()
            .unwrap();
        readers.push(BufReader::new(child.stdout.take().unwrap()));
        procs.push(common::KillOnDrop(child));
    }
    let mut bases = Vec::new();
    for reader in &mut readers {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "a node exited before it was ready"
            );
            if let Some(addr) = line.trim().strip_prefix("meniscus: http listening on ") {
                bases.push(format!("http://{addr}"));
                break;
            }
        }
    }
    let creds: Value =
        serde_json::from_slice(&std::fs::read(dirs[0].path().join("credentials.json")).unwrap())
            .unwrap();
    let token = creds["tenants"]["default"].as_str().unwrap().to_owned();
    let http = common::client(Duration::from_secs(30));

    // A follower: its /healthz says it does not lead.
    let deadline = Instant::now() + Duration::from_secs(20);
    let follower = loop {
        let writable: Vec<bool> = bases
            .iter()
            .map(|b| {
                http.get(format!("{b}/healthz"))
                    .send()
                    .map(|r| r.status() == 200)
                    .unwrap_or(false)
            })
            .collect();
        if writable.iter().filter(|w| **w).count() == 1 {
            break writable.iter().position(|w| !*w).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no single leader within 20 s: {writable:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    let total = 10_000;
    for batch in 0..(total / 1000) {
        let events: Vec<Value> = (0..1000)
            .map(|i| json!({"id": format!("ev-{}", batch * 1000 + i), "message": "clustered", "host": format!("web-{}", i % 5)}))
            .collect();
        let response = http
            .post(format!("{}/v1/events", bases[follower]))
            .bearer_auth(&token)
            .json(&events)
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().unwrap());
    }

    for base in &bases {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let body: Value = http
                .get(format!("{base}/v1/search"))
                .bearer_auth(&token)
                .query(&[("q", "*"), ("limit", "1"), ("read", "local")])
                .send()
                .unwrap()
                .json()
                .unwrap();
            if body["total"] == total {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{base} has {} of {total} events",
                body["total"]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // Read your writes: publish through one node, search another at once with the commit index
    // the publish answered. Every round must see every event so far, on whichever node.
    for round in 0..15usize {
        let to = (follower + round) % 3;
        let from = (follower + round + 1) % 3;
        let events: Vec<Value> = (0..50)
            .map(|i| json!({"id": format!("ryw-{round}-{i}"), "message": "read your writes"}))
            .collect();
        let answer: Value = http
            .post(format!("{}/v1/events", bases[to]))
            .bearer_auth(&token)
            .json(&events)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let index = answer["commit_index"].as_u64().expect("a commit index");
        let response = http
            .get(format!("{}/v1/search", bases[from]))
            .bearer_auth(&token)
            .query(&[("q", "\"read your writes\""), ("limit", "1")])
            .query(&[("min_index", index)])
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().unwrap();
        assert_eq!(
            body["total"],
            50 * (round + 1),
            "round {round}: published through {to} at {index}, searched {from}"
        );
    }
    // A commit index far ahead cannot be waited for: a clear 503 after the wait.
    let response = http
        .get(format!("{}/v1/search", bases[0]))
        .bearer_auth(&token)
        .query(&[("min_index", u64::MAX / 2)])
        .send()
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "not_yet_searchable", "{body}");
}
