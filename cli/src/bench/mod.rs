//! `meniscus bench`: ingest throughput and acknowledgement-to-searchable latency of a fresh node.
//!
//! Everything runs in this one process: a node (storage, Raft, actors, HTTP API) on a temporary
//! data directory and an ephemeral port, publishers that drive it over real HTTP, and a baseline
//! — the same events indexed straight into tantivy, without HTTP or Raft — so the figures can be
//! reported as ratios against a baseline measured on the same machine, in the same run.
//!
//! Each run (one per batch size, plus by default the issue's target: batch 1,000 offered at
//! 100,000 events/s) gets a fresh node, and measures:
//! - throughput from the first request to the last acknowledgement (an HTTP 200 means the batch
//!   is committed and fsync'd), publishers closed loop (as fast as acknowledged) or open loop
//!   (`--rate`);
//! - acknowledgement-to-searchable latency: every `--probe-interval-ms` one published batch
//!   carries a unique marker term; after its acknowledgement a separate task searches for it
//!   until found;
//! - drain: from the last acknowledgement until `q=*` counts every acknowledged event;
//! - the process's CPU time per event, and how much CPU other processes took meanwhile (on a
//!   shared machine the rates move with it; CPU per event and the ratios move less).

mod node;
mod shaping;
pub mod tenants;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use meniscus_actors::IndexerSettings;
use meniscus_event::publish::{self, Limits};
use meniscus_event::Source;
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use node::{BenchNode, ClusterShape};
use shaping::Shaping;

/// Distinct event lines generated up front; request bodies are windows over them.
const POOL_LINES: usize = 65_536;
/// How often the latency prober re-asks for a marker not yet found.
const PROBE_POLL: Duration = Duration::from_millis(5);
/// How often the drain check counts the tenant's events.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// A probe or a drain that takes longer than this fails the benchmark.
const SEARCHABLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Events per `add_entry` call in the baseline, as a 1,000-event request would arrive.
const BASELINE_CHUNK: usize = 1_000;
/// The issue's target.
const TARGET_EVENTS_PER_S: f64 = 100_000.0;
const TARGET_BATCH: usize = 1_000;
const TARGET_P99: Duration = Duration::from_secs(2);

