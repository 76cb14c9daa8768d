//! Issue 3, acceptance 4: a node joins a running 3-node cluster that holds events, receives its
//! data by snapshot and serves them; a node is removed; every Raft log stays bounded.
//!
//! `MENISCUS_JOIN_EVENTS` sets how many events the cluster holds before the join (default
//! 20,000; the README reports a run with 1,000,000).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ADMIN: &str = "mns_b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
/// Entries a log may hold beyond what every live member stored.
const MAX_LOG_ENTRIES: u64 = 50;

use common::KillOnDrop as Proc;

fn free_addr() -> String {
    common::free_addr().to_string()
}

/// The flags of node 4, listening for Raft on `raft`, joining through the member at `through`
/// (an HTTP base URL), with `extra` flags.
fn joiner_args(raft: &str, through: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["--node-id", "4", "--raft", raft, "--join", through]
        .into_iter()
        .map(str::to_owned)
        .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Starts `meniscus start` with `args`; returns once its HTTP API listens.
fn start(dir: &Path, http: &str, args: &[String]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meniscus"))
        .arg("start")
        .args(args)
        .args(["--http", http, "--commit-interval-ms", "100"])
        .args(["--compact-interval-secs", "1"])
        .args(["--max-raft-log-entries", &MAX_LOG_ENTRIES.to_string()])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(common::certs_args())
        .env("MENISCUS_ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("node.log")).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (ready, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("meniscus: http listening on ") {
                let _ = ready.send(());
            }
        }
    });
    let proc = Proc(child);
    if seen.recv_timeout(Duration::from_secs(60)).is_err() {
        panic!(
            "node did not start:\n{}",
            std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
        );
    }
    proc
}

struct Cluster {
    http: reqwest::blocking::Client,
}

