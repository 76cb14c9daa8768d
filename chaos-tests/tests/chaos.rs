//! Issue 4: short seeded chaos schedules on 3 and 5 real nodes behind fault-injecting proxies
//! (kills, a paused node, partitions, delays, a power loss) while publishers write to every
//! node; afterwards every node holds every acknowledged event exactly once.
//!
//! `MENISCUS_CHAOS_SEED` replaces the fixed seeds; `MENISCUS_CHAOS_MINUTES` enables the long
//! schedule (5 nodes, every fault kind, the seeds in `MENISCUS_CHAOS_SEEDS`, default 1,2,3).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chaos_tests::{find_binary, run, ChaosConfig, FaultKind, Plan};

/// One cluster at a time: the machine has few cores, and starved nodes miss elections.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn seed_or(default: u64) -> u64 {
    std::env::var("MENISCUS_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn chaos(nodes: usize, seed: u64, duration: Duration) {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let config = ChaosConfig::new(nodes, seed, duration, find_binary().unwrap());
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

const SHORT: Duration = Duration::from_secs(40);

#[test]
fn three_nodes_lose_nothing_under_a_short_chaos_schedule() {
    // Seed 53: a bridge through the leader, a power loss, a paused leader, a killed leader,
    // 16% frame loss on the leader's links, an isolated leader.
    let seed = seed_or(53);
    assert_covers_every_kind(3, 53, SHORT);
    chaos(3, seed, SHORT);
}

#[test]
fn five_nodes_lose_nothing_under_a_short_chaos_schedule() {
    // Seed 99: delayed links, the leader and another node killed at once, a paused leader, a
    // minority holding the leader, a power loss, an isolated leader.
    let seed = seed_or(99);
    assert_covers_every_kind(5, 99, SHORT);
    chaos(5, seed, SHORT);
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

/// Known product bug, open: after a power loss, a batch the publisher retries with the same ids
/// can end up stored twice on some replicas: the retry's delete-by-id replaces every event of
/// the first attempt except its first one. Found by `MENISCUS_CHAOS_MINUTES=5
/// MENISCUS_CHAOS_SEEDS=3` (every fault kind) and reproduced by this power-loss-only schedule
/// (node 3 held `tenant-2-p2-1880` twice: received 03:28:52.21, retried 03:28:57.66). Timing
/// dependent: it may pass. Run with
/// `cargo test -p chaos-tests --test chaos -- --ignored --nocapture retried_batch`.
#[test]
#[ignore = "open bug: a retried batch's first event stored twice after a power loss"]
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