/// Arguments of `meniscus bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Events per request to measure, in order (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    batch_sizes: Vec<usize>,
    /// Size of one event's JSON in bytes (realistic log events: timestamp, host, app, severity,
    /// message, a couple of fields; the message is padded to reach the size).
    #[arg(long, default_value_t = 200)]
    event_bytes: usize,
    /// Parallel publishers, each with one request in flight (default per batch size: 64 for
    /// 1 event, 32 up to 10, 16 up to 100, 8 above; at least 32 with --rate).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Seconds of publishing per batch size.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Publish this many events per batch size instead of running for --duration-secs.
    #[arg(long)]
    events: Option<u64>,
    /// Offer this many events per second (open loop: request k is sent at k × batch ÷ rate
    /// seconds, or as soon as a publisher is free if they fall behind) instead of as many as the
    /// node acknowledges. Latency targets are met or missed at a given rate: publishers that
    /// outrun indexing only grow the backlog and with it the ack-to-searchable time.
    #[arg(long)]
    rate: Option<f64>,
    /// Without --rate: skip the extra run that checks the issue's latency target (batch 1,000
    /// offered at 100,000 events/s after the closed-loop runs).
    #[arg(long)]
    no_target_run: bool,
    /// Give every event a unique `id` (idempotency key). Costs the index a delete per event.
    #[arg(long)]
    with_ids: bool,
    /// The node's index commit interval in milliseconds (the near-real-time delay).
    #[arg(long, default_value_t = 500)]
    commit_interval_ms: u64,
    /// tantivy indexing threads per tenant (default: the node's default).
    #[arg(long)]
    index_threads: Option<usize>,
    /// Milliseconds between latency probes (one marked batch each).
    #[arg(long, default_value_t = 50)]
    probe_interval_ms: u64,
    /// Events the baseline indexes straight into tantivy (0 skips the baseline).
    #[arg(long, default_value_t = 200_000)]
    baseline_events: usize,
    /// Directory to create the temporary data directories in (default: the system temporary
    /// directory). Put it on the disk you want to measure: on tmpfs fsync costs nothing.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also run every batch size on a cluster of this many nodes in this process (made as
    /// `meniscus start` makes one: event shards with three replicas each; events published to
    /// the leader of the benchmark tenant's shard), and report its throughput as a ratio of the
    /// single node's.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// With --nodes: how the followers keep their indexes (see `meniscus start --help`).
    #[arg(long, value_enum, default_value_t = crate::FollowerIndexes::Copy)]
    follower_indexes: crate::FollowerIndexes,
    /// With --nodes: event shards the cluster is made with (see `meniscus start --help`; 0:
    /// events travel in the metadata group, replicated to every node); the benchmark's tenant
    /// is placed in the first.
    #[arg(long, default_value_t = meniscus_actors::placement::DEFAULT_SHARDS)]
    shards: u64,
    /// With --nodes: also run the cluster with plain-text, unauthenticated peer links (as
    /// `--insecure` does), and report the TLS cluster's throughput as a ratio of it. The
    /// cluster's peer links are mutually authenticated TLS otherwise, as in production.
    #[arg(long)]
    compare_plain_links: bool,
    /// Also run every setup with the benchmark's five-stage VRL pipeline (parse_nginx_log,
    /// type coercion, timestamp parse, enrichment, redact) on the bench tenant, and with the
    /// same events published pre-shaped (carrying the fields the pipeline would extract; no
    /// pipeline on the node); report throughput and CPU per event as ratios of the run without.
    /// Events then carry nginx access lines as their message (in every run), and are not padded
    /// to --event-bytes.
    #[arg(long)]
    pipeline: bool,
    /// Print the results as JSON on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.batch_sizes.is_empty() || args.batch_sizes.contains(&0) {
        bail!("--batch-sizes needs positive sizes, e.g. 1,100,1000");
    }
    if args.event_bytes < 120 {
        bail!("--event-bytes must be at least 120 (the fixed fields of a realistic event)");
    }
    if args.duration_secs == 0 && args.events.is_none() {
        bail!("--duration-secs must be positive (or give --events)");
    }
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let machine = Machine::detect(&parent);
    let defaults = IndexerSettings::default();
    let settings = IndexerSettings {
        commit_interval: Duration::from_millis(args.commit_interval_ms.max(10)),
        threads: args.index_threads.unwrap_or(defaults.threads).max(1),
        ..defaults
    };
    let id_len = if args.with_ids {
        // `"id":"<8 hex digits of request><5 of position>",` — part of the event's size.
        r#""id":"0000000000000","#.len()
    } else {
        0
    };
    let pool = Arc::new(generate_pool(
        args.event_bytes - id_len,
        POOL_LINES,
        args.pipeline,
    ));
    let preshaped = match args.pipeline {
        true => Arc::new(shaping::preshape(&pool)?),
        false => Arc::default(),
    };
    let avg_event_bytes =
        pool.iter().map(String::len).sum::<usize>() as f64 / pool.len() as f64 + id_len as f64;

    let progress = progress_bar();
    let baseline = if args.baseline_events > 0 {
        progress.set_message(format!(
            "baseline: indexing {} events straight into tantivy",
            args.baseline_events
        ));
        let dir = tempfile::Builder::new()
            .prefix("meniscus-bench-baseline-")
            .tempdir_in(&parent)?;
        let pool = pool.clone();
        let (events, with_ids, settings) = (args.baseline_events, args.with_ids, settings.clone());
        let path = dir.path().to_owned();
        let result = tokio::task::spawn_blocking(move || {
            baseline(&path, &pool, events, with_ids, &settings)
        })
        .await
        .context("baseline task")??;
        drop(dir);
        Some(result)
    } else {
        None
    };

    let mut plan: Vec<(usize, Option<f64>)> =
        args.batch_sizes.iter().map(|&b| (b, args.rate)).collect();
    if args.rate.is_none() && !args.no_target_run {
        plan.push((TARGET_BATCH, Some(TARGET_EVENTS_PER_S)));
    }
    let mut runs = Vec::new();
    // (nodes, plain-text peer links, shaping)
    type Setup = (usize, bool, Shaping);
    let mut setups: Vec<Setup> = vec![(1, false, Shaping::None)];
    if args.nodes > 1 {
        setups.push((args.nodes, false, Shaping::None));
        if args.compare_plain_links {
            setups.push((args.nodes, true, Shaping::None));
        }
    }
    if args.pipeline {
        let shaped: Vec<_> = [Shaping::Preshaped, Shaping::Pipeline]
            .into_iter()
            .flat_map(|shaping| setups.iter().map(move |&(n, pl, _)| (n, pl, shaping)))
            .collect();
        setups.extend(shaped);
    }
    let plan: Vec<(usize, Option<f64>, Setup)> = plan
        .into_iter()
        .flat_map(|(batch, rate)| setups.iter().map(move |setup| (batch, rate, *setup)))
        .collect();
    for &(batch, rate, (nodes, plain_links, shaping)) in &plan {
        // A fresh node per run, so no run inherits another's log, indexes or merges.
        progress.set_message("waiting for this process to go idle");
        settle().await;
        let data = tempfile::Builder::new()
            .prefix("meniscus-bench-")
            .tempdir_in(&parent)?;
        let copy = args.follower_indexes == crate::FollowerIndexes::Copy;
        let cluster = ClusterShape {
            nodes,
            copy_follower_indexes: copy,
            shards: args.shards,
            plain_links,
        };
        let node = BenchNode::start(data.path(), &settings, &cluster).await?;
        let outcome = async {
            let token = node
                .node
                .create_tenant("bench")
                .await?
                .context("the bench tenant exists already in a fresh data directory")?;
            if shaping == Shaping::Pipeline {
                node.node
                    .put_pipeline("bench", "five-stages", &shaping::five_stages())
                    .await?;
            }
            run_batch_size(
                &args,
                &node.base,
                &token,
                batch,
                rate,
                match shaping {
                    Shaping::Preshaped => preshaped.clone(),
                    Shaping::None | Shaping::Pipeline => pool.clone(),
                },
                &progress,
            )
            .await
            .map(|run| BatchRun {
                nodes,
                plain_links,
                shaping,
                ..run
            })
        }
        .await;
        progress.set_message("stopping the node");
        node.stop().await?;
        // tantivy may still be merging segments: let it finish before the files go.
        settle().await;
        drop(data);
        runs.push(outcome?);
    }
    progress.finish_and_clear();

    let report = Report {
        machine,
        avg_event_bytes,
        index_threads: settings.threads,
        args: &args,
        baseline,
        runs,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The workload: realistic log events of a fixed size.

/// splitmix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const APPS: &[&str] = &[
    "nginx", "checkout", "auth", "billing", "search", "postgres", "redis", "kafka",
];
const ROLES: &[&str] = &["web", "api", "db", "cache", "worker"];
const REGIONS: &[&str] = &["eu-west-1", "us-east-1", "ap-south-1"];
const FILLER: &[&str] = &[
    "request",
    "completed",
    "upstream",
    "retry",
    "timeout",
    "client",
    "session",
    "handler",
    "queue",
    "flushed",
    "pool",
    "latency",
    "backend",
    "config",
    "reload",
    "tls",
];

fn severity(rng: &mut Rng) -> &'static str {
    match rng.below(100) {
        0..=69 => "info",
        70..=77 => "notice",
        78..=87 => "warning",
        88..=95 => "err",
        _ => "debug",
    }
}

fn message(rng: &mut Rng) -> String {
    let (a, b, c) = (rng.below(256), rng.below(256), rng.below(256));
    match rng.below(8) {
        0 => format!(
            "GET /api/v1/orders/{} {} {} bytes in {} ms",
            rng.below(1_000_000),
            ["200", "200", "200", "404", "500"][rng.below(5) as usize],
            rng.below(100_000),
            rng.below(2_000)
        ),
        1 => format!("user {} logged in from 10.{a}.{b}.{c}", rng.below(100_000)),
        2 => format!(
            "connection reset by peer 10.{a}.{b}.{c}:{}",
            1024 + rng.below(60_000)
        ),
        3 => format!("cache miss for key session:{:08x}", rng.next() as u32),
        4 => format!(
            "slow query took {} ms: SELECT * FROM orders WHERE customer_id = {}",
            rng.below(10_000),
            rng.below(1_000_000)
        ),
        5 => format!(
            "payment {:012x} declined: insufficient funds",
            rng.next() >> 16
        ),
        6 => format!(
            "worker {} finished job {} in {} ms",
            rng.below(64),
            rng.below(10_000_000),
            rng.below(60_000)
        ),
        _ => format!("disk usage on /var at {}%", rng.below(100)),
    }
}

