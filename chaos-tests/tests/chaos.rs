//! Issue 4: short seeded chaos schedules on 3 and 5 real nodes behind fault-injecting proxies
//! (kills, a paused node, partitions, delays, a power loss, a node joining and one leaving)
//! while HTTP and RELP publishers write to every node; afterwards every node holds every
//! acknowledged event exactly once.
//!
//! `MENISCUS_CHAOS_SEED` replaces the fixed seeds; `MENISCUS_CHAOS_MINUTES` enables the long
//! schedule (5 nodes, every fault kind, the seeds in `MENISCUS_CHAOS_SEEDS`, default 1,2,3).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chaos_tests::{find_binary, run, ChaosConfig, Fault, FaultKind, Plan};

/// One cluster at a time: the machine has few cores, and starved nodes miss elections.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn seed_or(default: u64) -> u64 {
    std::env::var("MENISCUS_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The binary's defaults: followers copy the leader's indexes; event shards placed on three
/// nodes each.
fn chaos(nodes: usize, seed: u64, duration: Duration) {
    chaos_with(nodes, seed, duration, "copy", None);
}

/// `follower_indexes`: `copy` (followers copy the leader's indexes) or `index` (every
/// replica indexes every event); `shards`: how many event shards the cluster is bootstrapped
/// with and how many nodes hold each (0: all), or `None` for the binary's defaults.
fn chaos_with(
    nodes: usize,
    seed: u64,
    duration: Duration,
    follower_indexes: &str,
    shards: Option<(u64, u64)>,
) {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut config = ChaosConfig::new(nodes, seed, duration, find_binary().unwrap());
    config.follower_indexes = follower_indexes.into();
    config.shards = shards.map(|(count, _)| count);
    config.replication_factor = shards.map(|(_, factor)| factor);
    let started = Instant::now();
    let report = run(&config).unwrap();
    for window in &report.windows {
        eprintln!("  {:>6} ms  {}", window.unavailable_ms, window.what);
    }
    for line in report.timeline_text.lines() {
        if line.starts_with("check token rotation") || line.starts_with("publishing stopped") {
            eprintln!("  {line}");
        }
    }
    eprintln!("{}  ({:?})", report.summary(), started.elapsed());
    assert!(report.acked > 0);
    if let Err(e) = report.verdict() {
        panic!("{e}");
    }
}

/// The fixed seeds' plans include every fault kind.
fn assert_covers_every_kind(nodes: usize, seed: u64, duration: Duration) {
    let plan = Plan::generate(seed, nodes, duration, &FaultKind::ALL);
    for kind in FaultKind::ALL {
        assert!(
            plan.steps.iter().any(|s| s.fault.kind() == kind),
            "seed {seed} draws no {kind:?}: {plan}"
        );
    }
}

const SHORT: Duration = Duration::from_secs(45);

#[test]
fn three_nodes_lose_nothing_under_a_short_chaos_schedule() {
    // Seed 53: a bridge through the leader, a power loss, a paused leader, a killed leader,
    // 16% frame loss on the leader's links, an isolated leader.
    let seed = seed_or(53);
    assert_covers_every_kind(3, 53, SHORT);
    // The defaults: tenants' events in event shards beside the metadata group, each shard on
    // three nodes, so a node that joins takes replicas over.
    chaos(3, seed, SHORT);
}

#[test]
fn five_nodes_lose_nothing_under_a_short_chaos_schedule() {
    // Seed 99: delayed links, the leader and another node killed at once, a paused leader, a
    // minority holding the leader, a power loss, an isolated leader.
    let seed = seed_or(99);
    assert_covers_every_kind(5, 99, SHORT);
    // Every replica indexing, the other way a cluster may run (the 3-node run copies); three
    // shards on three of the five nodes each, moved as nodes join and leave.
    chaos_with(5, seed, SHORT, "index", Some((3, 3)));
}

/// `MENISCUS_CHAOS_MINUTES=30 cargo test --release -p chaos-tests --test chaos long -- --nocapture`
#[test]
fn long_chaos_schedule_when_asked() {
    let Some(minutes) = std::env::var("MENISCUS_CHAOS_MINUTES")
        .ok()
        .and_then(|m| m.parse::<u64>().ok())
    else {
        eprintln!("skipped: set MENISCUS_CHAOS_MINUTES to run the long schedule");
        return;
    };
    let seeds: Vec<u64> = std::env::var("MENISCUS_CHAOS_SEEDS")
        .unwrap_or_else(|_| "1,2,3".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let nodes = std::env::var("MENISCUS_CHAOS_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    for seed in seeds {
        chaos(nodes, seed, Duration::from_secs(minutes * 60));
    }
}

/// Regression test for a bug this harness found: after a power loss, a batch the publisher
/// retried with the same ids could end up stored twice on some replicas (the retry's
/// delete-by-id missed the first event of the first attempt when a tantivy merge raced it; see
/// `storage/src/tenant_index.rs`). Found by `MENISCUS_CHAOS_MINUTES=5 MENISCUS_CHAOS_SEEDS=3`
/// and reproduced by this power-loss-only schedule. Three minutes, so only when asked:
/// `cargo test -p chaos-tests --test chaos -- --ignored --nocapture retried_batch`.
#[test]
#[ignore = "3 minutes of power losses; run when asked"]
fn a_retried_batch_is_stored_once_after_power_losses() {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut config = ChaosConfig::new(
        5,
        seed_or(3),
        Duration::from_secs(180),
        find_binary().unwrap(),
    );
    config.faults = vec![FaultKind::Power];
    let report = run(&config).unwrap();
    eprintln!("{}", report.summary());
    if let Err(e) = report.verdict() {
        panic!("{e}");
    }
}

/// Nodes join and leave while others are killed: a joiner gets every acknowledged event (by
/// snapshot and log), a removed node (the leader, sometimes) leaves without losing anything,
/// and every member dials every other through its proxy, newcomers included.
#[test]
fn nodes_join_and_leave_during_kills_without_losing_anything() {
    let seed = seed_or(7);
    let duration = Duration::from_secs(35);
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let kinds = vec![FaultKind::Membership, FaultKind::Kill];
    let plan = Plan::generate(seed, 3, duration, &kinds);
    let joins = plan
        .steps
        .iter()
        .filter(|s| matches!(s.fault, Fault::AddNode))
        .count();
    let removals = plan
        .steps
        .iter()
        .filter(|s| matches!(s.fault, Fault::RemoveNode { .. }))
        .count();
    assert!(joins >= 1 && removals >= 1, "{plan}");
    let mut config = ChaosConfig::new(3, seed, duration, find_binary().unwrap());
    config.faults = kinds;
    let report = run(&config).unwrap();
    eprintln!("{}", report.summary());
    if let Err(e) = report.verdict() {
        panic!("{e}");
    }
    let joined = report
        .windows
        .iter()
        .filter(|w| w.what.contains("joined through"))
        .count();
    let left = report
        .windows
        .iter()
        .filter(|w| w.what.starts_with("removing node"))
        .count();
    assert_eq!(
        (joined, left),
        (joins, removals),
        "{}",
        report.timeline_text
    );
}
