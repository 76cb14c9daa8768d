//! Three real `meniscus start` processes: writes to a follower are forwarded to the leader,
//! every node answers `read=local` searches with every event, and a search with `min_index`
//! reads its writes on any node — whether followers index every event or copy the leader's
//! indexes, and whether tenants' events travel in the metadata group or in event shards of
//! their own. With copies, a new leader indexes what it had not copied, and a killed node
//! catches up.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Acceptance 1, as `meniscus start` makes a cluster by default (the tenant's events in an
/// event shard on all three nodes).
#[test]
fn a_follower_forwards_writes_and_every_replica_serves_them() {
    forwarded_writes_are_served_everywhere("index", None);
}

/// The same with every tenant's events in the metadata group, followers copying indexes.
#[test]
fn followers_that_copy_the_leaders_indexes_serve_every_write_too() {
    forwarded_writes_are_served_everywhere("copy", Some(0));
}

/// The metadata group carries tenants and tokens; each tenant's events go to one of two
/// event shards, Raft groups of their own whose leaders need not be the metadata leader.
#[test]
fn tenants_placed_in_event_shards_are_served_by_every_replica() {
    // Bound by name, not `..`, so the nodes keep running to the end.
    let Running {
        http,
        bases,
        creds,
        _procs,
        _dirs,
    } = forwarded_writes_are_served_everywhere("copy", Some(2));
    let admin = creds["admin_token"].as_str().unwrap();
    let created: Value = http
        .post(format!("{}/v1/tenants", bases[2]))
        .bearer_auth(admin)
        .json(&json!({"name": "globex"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = created["token"].as_str().expect("a token").to_owned();
    for (i, base) in bases.iter().enumerate() {
        let events: Vec<Value> = (0..300)
            .map(|n| json!({"id": format!("g-{i}-{n}"), "message": "sharded"}))
            .collect();
        publish(&http, base, &token, &events);
    }
    for base in &bases {
        wait_local_total(&http, base, &token, 900);
    }
    // Every node runs the metadata group and both shards, each with all three voters; the
    // first tenant went to shard 1, the next to the shard with fewer tenants.
    let deadline = Instant::now() + Duration::from_secs(20);
    for base in &bases {
        loop {
            let status = cluster_status(&http, base, admin);
            let groups: Vec<(u64, Value, Value)> = status["groups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| {
                    (
                        g["id"].as_u64().unwrap(),
                        g["kind"].clone(),
                        g["voters"].clone(),
                    )
                })
                .collect();
            let placed = status["shards"] == json!({"0": [], "1": ["default"], "2": ["globex"]});
            let expected = vec![
                (0, json!("metadata"), json!([1, 2, 3])),
                (1, json!("events"), json!([1, 2, 3])),
                (2, json!("events"), json!([1, 2, 3])),
            ];
            if groups == expected && placed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{base}: groups {groups:?}, shards {}",
                status["shards"]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Prometheus has each group's progress, labelled by group.
    let metrics = http
        .get(format!("{}/metrics", bases[0]))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for group in 0..3 {
        let series = format!("meniscus_raft_commit_index{{group=\"{group}\"}} ");
        let value: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .unwrap_or_else(|| panic!("no {series}in:\n{metrics}"))
            .parse()
            .unwrap();
        assert!(value > 0, "{series}{value}");
    }
}

/// Three shards on two of three nodes each: every node takes publishes and searches for every
/// tenant (a node without a replica has one that holds it serve them), `read=local` answers
/// only where a replica is, each node runs only the groups placed on it, and a node that
/// leaves has its replicas moved to the others.
#[test]
fn with_a_replication_factor_each_shard_is_on_two_nodes_and_any_node_serves_it() {
    let running = start_three(&["--shards", "3", "--replication-factor", "2"]);
    let Running {
        ref http,
        ref bases,
        ref creds,
        ..
    } = running;
    let admin = creds["admin_token"].as_str().unwrap();
    let mut tokens = vec![(
        "default".to_owned(),
        creds["tenants"]["default"].as_str().unwrap().to_owned(),
    )];
    for name in ["globex", "initech"] {
        let created: Value = http
            .post(format!("{}/v1/tenants", bases[1]))
            .bearer_auth(admin)
            .json(&json!({"name": name}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        tokens.push((
            name.to_owned(),
            created["token"].as_str().unwrap().to_owned(),
        ));
    }
    let status = cluster_status(http, &bases[0], admin);
    assert_eq!(
        status["shards"]["1"],
        json!(["default"]),
        "one tenant per shard: {status}"
    );

    // Which nodes run which groups: the metadata group everywhere, each shard on the two nodes
    // it is placed on, every node two shards.
    let placed = &status["shard_replicas"];
    let holders: Vec<Vec<usize>> = (0..=3)
        .map(|shard| {
            placed[shard.to_string()]
                .as_array()
                .map(|nodes| {
                    nodes
                        .iter()
                        .map(|n| n.as_u64().unwrap() as usize - 1)
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    for (shard, nodes) in holders.iter().enumerate().skip(1) {
        assert_eq!(nodes.len(), 2, "shard {shard} on {nodes:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, base) in bases.iter().enumerate() {
        let wanted: Vec<u64> = std::iter::once(0)
            .chain((1..=3u64).filter(|s| holders[*s as usize].contains(&i)))
            .collect();
        assert_eq!(wanted.len(), 3, "node {} holds two shards: {placed}", i + 1);
        loop {
            let status = cluster_status(http, base, admin);
            let groups: Vec<u64> = status["groups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["id"].as_u64().unwrap())
                .collect();
            if groups == wanted {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} runs groups {groups:?}, not {wanted:?}",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // Every node takes every tenant's writes and reads its own writes back at once.
    for (t, (tenant, token)) in tokens.iter().enumerate() {
        let shard = t + 1;
        for (i, base) in bases.iter().enumerate() {
            let events: Vec<Value> = (0..200)
                .map(|n| json!({"id": format!("{tenant}-{i}-{n}"), "message": "placed"}))
                .collect();
            let answer = publish(http, base, token, &events);
            let index = answer["commit_index"].as_u64().expect("a commit index");
            let reader = &bases[(i + 1) % 3];
            let body: Value = http
                .get(format!("{reader}/v1/search"))
                .bearer_auth(token)
                .query(&[("q", "*"), ("limit", "1")])
                .query(&[("min_index", index)])
                .send()
                .unwrap()
                .json()
                .unwrap();
            assert_eq!(
                body["total"],
                200 * (i as u64 + 1),
                "{tenant} (shard {shard}, on nodes {:?}): published through node {}, read on {reader}: {body}",
                holders[shard],
                i + 1
            );
        }
        for (i, base) in bases.iter().enumerate() {
            if holders[shard].contains(&i) {
                wait_local_total(http, base, token, 600);
            } else {
                let response = http
                    .get(format!("{base}/v1/search"))
                    .bearer_auth(token)
                    .query(&[("q", "*"), ("read", "local")])
                    .send()
                    .unwrap();
                assert_eq!(response.status(), 503);
                let body: Value = response.json().unwrap();
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("holds no replica"),
                    "{body}"
                );
            }
        }
    }

    // Node 3 leaves: its replicas move to the two nodes left (each new one a learner until it
    // has caught up by snapshot, then swapped in for node 3's in one joint change), which then
    // serve every tenant from their own replicas.
    let response = http
        .delete(format!("{}/v1/cluster/nodes/3", bases[0]))
        .bearer_auth(admin)
        .send()
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = cluster_status(http, &bases[0], admin);
        let moved = (1..=3).all(|s| status["shard_replicas"][s.to_string()] == json!([1, 2]));
        if moved {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas not moved off node 3: {}",
            status["shard_replicas"]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (_, token) in &tokens {
        for base in &bases[..2] {
            wait_local_total(http, base, token, 600);
        }
    }
}

/// Three nodes still running after [`forwarded_writes_are_served_everywhere`].
struct Running {
    http: reqwest::blocking::Client,
    bases: Vec<String>,
    /// The bootstrapping node's credentials.
    creds: Value,
    _procs: Vec<common::KillOnDrop>,
    _dirs: Vec<tempfile::TempDir>,
}

/// Starts three nodes bootstrapped together with `extra` flags; returns once every one's HTTP
/// API listens.
fn start_three(extra: &[&str]) -> Running {
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
            .args(common::certs_args())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().with_extension("log")).unwrap())
            .spawn()
            .unwrap();
        readers.push(BufReader::new(child.stdout.take().unwrap()));
        procs.push(common::KillOnDrop(child));
    }
    let bases = readers
        .iter_mut()
        .map(|reader| format!("http://{}", common::ready_addr(reader)))
        .collect();
    let creds: Value =
        serde_json::from_slice(&std::fs::read(dirs[0].path().join("credentials.json")).unwrap())
            .unwrap();
    let http = common::client(Duration::from_secs(30));
    Running {
        http,
        bases,
        creds,
        _procs: procs,
        _dirs: dirs,
    }
}

/// Runs the scenario on three nodes, bootstrapped with `shards` event shards (`None`: the
/// default).
fn forwarded_writes_are_served_everywhere(follower_indexes: &str, shards: Option<u64>) -> Running {
    let shards = shards.map(|s| s.to_string());
    let mut flags = vec!["--follower-indexes", follower_indexes];
    if let Some(shards) = &shards {
        flags.extend(["--shards", shards]);
    }
    let running = start_three(&flags);
    let Running {
        ref http,
        ref bases,
        ref creds,
        ..
    } = running;
    let token = creds["tenants"]["default"].as_str().unwrap().to_owned();
    let admin = creds["admin_token"].as_str().unwrap();
    let follower = a_follower_of(http, &bases[0], admin, "default");

    let total = 10_000;
    for batch in 0..(total / 1000) {
        let events: Vec<Value> = (0..1000)
            .map(|i| json!({"id": format!("ev-{}", batch * 1000 + i), "message": "clustered", "host": format!("web-{}", i % 5)}))
            .collect();
        publish(http, &bases[follower], &token, &events);
    }

    for base in bases {
        wait_local_total(http, base, &token, total);
    }

    // Read your writes: publish through one node, search another at once with the commit index
    // the publish answered. Every round must see every event so far, on whichever node.
    for round in 0..15usize {
        let to = (follower + round) % 3;
        let from = (follower + round + 1) % 3;
        let events: Vec<Value> = (0..50)
            .map(|i| json!({"id": format!("ryw-{round}-{i}"), "message": "read your writes"}))
            .collect();
        let answer = publish(http, &bases[to], &token, &events);
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
    running
}

/// `GET /v1/cluster` on `base`.
fn cluster_status(http: &reqwest::blocking::Client, base: &str, admin: &str) -> Value {
    http.get(format!("{base}/v1/cluster"))
        .bearer_auth(admin)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// The index in the bases of a node that does not lead the Raft group carrying `tenant`'s
/// events, once that group has a leader (node `i + 1` listens at base `i`).
fn a_follower_of(http: &reqwest::blocking::Client, base: &str, admin: &str, tenant: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = cluster_status(http, base, admin);
        let group = status["shards"].as_object().and_then(|shards| {
            shards.iter().find_map(|(id, tenants)| {
                let here = tenants.as_array()?.iter().any(|t| t == tenant);
                here.then(|| id.parse::<u64>().ok())?
            })
        });
        let leader = status["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| group.is_some() && g["id"].as_u64() == group)
            .and_then(|g| g["leader"].as_u64())
            .filter(|l| (1..=3).contains(l));
        if let Some(leader) = leader {
            // Node `leader` is at index `leader - 1`; the next node along follows.
            return leader as usize % 3;
        }
        assert!(
            Instant::now() < deadline,
            "no leader for {tenant}'s group within 20 s: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Publishes `events` through `base`; returns the answer, which must be a 200.
fn publish(http: &reqwest::blocking::Client, base: &str, token: &str, events: &[Value]) -> Value {
    let response = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(token)
        .json(events)
        .send()
        .unwrap();
    let status = response.status();
    let body = response.text().unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits until `base` answers `read=local` searches with `total` events (30 s at most).
fn wait_local_total(http: &reqwest::blocking::Client, base: &str, token: &str, total: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body: Value = http
            .get(format!("{base}/v1/search"))
            .bearer_auth(token)
            .query(&[("q", "*"), ("limit", "1"), ("read", "local")])
            .send()
            .unwrap()
            .json()
            .unwrap();
        if body["total"] == total {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{base} has {} of {total} events",
            body["total"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct CopyingNode {
    process: Option<common::KillOnDrop>,
    base: String,
}

/// Spawns node `id` of `cluster`, whose followers copy indexes. Its HTTP API listens only
/// once it has bootstrapped, for which it needs its peers: spawn them all before waiting.
fn spawn_copying(
    id: usize,
    dir: &std::path::Path,
    cluster: &str,
    http: &str,
) -> (common::KillOnDrop, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meniscus"))
        .args([
            "start",
            "--node-id",
            &id.to_string(),
            "--initial-cluster",
            cluster,
        ])
        .args(["--http", http, "--commit-interval-ms", "100"])
        .args(["--follower-indexes", "copy", "--data-dir"])
        .arg(dir)
        .args(common::certs_args())
        // One group, so the metadata leader (healthy) is the node that indexes; the chaos
        // schedules run copying followers in event shards.
        .args(["--shards", "0"])
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.with_extension("log"))
                .unwrap(),
        )
        .spawn()
        .unwrap();
    let reader = BufReader::new(child.stdout.take().unwrap());
    (common::KillOnDrop(child), reader)
}

/// Waits for a spawned node's HTTP address.
fn listening(
    (process, mut reader): (common::KillOnDrop, BufReader<std::process::ChildStdout>),
) -> CopyingNode {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "a node exited");
        if let Some(addr) = line.trim().strip_prefix("meniscus: http listening on ") {
            // Keep reading its stdout so the node never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            return CopyingNode {
                process: Some(process),
                base: format!("http://{addr}"),
            };
        }
    }
}

#[test]
fn with_copied_indexes_a_new_leader_indexes_the_rest_and_a_killed_node_catches_up() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let raft_ports: Vec<u16> = (0..3).map(|_| common::free_addr().port()).collect();
    let http_addrs: Vec<String> = (0..3).map(|_| common::free_addr().to_string()).collect();
    let cluster = (0..3)
        .map(|i| format!("{}=127.0.0.1:{}", i + 1, raft_ports[i]))
        .collect::<Vec<_>>()
        .join(",");
    let spawned: Vec<_> = (0..3)
        .map(|i| spawn_copying(i + 1, dirs[i].path(), &cluster, &http_addrs[i]))
        .collect();
    let mut nodes: Vec<CopyingNode> = spawned.into_iter().map(listening).collect();
    let creds: Value =
        serde_json::from_slice(&std::fs::read(dirs[0].path().join("credentials.json")).unwrap())
            .unwrap();
    let token = creds["tenants"]["default"].as_str().unwrap().to_owned();
    let admin = creds["admin_token"].as_str().unwrap().to_owned();
    let http = common::client(Duration::from_secs(30));
    let leader_among = |nodes: &[CopyingNode], alive: &[usize]| -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let leaders: Vec<usize> = alive
                .iter()
                .copied()
                .filter(|i| {
                    http.get(format!("{}/healthz", nodes[*i].base))
                        .send()
                        .and_then(|r| r.json::<Value>())
                        .is_ok_and(|body| body["writable"] == true)
                })
                .collect();
            if leaders.len() == 1 {
                return leaders[0];
            }
            assert!(Instant::now() < deadline, "no single leader: {leaders:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let publish = |base: &str, from: usize, count: usize| {
        for start in (from..from + count).step_by(1000) {
            let events: Vec<Value> = (start..(start + 1000).min(from + count))
                // No ids: a retry or a second indexing of the same entry would not replace
                // an event but add one, and the totals below would show it.
                .map(|i| json!({"message": format!("copied {i}")}))
                .collect();
            publish(&http, base, &token, &events);
        }
    };
    let wait_total = |base: &str, total: u64| wait_local_total(&http, base, &token, total);
    let indexes = |base: &str| -> Value {
        let body = cluster_status(&http, base, &admin);
        body["indexes"].clone()
    };

    let leader = leader_among(&nodes, &[0, 1, 2]);
    let follower = (leader + 1) % 3;
    publish(&nodes[follower].base, 0, 5_000);
    for node in &nodes {
        wait_total(&node.base, 5_000);
    }
    // Only the leader indexed; the followers copied.
    assert_eq!(indexes(&nodes[leader].base)["indexing_here"], true);
    for i in (0..3).filter(|i| *i != leader) {
        let status = indexes(&nodes[i].base);
        assert_eq!(status["follower_indexes"], "copy", "{status}");
        assert_eq!(status["indexing_here"], false, "{status}");
        assert!(status["copies_adopted"].as_u64().unwrap() > 0, "{status}");
    }

    // The leader dies; a follower that only copied takes over, indexes what it had not
    // copied yet, and goes on with new writes. Nothing is lost or doubled.
    nodes[leader].process.take();
    let alive: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new_leader = leader_among(&nodes, &alive);
    publish(&nodes[new_leader].base, 5_000, 5_000);
    for i in &alive {
        wait_total(&nodes[*i].base, 10_000);
    }
    assert_eq!(indexes(&nodes[new_leader].base)["indexing_here"], true);

    // The killed node comes back as a follower and copies its way to every event.
    nodes[leader] = listening(spawn_copying(
        leader + 1,
        dirs[leader].path(),
        &cluster,
        &http_addrs[leader],
    ));
    wait_total(&nodes[leader].base, 10_000);
}