/// One event's JSON (no newline), `target` bytes long when the fixed parts fit.
fn event_line(rng: &mut Rng, target: usize, marker: Option<&str>, nginx: bool) -> String {
    // Timestamps within the last hour, in microseconds, like a shipper's.
    let now = OffsetDateTime::now_utc();
    let ts = now - Duration::from_micros(rng.below(3_600_000_000));
    let ts = ts
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "2025-01-01T00:00:00Z".into());
    let mut msg = match nginx {
        true => meniscus_pipeline::examples::bench_access_line(rng.next() % 1_000_000)
            .replace('"', "\\\""),
        false => message(rng),
    };
    if let Some(marker) = marker {
        msg = format!("{marker} {msg}");
    }
    let host = format!("{}-{:02}", rng.pick(ROLES), rng.below(20));
    let app = rng.pick(APPS);
    let sev = severity(rng);
    let region = rng.pick(REGIONS);
    let latency = rng.below(5_000);
    let build = |msg: &str| {
        format!(
            r#"{{"timestamp":"{ts}","host":"{host}","app":"{app}","severity":"{sev}","message":"{msg}","fields":{{"region":"{region}","latency_ms":{latency}}}}}"#
        )
    };
    let line = build(&msg);
    if nginx {
        return line;
    }
    if line.len() > target {
        // Too long: shorten the message (ASCII), keeping a probe's marker at its start.
        let shortest = marker.map_or(24, |m| m.len() + 24);
        let keep = msg.len().saturating_sub(line.len() - target).max(shortest);
        msg.truncate(keep);
        return build(msg.trim_end());
    }
    if line.len() + 1 >= target {
        return line;
    }
    // Pad the message with a request id and words up to the exact size.
    let mut pad = format!(" req={:016x}", rng.next());
    while pad.len() < target - line.len() {
        pad.push(' ');
        pad.push_str(rng.pick(FILLER));
    }
    pad.truncate(target - line.len());
    if pad.ends_with(' ') {
        pad.pop();
        pad.push('x');
    }
    msg.push_str(&pad);
    build(&msg)
}

fn generate_pool(target: usize, n: usize, nginx: bool) -> Vec<String> {
    let mut rng = Rng(0x6d65_6e69_7363_7573);
    (0..n)
        .map(|_| event_line(&mut rng, target, None, nginx))
        .collect()
}

/// Request bodies (NDJSON) for one batch size.
struct Workload {
    pool: Arc<Vec<String>>,
    batch: usize,
    with_ids: bool,
    /// Prebuilt bodies when events carry no ids (the same bytes may be sent again).
    bodies: Vec<Bytes>,
    target: usize,
    /// Messages are nginx access lines (see `--pipeline`).
    nginx: bool,
}

impl Workload {
    fn new(
        pool: Arc<Vec<String>>,
        batch: usize,
        with_ids: bool,
        target: usize,
        nginx: bool,
    ) -> Self {
        let mut workload = Workload {
            pool,
            batch,
            with_ids,
            bodies: Vec::new(),
            target,
            nginx,
        };
        if !with_ids {
            let count = (POOL_LINES / batch).clamp(8, 4096) as u64;
            workload.bodies = (0..count).map(|i| workload.build(i, None)).collect();
        }
        workload
    }

    fn body(&self, request: u64, marker: Option<&str>) -> Bytes {
        if marker.is_none() && !self.with_ids {
            return self.bodies[(request % self.bodies.len() as u64) as usize].clone();
        }
        self.build(request, marker)
    }