impl Cluster {
    fn status(&self, base: &str) -> Value {
        self.http
            .get(format!("{base}/v1/cluster"))
            .bearer_auth(ADMIN)
            .send()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null)
    }

    fn group(&self, base: &str) -> Value {
        self.status(base)["groups"][0].clone()
    }

    /// Every group `base` runs: the metadata group, then the event shards.
    fn groups(&self, base: &str) -> Vec<Value> {
        self.status(base)["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `base` runs `count` groups and `check` holds for each.
    fn every_group(&self, base: &str, count: usize, check: impl Fn(&Value) -> bool) -> bool {
        let groups = self.groups(base);
        groups.len() == count && groups.iter().all(check)
    }

    fn local_total(&self, base: &str, token: &str) -> Option<u64> {
        let body: Value = self
            .http
            .get(format!("{base}/v1/search"))
            .bearer_auth(token)
            .query(&[("q", "*"), ("limit", "1"), ("read", "local")])
            .send()
            .ok()?
            .json()
            .ok()?;
        body["total"].as_u64()
    }

    fn publish(&self, base: &str, token: &str, from: usize, n: usize) {
        let events: Vec<Value> = (from..from + n)
            .map(|i| json!({"id": format!("ev-{i}"), "message": format!("joined cluster event {i}")}))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let response = self
                .http
                .post(format!("{base}/v1/events"))
                .bearer_auth(token)
                .json(&events)
                .send();
            match response {
                Ok(r) if r.status() == 200 => return,
                Ok(r) if Instant::now() < deadline => {
                    eprintln!("publish to {base}: {} (retrying)", r.status())
                }
                Err(e) if Instant::now() < deadline => eprintln!("publish to {base}: {e}"),
                other => panic!("publishing to {base} failed: {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_total(&self, base: &str, token: &str, expected: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let total = self.local_total(base, token);
            if total == Some(expected) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{base} has {total:?} of {expected} events"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_for(&self, what: &str, timeout: Duration, done: impl FnMut() -> bool) {
        self.wait_for_explained(what, timeout, done, String::new)
    }

    /// [`Cluster::wait_for`], adding `explain()` to the panic message on a timeout.
    fn wait_for_explained(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut() -> bool,
        explain: impl Fn() -> String,
    ) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                explain()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn ids(value: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    ids.sort_unstable();
    ids
}

/// Three bootstrapped members and room for a fourth: their dirs, Raft and HTTP addresses.
struct Nodes {
    dirs: Vec<common::TestDir>,
    raft: Vec<String>,
    http: Vec<String>,
    base: Vec<String>,
    /// Index 3 is empty until the fourth node starts.
    procs: Vec<Option<Proc>>,
}

impl Nodes {
    /// Each running node's view of its Raft group and the end of its log, for a failure
    /// message: CI keeps neither the data directories nor the node logs.
    fn report(&self, c: &Cluster) -> String {
        let mut report = String::new();
        for (i, proc) in self.procs.iter().enumerate() {
            if proc.is_none() {
                continue;
            }
            let group = c.group(&self.base[i]);
            let log =
                std::fs::read_to_string(self.dirs[i].path().join("node.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            report += &format!("--- node {}: {group}\n{tail}\n", i + 1);
        }
        report
    }
}

/// Bootstraps nodes 1-3 and creates tenant `acme` through node 2; returns its token.
fn three_nodes(c: &Cluster) -> (Nodes, String) {
    three_nodes_with_shards(c, Some((0, 0)))
}

/// Three nodes bootstrapped with `shards` event shards, each on `factor` nodes (0: all), or
/// the defaults for `None`; a fourth is free to join.
fn three_nodes_with_shards(c: &Cluster, layout: Option<(u64, u64)>) -> (Nodes, String) {
    let dirs: Vec<_> = (0..4).map(|_| common::TestDir::new()).collect();
    let raft: Vec<String> = (0..4).map(|_| free_addr()).collect();
    let http: Vec<String> = (0..4).map(|_| free_addr()).collect();
    let base: Vec<String> = http.iter().map(|h| format!("http://{h}")).collect();
    let initial = (0..3)
        .map(|i| format!("{}={}", i + 1, raft[i]))
        .collect::<Vec<_>>()
        .join(",");
    let starting: Vec<_> = (0..3)
        .map(|i| {
            let dir = dirs[i].path().to_owned();
            let mut args = vec![
                "--node-id".into(),
                (i + 1).to_string(),
                "--initial-cluster".into(),
                initial.clone(),
            ];
            if let Some((shards, factor)) = layout {
                args.extend([
                    "--shards".into(),
                    shards.to_string(),
                    "--replication-factor".into(),
                    factor.to_string(),
                ]);
            }
            let http = http[i].clone();
            std::thread::spawn(move || start(&dir, &http, &args))
        })
        .collect();
    let procs = starting
        .into_iter()
        .map(|t| Some(t.join().unwrap()))
        .chain(std::iter::once(None))
        .collect();
    c.wait_for("a leader", Duration::from_secs(30), || {
        c.group(&base[0])["leader"].as_u64().is_some()
    });
    let created: Value = c
        .http
        .post(format!("{}/v1/tenants", base[1]))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "acme"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let nodes = Nodes {
        dirs,
        raft,
        http,
        base,
        procs,
    };
    (nodes, token)
}

/// Batches of events published to one node on a thread of their own until stopped.
struct BackgroundWrites {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl BackgroundWrites {
    /// Publishes `batch` events at a time to `base`, ids from `first` on, pausing `pause`
    /// after each batch.
    fn start(base: &str, token: &str, first: usize, batch: usize, pause: Duration) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, base, token) = (stop.clone(), base.to_owned(), token.to_owned());
        let thread = std::thread::spawn(move || {
            let c = Cluster {
                http: common::client(Duration::from_secs(60)),
            };
            let mut next = first;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                c.publish(&base, &token, next, batch);
                next += batch;
                std::thread::sleep(pause);
            }
            next
        });
        BackgroundWrites { stop, thread }
    }

    /// Stops the writes; returns the id after the last one published.
    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap() as u64
    }
}

#[test]
fn a_node_joins_by_snapshot_a_node_leaves_and_logs_stay_bounded() {
    joins_and_leaves(0);
}

/// The same with two event shards: the newcomer joins every group (the metadata group and
/// both shards) by snapshot, and the leaver leaves every group.
#[test]
fn a_node_joins_every_shard_by_snapshot_and_a_node_leaves_them_all() {
    joins_and_leaves(2);
}

fn joins_and_leaves(shards: u64) {
    let events = join_events(20_000);
    let c = Cluster {
        http: common::client(Duration::from_secs(60)),
    };
    let groups = shards as usize + 1;
    let (nodes, token) = three_nodes_with_shards(&c, Some((shards, 0)));
    let Nodes {
        dirs,
        raft,
        http,
        base,
        procs: mut nodes,
    } = nodes;

    let batch = 5_000;
    for (n, from) in (0..events).step_by(batch).enumerate() {
        c.publish(&base[n % 3], &token, from, batch.min(events - from));
    }
    for b in &base[..3] {
        c.wait_total(b, &token, events as u64, Duration::from_secs(300));
    }
    // The logs are compacted past the start, so a newcomer cannot replay them.
    c.wait_for("log compaction", Duration::from_secs(30), || {
        c.every_group(&base[0], groups, |g| {
            g["log_first_index"].as_u64() > Some(2)
        })
    });

    // Node 4 joins through node 1.
    let joined = Instant::now();
    nodes[3] = Some(start(
        dirs[3].path(),
        &http[3],
        &joiner_args(&raft[3], &base[0], &[]),
    ));
    c.wait_total(&base[3], &token, events as u64, Duration::from_secs(300));
    eprintln!(
        "node 4 serves {events} events {:?} after it was started",
        joined.elapsed()
    );
    c.wait_for("node 4 to become a voter", Duration::from_secs(60), || {
        c.every_group(&base[0], groups, |g| ids(&g["voters"]) == [1, 2, 3, 4])
    });
    assert_started_from_snapshots(&c, &base[3]);

    // It takes writes like any member (a follower forwards them).
    c.publish(&base[3], &token, events, 1_000);
    for b in &base {
        c.wait_total(b, &token, events as u64 + 1_000, Duration::from_secs(120));
    }

    // Node 2 leaves, through the CLI.
    let removed = Command::new(env!("CARGO_BIN_EXE_meniscus"))
        .args(["cluster", "remove", "2", "--server", &base[0]])
        .env("MENISCUS_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    let live = [0, 2, 3];
    c.wait_for(
        "node 2 to leave every group",
        Duration::from_secs(60),
        || {
            live.iter()
                .all(|i| c.every_group(&base[*i], groups, |g| ids(&g["voters"]) == [1, 3, 4]))
        },
    );
    // The removed node answers at once, saying why, and is not ready; SIGTERM ends it.
    let asked = Instant::now();
    let r = c
        .http
        .get(format!("{}/v1/search?q=*", base[1]))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"]["code"], "removed", "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    let ready = c.http.get(format!("{}/readyz", base[1])).send().unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let mut removed_node = nodes[1].take().unwrap();
    let pid = removed_node.0.id().to_string();
    let stopping = Instant::now();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let exited = common::poll_until(Duration::from_secs(60), || {
        removed_node.0.try_wait().ok().flatten()
    });
    assert!(
        exited.is_some(),
        "SIGTERM did not end the removed node within 60 s"
    );
    eprintln!(
        "the removed node stopped {:?} after SIGTERM",
        stopping.elapsed()
    );
    // The others forget node 2 (its certificate opens no connection any more), and every live
    // member is reachable: `reachable` means heard from lately, both ways.
    c.wait_for_explained(
        "the live nodes to forget node 2 and reach each other",
        Duration::from_secs(30),
        || {
            live.iter().all(|i| {
                let nodes = c.status(&base[*i])["nodes"].clone();
                let nodes = nodes.as_array().cloned().unwrap_or_default();
                nodes.len() == 3 && nodes.iter().all(|n| n["reachable"] == true && n["id"] != 2)
            })
        },
        || format!("{:#}", c.status(&base[0])["nodes"]),
    );
    c.publish(&base[2], &token, events + 1_000, 1_000);
    for i in live {
        c.wait_total(
            &base[i],
            &token,
            events as u64 + 2_000,
            Duration::from_secs(120),
        );
    }

    // Every live log is compacted to within the bound of what every member stored.
    c.wait_for("bounded logs", Duration::from_secs(30), || {
        live.iter()
            .all(|i| c.every_group(&base[*i], groups, log_is_bounded))
    });
    let status = c.status(&base[0]);
    let placed = if shards == 0 {
        json!({"0": ["acme", "default"]})
    } else {
        json!({"0": [], "1": ["default"], "2": ["acme"]})
    };
    assert_eq!(status["shards"], placed);
}

/// Three shards on two of three nodes each: a node that joins takes over replicas (balanced:
/// six replicas on four nodes), by snapshot, and serves them from its own copy; the node that
/// gave each one up stops running it.
#[test]
fn a_joining_node_takes_over_shard_replicas() {
    let c = Cluster {
        http: common::client(Duration::from_secs(60)),
    };
    let (mut nodes, token) = three_nodes_with_shards(&c, Some((3, 2)));
    takes_over_replicas(&c, &mut nodes, &token, 3, 2);
}

/// Acceptance 4 in the default layout (four shards on three nodes each): a fourth node takes
/// three of the twelve replicas by snapshot; then node 2 is removed and its replicas are
/// placed on the three left, which hold every shard again (each group's log within its bound)
/// and serve it from their own copies.
#[test]
fn in_the_default_layout_a_joiner_takes_replicas_and_a_removed_node_gives_them_up() {
    let c = Cluster {
        http: common::client(Duration::from_secs(60)),
    };
    let (mut nodes, token) = three_nodes_with_shards(&c, None);
    let held = takes_over_replicas(&c, &mut nodes, &token, 4, 3);
    let base = &nodes.base;

    let response = c
        .http
        .delete(format!("{}/v1/cluster/nodes/2", base[0]))
        .bearer_auth(ADMIN)
        .send()
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().unwrap());
    let live = [1u64, 3, 4];
    c.wait_for(
        "node 2's replicas placed on the others",
        Duration::from_secs(120),
        || {
            let placed = c.status(&base[0])["shard_replicas"].clone();
            (1..=4).all(|s| ids(&placed[s.to_string()]) == live)
        },
    );
    c.wait_for(
        "nodes 1, 3, 4 to run every shard, the three of them voters, logs bounded",
        Duration::from_secs(120),
        || {
            live.iter().all(|n| {
                let groups = c.groups(&base[*n as usize - 1]);
                groups.len() == 5
                    && groups
                        .iter()
                        .all(|g| ids(&g["voters"]) == live && log_is_bounded(g))
            })
        },
    );
    c.publish(&base[2], &token, held as usize, 500);
    for n in live {
        let base = &base[n as usize - 1];
        c.wait_total(base, &token, held + 500, Duration::from_secs(120));
    }
}

/// Publishes 3,000 events for acme, starts node 4, and waits until the `shards * factor`
/// replicas are balanced over four nodes, each node runs exactly the shards placed on it, and
/// acme's holders (node 4 too, when it is one) serve its events from their own copies and
/// take more through node 4. Returns how many acme events the cluster then holds.
fn takes_over_replicas(
    c: &Cluster,
    nodes: &mut Nodes,
    token: &str,
    shards: u64,
    factor: u64,
) -> u64 {
    let base = nodes.base.clone();
    let events = join_events(3_000);
    let batch = 5_000;
    for (n, from) in (0..events).step_by(batch).enumerate() {
        c.publish(&base[n % 3], token, from, batch.min(events - from));
    }
    // The logs are compacted past their start, so node 4 cannot replay them.
    c.wait_for("log compaction", Duration::from_secs(30), || {
        (0..3).all(|i| {
            c.groups(&base[i])
                .iter()
                .all(|g| g["log_first_index"].as_u64() > Some(2))
        })
    });
    let joined = Instant::now();
    nodes.procs[3] = Some(start(
        nodes.dirs[3].path(),
        &nodes.http[3],
        &joiner_args(&nodes.raft[3], &base[0], &[]),
    ));
    let events = events as u64;
    // Balanced: no node holds more than one replica more than another, node 4 included.
    let total = (shards * factor) as usize;
    let fair = (total / 4)..=total.div_ceil(4);
    let holds = |placed: &Value, node: u64| -> Vec<u64> {
        (1..=shards)
            .filter(|s| ids(&placed[s.to_string()]).contains(&node))
            .collect()
    };
    let mut placed = Value::Null;
    c.wait_for("replicas placed on node 4", Duration::from_secs(60), || {
        placed = c.status(&base[0])["shard_replicas"].clone();
        (1..=4).all(|n| fair.contains(&holds(&placed, n).len()))
    });
    let acme_shard = c.status(&base[0])["shards"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, tenants)| tenants.as_array().unwrap().contains(&json!("acme")))
        .map(|(id, _)| id.clone())
        .unwrap();
    // Every node that should hold a replica runs the shard, every other does not.
    c.wait_for(
        "each node to run the shards placed on it",
        Duration::from_secs(120),
        || {
            (1..=4u64).all(|node| {
                let running: Vec<u64> = c
                    .groups(&base[node as usize - 1])
                    .iter()
                    .filter_map(|g| g["id"].as_u64())
                    .filter(|id| *id != 0)
                    .collect();
                running == holds(&placed, node)
            })
        },
    );
    assert_started_from_snapshots(c, &base[3]);
    let holders = ids(&placed[&acme_shard]);
    for node in &holders {
        let base = &base[*node as usize - 1];
        c.wait_total(base, token, events, Duration::from_secs(300));
    }
    eprintln!(
        "acme's holders {holders:?} serve its {events} events {:?} after node 4 was started",
        joined.elapsed()
    );
    // Node 4 takes writes for acme like any other node.
    c.publish(&base[3], token, events as usize, 500);
    for node in &holders {
        let base = &base[*node as usize - 1];
        c.wait_total(base, token, events + 500, Duration::from_secs(60));
    }
    events + 500
}

/// Every group the node at `base` runs began from a snapshot: it could not replay the log.
fn assert_started_from_snapshots(c: &Cluster, base: &str) {
    for group in c.groups(base) {
        let first = group["log_first_index"].as_u64().unwrap();
        assert!(
            first > 2,
            "{base} replayed group {}'s log from {first} instead of a snapshot",
            group["id"]
        );
    }
}

/// Whether a `/v1/cluster` group's log holds at most `MAX_LOG_ENTRIES` below its commit index.
fn log_is_bounded(group: &Value) -> bool {
    let (Some(commit), Some(first)) = (
        group["commit_index"].as_u64(),
        group["log_first_index"].as_u64(),
    ) else {
        return false;
    };
    commit.saturating_sub(first) <= MAX_LOG_ENTRIES
}

/// `MENISCUS_JOIN_EVENTS`, or `default`: how many events the cluster holds when a node joins.
fn join_events(default: usize) -> usize {
    std::env::var("MENISCUS_JOIN_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Forwards every connection to `listen` on to `target` (both ways) from now on; with a rate,
/// what flows towards `target` is held to that many bytes per second.
fn forward(listen: &str, target: &str, bytes_per_sec: Option<u64>) {
    let listener = std::net::TcpListener::bind(listen).unwrap();
    let target = target.to_owned();
    std::thread::spawn(move || {
        for down in listener.incoming().map_while(Result::ok) {
            let Ok(up) = std::net::TcpStream::connect(&target) else {
                continue;
            };
            let (mut down_r, mut up_w) = (down.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || copy_at(&mut down_r, &mut up_w, bytes_per_sec));
            let (mut up_r, mut down_w) = (up, down);
            std::thread::spawn(move || std::io::copy(&mut up_r, &mut down_w));
        }
    });
}

fn copy_at(
    from: &mut std::net::TcpStream,
    to: &mut std::net::TcpStream,
    bytes_per_sec: Option<u64>,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut buf = [0u8; 8 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
        if let Some(rate) = bytes_per_sec {
            std::thread::sleep(Duration::from_micros(n as u64 * 1_000_000 / rate));
        }
    }
}

/// A joiner killed before it heard anything from the cluster (the address it announced does
/// not answer yet, so no entry or snapshot reached it) must still find the members when it
/// restarts: its own metadata is empty, and the join request is only made once. Found by the
/// 30-minute chaos run with seed 1, where such joiners never caught up.
#[test]
fn a_joiner_killed_before_its_first_snapshot_catches_up_after_restart() {
    let c = Cluster {
        http: common::client(Duration::from_secs(60)),
    };
    let (mut nodes, token) = three_nodes(&c);
    c.publish(&nodes.base[0], &token, 0, 2_000);

    // The cluster records node 4 at an address that nothing listens on yet.
    let announced = free_addr();
    let args = joiner_args(
        &nodes.raft[3],
        &nodes.base[0],
        &["--raft-advertise", &announced],
    );
    let first = start(nodes.dirs[3].path(), &nodes.http[3], &args);
    c.wait_for("node 4 to be a member", Duration::from_secs(30), || {
        let group = c.group(&nodes.base[0]);
        ids(&group["learners"]).contains(&4) || ids(&group["voters"]).contains(&4)
    });
    assert_eq!(
        c.local_total(&nodes.base[3], &token),
        None,
        "node 4 knew tenant acme before anything could reach it"
    );
    let mut first = first;
    first.0.kill().unwrap();
    first.0.wait().unwrap();

    // Now the announced address leads to it; it restarts with the same command line.
    forward(&announced, &nodes.raft[3], None);
    nodes.procs[3] = Some(start(nodes.dirs[3].path(), &nodes.http[3], &args));
    c.wait_total(&nodes.base[3], &token, 2_000, Duration::from_secs(60));
    c.publish(&nodes.base[3], &token, 2_000, 500);
    for base in &nodes.base {
        c.wait_total(base, &token, 2_500, Duration::from_secs(60));
    }
}

/// Issue 3, membership: `--join ... --replace N` swaps voter N for node 4 without the group
/// ever having fewer than three voters, while writes go on. N is the leader: it hands
/// leadership over first, and until then the newcomer must reach it (it once could not: the
/// join answer left out members marked removed, so the newcomer never answered its leader,
/// which never sent it a snapshot).
#[test]
fn a_node_replaces_a_voter_in_one_joint_change_while_writes_go_on() {
    let c = Cluster {
        http: common::client(Duration::from_secs(60)),
    };
    let (mut nodes, token) = three_nodes(&c);
    c.publish(&nodes.base[0], &token, 0, 1_000);

    // Replacing something that is not a voter is refused, with the reason.
    let refused = c
        .http
        .post(format!("{}/v1/cluster/nodes", nodes.base[0]))
        .bearer_auth(ADMIN)
        .json(&json!({"id": 9, "raft_addr": free_addr(), "replaces": 7}))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 409);
    let body = refused.text().unwrap();
    assert!(body.contains("node 7 is not a voter"), "{body}");

    let old = c.group(&nodes.base[0])["leader"].as_u64().unwrap();
    let old_index = old as usize - 1;
    let live: Vec<usize> = [0, 1, 2, 3]
        .into_iter()
        .filter(|i| *i != old_index)
        .collect();
    let mut voters: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|id| *id != old).collect();
    voters.sort_unstable();

    // Writes (to a member that stays) and a watch on the voters run throughout.
    let writer = BackgroundWrites::start(&nodes.base[live[0]], &token, 1_000, 100, Duration::ZERO);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (stop, base) = (stop.clone(), nodes.base[live[0]].clone());
        std::thread::spawn(move || {
            let c = Cluster {
                http: common::client(Duration::from_secs(5)),
            };
            let mut fewest = usize::MAX;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let voters = ids(&c.group(&base)["voters"]);
                if !voters.is_empty() {
                    fewest = fewest.min(voters.len());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            fewest
        })
    };

    nodes.procs[3] = Some(start(
        nodes.dirs[3].path(),
        &nodes.http[3],
        &joiner_args(
            &nodes.raft[3],
            &nodes.base[live[0]],
            &["--replace", &old.to_string()],
        ),
    ));
    c.wait_for_explained(
        &format!("node 4 to replace node {old}"),
        Duration::from_secs(60),
        || {
            live.iter()
                .all(|i| ids(&c.group(&nodes.base[*i])["voters"]) == voters)
        },
        || nodes.report(&c),
    );
    let published = writer.stop();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let fewest = watcher.join().unwrap();
    assert!(fewest >= 3, "the group had {fewest} voters at one point");
    nodes.procs[old_index] = None;
    for i in live {
        c.wait_total(&nodes.base[i], &token, published, Duration::from_secs(60));
    }
    let joint = (0..3).any(|i| {
        std::fs::read_to_string(nodes.dirs[i].path().join("node.log"))
            .unwrap_or_default()
            .contains("replacing in one joint change")
    });
    assert!(joint, "no leader logged the joint change");
}

/// Found by the 30-minute chaos runs: a joiner that takes a while to fetch its snapshot is
/// silent meanwhile (it installs on its Raft thread), so the leader stopped counting it and
/// compacted the log past the snapshot: once installed, the joiner needed another one, and
/// under steady writes it could chase snapshots for minutes. Now the log is kept from the
/// snapshot being sent (up to four times `--max-raft-log-entries`), so one snapshot does.
#[test]
fn a_joiner_on_a_slow_link_needs_one_snapshot_while_writes_go_on() {
    let c = Cluster {
        http: common::client(Duration::from_secs(60)),
    };
    let (mut nodes, token) = three_nodes(&c);
    for from in (0..10_000).step_by(2_000) {
        c.publish(&nodes.base[0], &token, from, 2_000);
    }
    c.wait_for("log compaction", Duration::from_secs(30), || {
        c.group(&nodes.base[0])["log_first_index"].as_u64() > Some(2)
    });

    // Writes go on at about ten entries a second: the log outgrows its bound (50 entries)
    // within the fetch, but not four times over.
    let writer = BackgroundWrites::start(
        &nodes.base[0],
        &token,
        10_000,
        10,
        Duration::from_millis(100),
    );

    // Everything sent to node 4 goes through a link of 100 KB/s: the snapshot takes seconds.
    let announced = free_addr();
    forward(&announced, &nodes.raft[3], Some(100_000));
    nodes.procs[3] = Some(start(
        nodes.dirs[3].path(),
        &nodes.http[3],
        &joiner_args(
            &nodes.raft[3],
            &nodes.base[0],
            &["--raft-advertise", &announced],
        ),
    ));
    c.wait_for("node 4 to become a voter", Duration::from_secs(120), || {
        ids(&c.group(&nodes.base[0])["voters"]) == [1, 2, 3, 4]
    });
    let published = writer.stop();
    c.wait_total(&nodes.base[3], &token, published, Duration::from_secs(60));
    let log = std::fs::read_to_string(nodes.dirs[3].path().join("node.log")).unwrap();
    let fetched: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("fetching a snapshot"))
        .collect();
    eprintln!("{}", fetched.join("\n"));
    assert_eq!(
        fetched.len(),
        1,
        "node 4 fetched {} snapshots",
        fetched.len()
    );
}
