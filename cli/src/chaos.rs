//! `meniscus chaos`: start a cluster of this very binary behind fault-injecting proxies,
//! publish to it while a seeded plan kills, pauses, partitions and delays its nodes and changes
//! its membership, then check
//! that every acknowledged event is stored exactly once on every node.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chaos_tests::{parse_duration, ChaosConfig, FaultKind};
use clap::Args;

/// Flags of `meniscus chaos`.
#[derive(Args, Debug)]
pub struct ChaosArgs {
    /// How many nodes.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Seed of the fault plan (random when absent; printed either way, to replay a run).
    #[arg(long)]
    seed: Option<u64>,
    /// How long faults go on: 90s, 5m, 1h.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Fault kinds to draw from: kill, pause, partition, delay, power, membership (or all).
    #[arg(long, default_value = "all")]
    faults: String,
    /// A fresh directory for node data, logs and the timeline (default: a temporary one,
    /// kept if the run finds a problem).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Tenants written to from the start (one more is created during the faults).
    #[arg(long, default_value_t = 2)]
    tenants: usize,
    /// HTTP publisher threads per tenant.
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    /// RELP publisher threads per tenant (each sends windows of messages with idempotency
    /// keys and resends what was not acknowledged, as rsyslog's omrelp does; 0 for none).
    #[arg(long, default_value_t = 1)]
    relp_publishers: usize,
    /// `--follower-indexes` of every node: `index` (every replica indexes) or `copy`
    /// (followers copy the leader's index files).
    #[arg(long, value_enum, default_value_t = crate::FollowerIndexes::Copy)]
    follower_indexes: crate::FollowerIndexes,
    /// Event shards the cluster is bootstrapped with (see `meniscus start --shards`; the same
    /// default).
    #[arg(long)]
    shards: Option<u64>,
    /// How many nodes hold each shard (0: every node; see `meniscus start`, the same default).
    #[arg(long)]
    replication_factor: Option<u64>,
}

/// Runs the schedule; prints the one-line summary; fails on any loss, duplicate or leak.
pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("locating the meniscus binary")?;
    let seed = args.seed.unwrap_or_else(random_seed);
    let mut config = ChaosConfig::new(args.nodes, seed, args.duration, binary);
    config.faults = FaultKind::parse_list(&args.faults).map_err(anyhow::Error::msg)?;
    config.dir = args.dir;
    config.tenants = args.tenants.max(1);
    config.publishers = args.publishers.max(1);
    config.relp_publishers = args.relp_publishers;
    config.shards = args.shards;
    config.replication_factor = args.replication_factor;
    config.follower_indexes = match args.follower_indexes {
        crate::FollowerIndexes::Index => "index",
        crate::FollowerIndexes::Copy => "copy",
    }
    .into();
    // The harness drives nodes with blocking HTTP calls and threads: keep it off the runtime.
    let report = tokio::task::spawn_blocking(move || chaos_tests::run(&config)).await??;
    eprintln!("longest window without an acknowledgement, per fault:");
    for window in &report.windows {
        eprintln!("  {:>6} ms  {}", window.unavailable_ms, window.what);
    }
    if report.timeline.exists() {
        eprintln!("timeline: {}", report.timeline.display());
    } else {
        eprintln!("timeline: removed with the temporary directory (keep it with --dir)");
    }
    println!("{}", report.summary());
    report.verdict()?;
    Ok(())
}

fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // Small seeds are easier to type when replaying.
    (nanos ^ u64::from(std::process::id())) % 1_000_000
}