    fn build(&self, request: u64, marker: Option<&str>) -> Bytes {
        let pool = &self.pool;
        let start = (request as usize).wrapping_mul(self.batch) % pool.len();
        let mut body = String::with_capacity(self.batch * (self.target + 40));
        for k in 0..self.batch {
            let probe_line;
            let line = match marker {
                Some(marker) if k == 0 => {
                    probe_line =
                        event_line(&mut Rng(request), self.target, Some(marker), self.nginx);
                    &probe_line
                }
                _ => &pool[(start + k) % pool.len()],
            };
            if self.with_ids {
                // Unique within the tenant (one per run) for batches up to 2^20 events.
                let _ = write!(body, r#"{{"id":"{request:08x}{k:05x}","#);
                body.push_str(&line[1..]);
            } else {
                body.push_str(line);
            }
            body.push('\n');
        }
        Bytes::from(body)
    }
}

// ---------------------------------------------------------------------------------------------
// The baseline: the same events straight into tantivy.

#[derive(Debug, Default)]
struct Baseline {
    events: usize,
    bytes: usize,
    /// Wall time of parse + into_event + add + commit.
    total: Duration,
    /// CPU seconds of the process for `total` (the indexing threads included).
    cpu_secs: Option<f64>,
    parse: Duration,
    into_event: Duration,
    add: Duration,
    commit: Duration,
    /// Measured on the side (not in `total`): what the Raft path adds per event.
    encode: Duration,
    decode: Duration,
    encoded_bytes: usize,
}

fn baseline(
    dir: &Path,
    pool: &Arc<Vec<String>>,
    events: usize,
    with_ids: bool,
    settings: &IndexerSettings,
) -> anyhow::Result<Baseline> {
    let target = pool.first().map_or(200, String::len);
    let workload = Workload::new(pool.clone(), BASELINE_CHUNK, with_ids, target, false);
    let index = meniscus_storage::TenantIndex::open_or_create(dir, "baseline")?;
    let mut writer = index.writer(settings.memory_budget_bytes, settings.threads)?;
    let source = Source {
        transport: "http".into(),
        peer: Some("127.0.0.1:40000".into()),
    };
    let mut b = Baseline::default();
    let chunks = events.div_ceil(BASELINE_CHUNK);
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    for chunk in 0..chunks {
        let body = workload.body(chunk as u64, None);
        b.bytes += body.len();

        let t = Instant::now();
        let drafts = publish::parse_ndjson(&body, Limits::default())
            .map_err(|e| anyhow::anyhow!("baseline body: {e}"))?;
        b.parse += t.elapsed();

        let t = Instant::now();
        let received_at = OffsetDateTime::now_utc();
        let batch: Vec<_> = drafts
            .into_iter()
            .map(|d| {
                d.into_event("baseline", received_at, source.clone(), || {
                    uuid::Uuid::now_v7().to_string()
                })
            })
            .collect();
        b.into_event += t.elapsed();
        b.events += batch.len();

        let t = Instant::now();
        writer.add_entry(chunk as u64 + 1, &batch)?;
        b.add += t.elapsed();

        // On the side: the Raft path's encode and decode of the same batch.
        let t = Instant::now();
        let encoded = meniscus_event::wire::encode_batch(&batch);
        b.encode += t.elapsed();
        b.encoded_bytes += encoded.len();
        let t = Instant::now();
        let decoded = meniscus_event::wire::decode_batch(&encoded)?;
        b.decode += t.elapsed();
        drop(decoded);
    }
    let t = Instant::now();
    writer.commit()?;
    b.commit = t.elapsed();
    b.total = started.elapsed() - b.encode - b.decode;
    // Encode and decode ran on this thread: their wall time is their CPU time.
    b.cpu_secs = cpu_before
        .zip(cpu_seconds())
        .map(|(a, z)| z - a - (b.encode + b.decode).as_secs_f64());
    Ok(b)
}

// ---------------------------------------------------------------------------------------------
// One batch size over HTTP.

#[derive(Debug)]
struct BatchRun {
    batch: usize,
    /// Nodes in the cluster (1: a single node; more: every event replicated to all).
    nodes: usize,
    /// Whether the cluster's peer links were plain text (else mutually authenticated TLS).
    plain_links: bool,
    /// How the bench tenant's events got their fields.
    shaping: Shaping,
    /// Offered events/s (open loop), or `None` when publishers go as fast as acknowledged.
    offered: Option<f64>,
    concurrency: usize,
    requests: u64,
    events: u64,
    bytes: u64,
    retries: u64,
    elapsed: Duration,
    request_latency: Vec<Duration>,
    searchable_latency: Vec<Duration>,
    drain: Duration,
    cpu_secs: Option<f64>,
    /// CPU seconds of the whole process from the first request until all was searchable.
    cpu_to_searchable: Option<f64>,
    /// CPU cores other processes kept busy while publishing.
    others_cores: Option<f64>,
}

struct Shared {
    workload: Workload,
    client: reqwest::Client,
    url: String,
    token: String,
    started: Instant,
    deadline: Option<Instant>,
    max_requests: Option<u64>,
    /// Seconds between request starts when pacing (`--rate`).
    request_spacing: Option<f64>,
    next_request: AtomicU64,
    /// Nanoseconds since `started` at which the next probe is due.
    next_probe_ns: AtomicU64,
    probe_interval: Duration,
    acked_events: AtomicU64,
    failed: AtomicBool,
}

struct Probe {
    marker: String,
    commit_index: u64,
    acked_at: Instant,
}

#[derive(Default)]
struct PublisherStats {
    requests: u64,
    events: u64,
    bytes: u64,
    retries: u64,
    last_ack: Option<Instant>,
    latency: Vec<Duration>,
}

#[derive(Deserialize)]
struct Ack {
    commit_index: u64,
}

#[derive(Deserialize)]
struct Found {
    total: u64,
}

fn default_concurrency(batch: usize) -> usize {
    match batch {
        1 => 64,
        2..=10 => 32,
        11..=100 => 16,
        _ => 8,
    }
}

async fn run_batch_size(
    args: &BenchArgs,
    base: &str,
    token: &str,
    batch: usize,
    rate: Option<f64>,
    pool: Arc<Vec<String>>,
    progress: &ProgressBar,
) -> anyhow::Result<BatchRun> {
    let concurrency = args
        .concurrency
        .unwrap_or_else(|| match rate {
            // Open loop: enough publishers that slow acknowledgements do not lower the rate.
            Some(_) => default_concurrency(batch).max(32),
            None => default_concurrency(batch),
        })
        .max(1);
    let target = pool.first().map_or(args.event_bytes, String::len);
    progress.set_message(format!("batch {batch}: preparing request bodies"));
    let workload = Workload::new(pool, batch, args.with_ids, target, args.pipeline);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency + 4)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()?;
    let cpu_before = cpu_seconds();
    let machine_before = machine_busy_seconds();
    let started = Instant::now();
    let shared = Arc::new(Shared {
        workload,
        client: client.clone(),
        url: format!("{base}/v1/events"),
        token: token.to_owned(),
        started,
        deadline: args
            .events
            .is_none()
            .then(|| started + Duration::from_secs(args.duration_secs)),
        max_requests: args.events.map(|n| n.div_ceil(batch as u64)),
        request_spacing: rate.filter(|r| *r > 0.0).map(|rate| batch as f64 / rate),
        next_request: AtomicU64::new(0),
        next_probe_ns: AtomicU64::new(0),
        probe_interval: Duration::from_millis(args.probe_interval_ms.max(1)),
        acked_events: AtomicU64::new(0),
        failed: AtomicBool::new(false),
    });

    let (probe_tx, probe_rx) = mpsc::unbounded_channel();
    let search_url = format!("{base}/v1/search");
    let prober = tokio::spawn(prober(
        client.clone(),
        search_url.clone(),
        token.to_owned(),
        probe_rx,
    ));
    let ticker = {
        let shared = shared.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let acked = shared.acked_events.load(Ordering::Relaxed);
                let secs = shared.started.elapsed().as_secs_f64();
                progress.set_message(format!(
                    "batch {batch} x{concurrency}: {acked} events acknowledged in {secs:.1} s ({:.0}/s)",
                    acked as f64 / secs
                ));
            }
        })
    };
    let mut publishers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        publishers.spawn(publisher(shared.clone(), probe_tx.clone()));
    }
    drop(probe_tx);
    let mut stats = Vec::with_capacity(concurrency);
    let mut first_error = None;
    while let Some(joined) = publishers.join_next().await {
        match joined.context("publisher task") {
            Ok(Ok(s)) => stats.push(s),
            Ok(Err(e)) | Err(e) => {
                shared.failed.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        ticker.abort();
        prober.abort();
        return Err(e);
    }
    let last_ack = stats
        .iter()
        .filter_map(|s| s.last_ack)
        .max()
        .unwrap_or(started);
    let elapsed = last_ack - started;
    let cpu_secs = cpu_before.zip(cpu_seconds()).map(|(a, b)| b - a);
    let others_cores = machine_before
        .zip(machine_busy_seconds())
        .zip(cpu_secs)
        .map(|((a, b), own)| ((b - a - own) / elapsed.as_secs_f64()).max(0.0));
    let events: u64 = stats.iter().map(|s| s.events).sum();

    progress.set_message(format!(
        "batch {batch}: waiting until all {events} events are searchable"
    ));
    ticker.abort();
    let drain = wait_all_searchable(&client, &search_url, token, events, last_ack).await?;
    let searchable_latency = prober.await.context("prober task")??;
    let cpu_to_searchable = cpu_before.zip(cpu_seconds()).map(|(a, b)| b - a);

    let mut request_latency = Vec::new();
    for s in &stats {
        request_latency.extend_from_slice(&s.latency);
    }
    Ok(BatchRun {
        batch,
        nodes: 1,
        plain_links: false,
        shaping: Shaping::None,
        offered: rate,
        concurrency,
        requests: stats.iter().map(|s| s.requests).sum(),
        events,
        bytes: stats.iter().map(|s| s.bytes).sum(),
        retries: stats.iter().map(|s| s.retries).sum(),
        elapsed,
        request_latency,
        searchable_latency,
        drain,
        cpu_secs,
        cpu_to_searchable,
        others_cores,
    })
}

async fn publisher(
    shared: Arc<Shared>,
    probes: mpsc::UnboundedSender<Probe>,
) -> anyhow::Result<PublisherStats> {
    let mut stats = PublisherStats::default();
    let batch = shared.workload.batch as u64;
    loop {
        if shared.failed.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        if shared.deadline.is_some_and(|d| now >= d) {
            break;
        }
        let request = shared.next_request.fetch_add(1, Ordering::Relaxed);
        if shared.max_requests.is_some_and(|max| request >= max) {
            break;
        }
        if let Some(spacing) = shared.request_spacing {
            let at = shared.started + Duration::from_secs_f64(spacing * request as f64);
            if shared.deadline.is_some_and(|d| at >= d) {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
        }
        let now = Instant::now();
        // Whoever first sees a probe due carries it.
        let now_ns = (now - shared.started).as_nanos() as u64;
        let due = shared.next_probe_ns.load(Ordering::Relaxed);
        let marker = (now_ns >= due
            && shared
                .next_probe_ns
                .compare_exchange(
                    due,
                    now_ns + shared.probe_interval.as_nanos() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok())
        .then(|| format!("probe{}", uuid::Uuid::now_v7().simple()));
        let body = shared.workload.body(request, marker.as_deref());
        let len = body.len() as u64;
        let sent = Instant::now();
        let response = loop {
            let response = shared
                .client
                .post(&shared.url)
                .bearer_auth(&shared.token)
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .body(body.clone())
                .send()
                .await
                .context("publishing")?;
            let status = response.status();
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            {
                // Back-pressure: the node asks us to slow down. Nothing was stored.
                stats.retries += 1;
                let _ = response.bytes().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            if !status.is_success() {
                let text = response.text().await.unwrap_or_default();
                bail!("publish answered {status}: {text}");
            }
            break response
                .bytes()
                .await
                .context("reading the acknowledgement")?;
        };
        let acked_at = Instant::now();
        stats.latency.push(acked_at - sent);
        stats.requests += 1;
        stats.events += batch;
        stats.bytes += len;
        stats.last_ack = Some(acked_at);
        shared.acked_events.fetch_add(batch, Ordering::Relaxed);
        if let Some(marker) = marker {
            let ack: Ack =
                serde_json::from_slice(&response).context("decoding the acknowledgement")?;
            let _ = probes.send(Probe {
                marker,
                commit_index: ack.commit_index,
                acked_at,
            });
        }
    }
    Ok(stats)
}

async fn count(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
) -> anyhow::Result<u64> {
    let response = client
        .get(url)
        .bearer_auth(token)
        .query(&[("q", query), ("limit", "1")])
        .send()
        .await
        .context("searching")?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("search {query:?} answered {status}: {text}");
    }
    let found: Found = response.json().await.context("decoding search results")?;
    Ok(found.total)
}

/// Searches for each marker until found, oldest Raft index first: what is searchable of a
/// tenant is a prefix of the log, so while the lowest pending entry is not searchable none
/// above it is, and one search per poll suffices. Returns ack-to-found times.
async fn prober(
    client: reqwest::Client,
    url: String,
    token: String,
    mut incoming: mpsc::UnboundedReceiver<Probe>,
) -> anyhow::Result<Vec<Duration>> {
    let mut pending: BTreeMap<(u64, String), Instant> = BTreeMap::new();
    let mut latencies = Vec::new();
    let mut open = true;
    loop {
        while open {
            match incoming.try_recv() {
                Ok(p) => {
                    pending.insert((p.commit_index, p.marker), p.acked_at);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        let Some(((_, marker), acked_at)) = pending.first_key_value() else {
            if !open {
                return Ok(latencies);
            }
            match incoming.recv().await {
                Some(p) => {
                    pending.insert((p.commit_index, p.marker), p.acked_at);
                }
                None => open = false,
            }
            continue;
        };
        let acked_at = *acked_at;
        let found = |marker: String| {
            let (client, url, token) = (&client, &url, &token);
            async move {
                Ok::<_, anyhow::Error>(
                    count(client, url, token, &format!("message:{marker}")).await? > 0,
                )
            }
        };
        if found(marker.clone()).await? {
            // Searchable events are a prefix of the log, and a search may cost time in
            // proportion to the events not indexed yet: find the newest pending probe that is
            // searchable in O(log n) searches, not one search each.
            let keys: Vec<(u64, String)> = pending.keys().cloned().collect();
            let (mut newest, mut above) = (0, keys.len());
            while above - newest > 1 {
                let mid = (newest + above) / 2;
                if found(keys[mid].1.clone()).await? {
                    newest = mid;
                } else {
                    above = mid;
                }
            }
            for key in &keys[..=newest] {
                if let Some(acked_at) = pending.remove(key) {
                    latencies.push(acked_at.elapsed());
                }
            }
            continue;
        }
        if acked_at.elapsed() > SEARCHABLE_TIMEOUT {
            bail!("probe {marker} not searchable {SEARCHABLE_TIMEOUT:?} after its acknowledgement");
        }
        tokio::time::sleep(PROBE_POLL).await;
    }
}

/// Waits until `q=*` counts `expected` events; returns the time since `since`.
async fn wait_all_searchable(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    expected: u64,
    since: Instant,
) -> anyhow::Result<Duration> {
    loop {
        let asked = Instant::now();
        let total = count(client, url, token, "*").await?;
        // `q=*` sorts every event, so a count costs time proportional to the index: keep the
        // polling itself from slowing the indexer down (at most a fifth of one core).
        let cost = asked.elapsed();
        if total >= expected {
            if total > expected {
                bail!("{total} events searchable but only {expected} were acknowledged");
            }
            return Ok(since.elapsed());
        }
        if since.elapsed() > SEARCHABLE_TIMEOUT {
            bail!("only {total} of {expected} acknowledged events searchable after {SEARCHABLE_TIMEOUT:?}");
        }
        tokio::time::sleep(DRAIN_POLL.max(cost * 4)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Machine facts and measurement helpers.

#[derive(Debug)]
struct Machine {
    nproc: usize,
    cpu: String,
    os: String,
    memory_mib: Option<u64>,
    dir: PathBuf,
    fs_type: String,
    /// One-minute load average when the benchmark started.
    load_at_start: Option<f64>,
}

impl Machine {
    fn detect(dir: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".into(), |(_, v)| v.trim().to_owned());
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map(|kib| kib / 1024);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!(" {}", s.trim()))
            .unwrap_or_default();
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            os: format!("{}{kernel}", std::env::consts::OS),
            memory_mib,
            fs_type: fs_type(&dir),
            dir,
            load_at_start: load_average(),
        }
    }
}

/// The type of the file system holding `dir` (from /proc/mounts), or "unknown".
fn fs_type(dir: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (_, point, kind) = (parts.next()?, parts.next()?, parts.next()?);
            dir.starts_with(point)
                .then(|| (point.len(), kind.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, kind)| kind)
}

/// The one-minute load average (Linux): other work on the machine skews every figure.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Waits (at most a minute) until this process uses less than a tenth of a core.
async fn settle() {
    let deadline = Instant::now() + Duration::from_secs(60);
    let window = Duration::from_millis(500);
    while Instant::now() < deadline {
        let Some(before) = cpu_seconds() else { return };
        tokio::time::sleep(window).await;
        let Some(after) = cpu_seconds() else { return };
        if after - before < 0.1 * window.as_secs_f64() {
            return;
        }
    }
}

/// CPU seconds all processes of the machine have used (Linux /proc/stat): user, nice, system,
/// irq, softirq and steal.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<f64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    Some(busy / 100.0)
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat (Linux).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here (0-based).
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux platform Rust supports.
    Some(ticks / 100.0)
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[derive(Debug, Clone, Copy)]
struct Summary {
    samples: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn summarize(values: &[Duration]) -> Option<Summary> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    Some(Summary {
        samples: sorted.len(),
        p50: percentile(&sorted, 0.50)?,
        p99: percentile(&sorted, 0.99)?,
        max: *sorted.last()?,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn summary_json(s: Option<Summary>) -> Value {
    match s {
        None => Value::Null,
        Some(s) => json!({
            "samples": s.samples,
            "p50": round(ms(s.p50), 2),
            "p99": round(ms(s.p99), 2),
            "max": round(ms(s.max), 2),
        }),
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// 1234567.8 -> "1,234,568".
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The report.

struct Target {
    offered: f64,
    events_per_s: f64,
    p99: Option<Duration>,
    closed_loop_max: Option<f64>,
    met: bool,
}

struct Report<'a> {
    machine: Machine,
    avg_event_bytes: f64,
    index_threads: usize,
    args: &'a BenchArgs,
    baseline: Option<Baseline>,
    runs: Vec<BatchRun>,
}

impl Baseline {
    fn events_per_s(&self) -> f64 {
        self.events as f64 / self.total.as_secs_f64()
    }

    fn cpu_us_per_event(&self) -> Option<f64> {
        self.cpu_secs
            .map(|c| round(c * 1e6 / self.events.max(1) as f64, 2))
    }

    fn us_per_event(&self, d: Duration) -> f64 {
        d.as_secs_f64() * 1e6 / self.events.max(1) as f64
    }
}

impl BatchRun {
    /// The node count, marked `pl` for plain-text peer links.
    fn nodes_label(&self) -> String {
        let mut label = self.nodes.to_string();
        if self.plain_links {
            label.push_str(" pl");
        }
        label.push_str(self.shaping.label());
        label
    }

    fn events_per_s(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU microseconds per event, whole process (publishers, node, probes), from the first
    /// request until every event was searchable: less sensitive to other load than rates.
    fn cpu_us_per_event(&self) -> Option<f64> {
        self.cpu_to_searchable
            .map(|c| round(c * 1e6 / self.events.max(1) as f64, 2))
    }

    /// Events per second from the first request until every acknowledged event is searchable:
    /// what the node sustains once its indexing backlog counts too.
    fn searchable_events_per_s(&self) -> f64 {
        self.events as f64 / (self.elapsed + self.drain).as_secs_f64().max(1e-9)
    }
}

impl Report<'_> {
    fn ratio(&self, run: &BatchRun) -> Option<f64> {
        self.baseline
            .as_ref()
            .map(|b| run.events_per_s() / b.events_per_s())
    }

    /// The issue's target, judged on the batch-1,000 run offered at least the target rate if
    /// there is one (a closed-loop run's latency only measures how far publishers outran the
    /// indexer), else on the closed-loop batch-1,000 run.
    fn cpu_ratio(&self, run: &BatchRun) -> Option<f64> {
        let base = self.baseline.as_ref()?.cpu_us_per_event()?;
        Some(run.cpu_us_per_event()? / base)
    }

    fn target(&self) -> Option<Target> {
        let batch = |r: &&BatchRun| r.batch == TARGET_BATCH;
        let closed_loop_max = self
            .runs
            .iter()
            .filter(batch)
            .filter(|r| r.offered.is_none())
            .map(BatchRun::events_per_s)
            .reduce(f64::max);
        // Judged where the target rate is offered: a closed loop offers more than indexing
        // sustains, and its probes then search a tail at the backlog bound.
        let (run, offered) = self.runs.iter().filter(batch).find_map(|r| {
            r.offered
                .filter(|o| *o >= TARGET_EVENTS_PER_S)
                .map(|o| (r, o))
        })?;
        let p99 = summarize(&run.searchable_latency).map(|s| s.p99);
        // Pacing ends within a request of the deadline: allow 1%.
        let met =
            run.events_per_s() >= TARGET_EVENTS_PER_S * 0.99 && p99.is_some_and(|p| p < TARGET_P99);
        Some(Target {
            offered,
            events_per_s: run.events_per_s(),
            p99,
            closed_loop_max,
            met,
        })
    }

    fn to_json(&self) -> Value {
        let m = &self.machine;
        let baseline = self.baseline.as_ref().map(|b| {
            json!({
                "what": "parse_ndjson + into_event + TenantWriter::add_entry (chunks of 1,000) + commit, same events, no HTTP or Raft",
                "events": b.events,
                "bytes": b.bytes,
                "secs": round(b.total.as_secs_f64(), 4),
                "events_per_s": round(b.events_per_s(), 0),
                "mb_per_s": round(b.bytes as f64 / 1e6 / b.total.as_secs_f64(), 2),
                "cpu_us_per_event": b.cpu_us_per_event(),
                "us_per_event": {
                    "parse_ndjson": round(b.us_per_event(b.parse), 3),
                    "into_event": round(b.us_per_event(b.into_event), 3),
                    "tantivy_add": round(b.us_per_event(b.add), 3),
                    "tantivy_commit": round(b.us_per_event(b.commit), 3),
                    "prost_encode_not_in_total": round(b.us_per_event(b.encode), 3),
                    "prost_decode_not_in_total": round(b.us_per_event(b.decode), 3),
                },
                "prost_bytes_per_event": round(b.encoded_bytes as f64 / b.events.max(1) as f64, 1),
            })
        });
        let runs: Vec<Value> = self
            .runs
            .iter()
            .map(|r| {
                json!({
                    "batch_size": r.batch,
                    "nodes": r.nodes,
                    "peer_links": if r.plain_links { "plain" } else { "tls" },
                    "shaping": r.shaping.name(),
                    "offered_events_per_s": r.offered,
                    "concurrency": r.concurrency,
                    "requests": r.requests,
                    "events": r.events,
                    "bytes": r.bytes,
                    "secs": round(r.elapsed.as_secs_f64(), 4),
                    "events_per_s": round(r.events_per_s(), 0),
                    "mb_per_s": round(r.mb_per_s(), 2),
                    "ratio_to_baseline": self.ratio(r).map(|v| round(v, 3)),
                    "retries_503": r.retries,
                    "request_latency_ms": summary_json(summarize(&r.request_latency)),
                    "ack_to_searchable_ms": summary_json(summarize(&r.searchable_latency)),
                    "drain_ms": round(ms(r.drain), 1),
                    "searchable_events_per_s": round(r.searchable_events_per_s(), 0),
                    "searchable_ratio_to_baseline": self.baseline.as_ref().map(|b| round(r.searchable_events_per_s() / b.events_per_s(), 3)),
                    "cpu_cores_busy": r.cpu_secs.map(|c| round(c / r.elapsed.as_secs_f64(), 2)),
                    "cpu_us_per_event_to_searchable": r.cpu_us_per_event(),
                    "cpu_ratio_to_baseline": self.cpu_ratio(r).map(|v| round(v, 3)),
                    "other_processes_cpu_cores": r.others_cores.map(|c| round(c, 2)),
                })
            })
            .collect();
        let target = self.target().map(|t| {
            json!({
                "batch_size": TARGET_BATCH,
                "judged_on_offered_events_per_s": t.offered,
                "events_per_s": round(t.events_per_s, 0),
                "events_per_s_target": TARGET_EVENTS_PER_S,
                "ack_to_searchable_p99_ms": t.p99.map(|p| round(ms(p), 1)),
                "ack_to_searchable_p99_target_ms": ms(TARGET_P99),
                "closed_loop_max_events_per_s": t.closed_loop_max.map(|v| round(v, 0)),
                "met": t.met,
            })
        });
        json!({
            "machine": {
                "nproc": m.nproc,
                "cpu": m.cpu,
                "os": m.os,
                "memory_mib": m.memory_mib,
                "data_dir_parent": m.dir.display().to_string(),
                "data_dir_fs": m.fs_type,
                "load_average_at_start": m.load_at_start,
                "meniscus_version": env!("CARGO_PKG_VERSION"),
                "debug_build": cfg!(debug_assertions),
            },
            "settings": {
                "event_bytes": self.args.event_bytes,
                "avg_event_bytes": round(self.avg_event_bytes, 1),
                "with_ids": self.args.with_ids,
                "duration_secs": self.args.events.is_none().then_some(self.args.duration_secs),
                "events_per_batch_size": self.args.events,
                "offered_events_per_s": self.args.rate,
                "commit_interval_ms": self.args.commit_interval_ms,
                "index_threads": self.index_threads,
                "probe_interval_ms": self.args.probe_interval_ms,
                "mb": "10^6 bytes of request body (NDJSON)",
            },
            "baseline": baseline,
            "runs": runs,
            "target": target,
        })
    }

    fn table(&self) -> String {
        let m = &self.machine;
        let a = self.args;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "meniscus bench {}{} — {} CPUs ({}), {} MiB, {}, load average {}; data on {} ({})",
            env!("CARGO_PKG_VERSION"),
            if cfg!(debug_assertions) {
                " (DEBUG BUILD: figures meaningless, use --release)"
            } else {
                ""
            },
            m.nproc,
            m.cpu,
            m.memory_mib.unwrap_or(0),
            m.os,
            m.load_at_start.map_or("-".into(), |l| format!("{l:.2}")),
            m.dir.display(),
            m.fs_type,
        );
        let _ = writeln!(
            out,
            "{}-byte NDJSON events (average {:.1} bytes){}, index commit every {} ms with {} indexing thread(s), probe every {} ms, {}; MB = 10^6 bytes of request body",
            a.event_bytes,
            self.avg_event_bytes,
            if a.with_ids { " with ids" } else { " without ids" },
            a.commit_interval_ms,
            self.index_threads,
            a.probe_interval_ms,
            match a.events {
                Some(n) => format!("{n} events per batch size"),
                None => format!("{} s per batch size", a.duration_secs),
            } + &match a.rate {
                Some(r) => format!(", offered load {} events/s (open loop)", thousands(r)),
                None => ", publishers as fast as acknowledged (closed loop)".into(),
            }
        );
        if let Some(b) = &self.baseline {
            let _ = writeln!(
                out,
                "\nbaseline (same process, same events straight into tantivy, no HTTP/Raft): {} events in {:.2} s = {} events/s, {:.1} MB/s",
                thousands(b.events as f64),
                b.total.as_secs_f64(),
                thousands(b.events_per_s()),
                b.bytes as f64 / 1e6 / b.total.as_secs_f64(),
            );
            let _ = writeln!(
                out,
                "  {} CPU µs/event; wall µs/event: parse_ndjson {:.2}, into_event {:.2}, tantivy add {:.2}, commit {:.2}; on the side (Raft path only): prost encode {:.2}, decode {:.2} ({:.0} B/event)",
                b.cpu_us_per_event().map_or("-".into(), |c| format!("{c:.1}")),
                b.us_per_event(b.parse),
                b.us_per_event(b.into_event),
                b.us_per_event(b.add),
                b.us_per_event(b.commit),
                b.us_per_event(b.encode),
                b.us_per_event(b.decode),
                b.encoded_bytes as f64 / b.events.max(1) as f64,
            );
        }
        let _ = writeln!(
            out,
            "\nthroughput\n{:>5} {:>6} {:>8} {:>5} {:>11} {:>6} {:>10} {:>6} {:>7} {:>9} {:>13} {:>7}",
            "nodes",
            "batch",
            "offered",
            "conc",
            "events",
            "secs",
            "acked/s",
            "MB/s",
            "x base",
            "drain ms",
            "searchable/s",
            "x base",
        );
        for r in &self.runs {
            let ratio = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
            let _ = writeln!(
                out,
                "{:>5} {:>6} {:>8} {:>5} {:>11} {:>6.2} {:>10} {:>6.1} {:>7} {:>9.0} {:>13} {:>7}",
                r.nodes_label(),
                r.batch,
                r.offered.map_or("max".into(), thousands),
                r.concurrency,
                thousands(r.events as f64),
                r.elapsed.as_secs_f64(),
                thousands(r.events_per_s()),
                r.mb_per_s(),
                ratio(self.ratio(r)),
                ms(r.drain),
                thousands(r.searchable_events_per_s()),
                ratio(
                    self.baseline
                        .as_ref()
                        .map(|b| r.searchable_events_per_s() / b.events_per_s())
                ),
            );
        }
        for r in self.runs.iter().filter(|r| r.shaping != Shaping::None) {
            let without = self.runs.iter().find(|t| {
                t.shaping == Shaping::None
                    && t.nodes == r.nodes
                    && t.plain_links == r.plain_links
                    && t.batch == r.batch
                    && t.offered == r.offered
            });
            if let Some(t) = without {
                let cpu = r.cpu_us_per_event().zip(t.cpu_us_per_event());
                let _ = writeln!(
                    out,
                    "{} / none, {} nodes, batch {}: acked/s {:.2}, searchable/s {:.2}, CPU per event {}",
                    match r.shaping {
                        Shaping::Pipeline => "five-stage pipeline",
                        _ => "pre-shaped (the pipeline's fields, no pipeline)",
                    },
                    r.nodes,
                    r.batch,
                    r.events_per_s() / t.events_per_s(),
                    r.searchable_events_per_s() / t.searchable_events_per_s(),
                    cpu.map_or("-".into(), |(with, without)| format!("{:.2}", with / without)),
                );
            }
        }
        for r in self
            .runs
            .iter()
            .filter(|r| r.plain_links && r.shaping == Shaping::None)
        {
            let tls = self.runs.iter().find(|t| {
                !t.plain_links
                    && t.shaping == Shaping::None
                    && t.nodes == r.nodes
                    && t.batch == r.batch
                    && t.offered == r.offered
            });
            if let Some(t) = tls {
                let _ = writeln!(
                    out,
                    "TLS / plain-text peer links, {} nodes, batch {}: acked/s {:.2}, searchable/s {:.2}",
                    r.nodes,
                    r.batch,
                    t.events_per_s() / r.events_per_s(),
                    t.searchable_events_per_s() / r.searchable_events_per_s(),
                );
            }
        }
        for r in self
            .runs
            .iter()
            .filter(|r| r.nodes > 1 && !r.plain_links && r.shaping == Shaping::None)
        {
            let single = self.runs.iter().find(|s| {
                s.nodes == 1
                    && s.shaping == Shaping::None
                    && s.batch == r.batch
                    && s.offered == r.offered
            });
            if let Some(s) = single {
                let _ = writeln!(
                    out,
                    "replicated to {} nodes / single node, batch {}: acked/s {:.2}, searchable/s {:.2}",
                    r.nodes,
                    r.batch,
                    r.events_per_s() / s.events_per_s(),
                    r.searchable_events_per_s() / s.searchable_events_per_s(),
                );
            }
        }
        let _ = writeln!(
            out,
            "\nlatency and cost\n{:>5} {:>6} {:>8} {:>16} {:>26} {:>5} {:>10} {:>7} {:>6} {:>5}",
            "nodes",
            "batch",
            "offered",
            "request p50/p99",
            "ack→searchable p50/p99/max",
            "cores",
            "cpu µs/ev",
            "x base",
            "other",
            "503s",
        );
        for r in &self.runs {
            let req = summarize(&r.request_latency).map_or("-".into(), |s| {
                format!("{:.1}/{:.1} ms", ms(s.p50), ms(s.p99))
            });
            let search = summarize(&r.searchable_latency).map_or("-".into(), |s| {
                format!(
                    "{:.0}/{:.0}/{:.0} ms (n={})",
                    ms(s.p50),
                    ms(s.p99),
                    ms(s.max),
                    s.samples
                )
            });
            let _ = writeln!(
                out,
                "{:>5} {:>6} {:>8} {:>16} {:>26} {:>5} {:>10} {:>7} {:>6} {:>5}",
                r.nodes_label(),
                r.batch,
                r.offered.map_or("max".into(), thousands),
                req,
                search,
                r.cpu_secs.map_or("-".into(), |c| format!(
                    "{:.2}",
                    c / r.elapsed.as_secs_f64()
                )),
                r.cpu_us_per_event()
                    .map_or("-".into(), |c| format!("{c:.1}")),
                self.cpu_ratio(r).map_or("-".into(), |v| format!("{v:.2}")),
                r.others_cores.map_or("-".into(), |l| format!("{l:.2}")),
                r.retries,
            );
        }
        let _ = writeln!(
            out,
            "\n\
             offered:      events/s offered open loop; max = closed loop (each publisher sends its next request when the last is acknowledged)\n\
             acked/s:      events ÷ (first request → last acknowledgement; a 200 means committed and fsync'd)\n\
             drain:        last acknowledgement → q=* counts every acknowledged event\n\
             searchable/s: events ÷ (secs + drain): what indexing sustains\n\
             x base:       ÷ the baseline's events/s; next to cpu µs/ev: ÷ the baseline's CPU µs/event\n\
             cores:        CPU cores this process (node and publishers) kept busy while publishing\n\
             cpu µs/ev:    this process's CPU time per event, first request → all searchable\n\
             other:        CPU cores other processes used meanwhile; 503s: back-pressure refusals (retried)"
        );
        let busiest = self
            .runs
            .iter()
            .filter_map(|r| r.others_cores)
            .fold(0.0, f64::max);
        if busiest > 0.25 {
            let _ = writeln!(
                out,
                "WARNING: other processes used up to {busiest:.2} of the {} CPUs while publishing; absolute figures are low, the ratios are more telling.",
                m.nproc
            );
        }
        if let Some(t) = self.target() {
            let _ = writeln!(
                out,
                "target (issue 2): ≥ {} events/s at batch {TARGET_BATCH} with ack→searchable p99 < {} ms: {} events/s offered {} (open loop), p99 {}{} → {}",
                thousands(TARGET_EVENTS_PER_S),
                ms(TARGET_P99),
                thousands(t.events_per_s),
                thousands(t.offered),
                t.p99.map_or("-".into(), |p| format!("{:.0} ms", ms(p))),
                t.closed_loop_max.map_or(String::new(), |m| format!("; closed-loop maximum {} events/s acknowledged", thousands(m))),
                if t.met { "MET" } else { "MISSED" },
            );
        } else if self.runs.iter().any(|r| r.batch == TARGET_BATCH) {
            let _ = writeln!(
                out,
                "target (issue 2): not judged: no run at batch {TARGET_BATCH} offered {} events/s (leave out --no-target-run)",
                thousands(TARGET_EVENTS_PER_S),
            );
        }
        out
    }
}
