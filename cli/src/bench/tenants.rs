//! `meniscus bench-tenants`: how one node carries many tenants.
//!
//! Starts `meniscus dev` as a child process (a node that falls over is then reported, not
//! shared), creates tenants through the admin API while each publishes a few events with its
//! own token, and reports the node's memory, threads, open files and disk as the count grows.
//! At the end every tenant (or a sample) searches: it must find its own events and none of
//! another tenant's.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What `meniscus bench-tenants` measures.
#[derive(Args, Debug)]
pub struct TenantsArgs {
    /// Tenants to create.
    #[arg(long, default_value_t = 1_000)]
    tenants: usize,
    /// Events each tenant publishes (in one request).
    #[arg(long, default_value_t = 3)]
    events_per_tenant: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Print the node's resources every this many tenants.
    #[arg(long, default_value_t = 500)]
    report_every: usize,
    /// Every tenant checks its events when there are at most this many; above, this many
    /// tenants spread over the range do.
    #[arg(long, default_value_t = 10_000)]
    full_check_up_to: usize,
    /// Directory to create the node's temporary data directory in (default: the system
    /// temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The node under test, as /proc shows it.
struct Resources {
    rss_mib: f64,
    threads: u64,
    open_files: u64,
    disk_mib: f64,
}

impl Resources {
    fn read(pid: u32, data: &Path) -> Option<Resources> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        };
        let open_files = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
        Some(Resources {
            rss_mib: field("VmRSS:")? as f64 / 1024.0,
            threads: field("Threads:")?,
            open_files,
            disk_mib: dir_bytes(data) as f64 / (1 << 20) as f64,
        })
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A `meniscus dev` child process; killed when dropped.
struct ChildNode {
    child: Child,
    base: String,
    admin: String,
    data: PathBuf,
    log: PathBuf,
}

impl ChildNode {
    fn start(dir: &Path) -> anyhow::Result<ChildNode> {
        let data = dir.join("data");
        let log = dir.join("node.log");
        let mut child = Command::new(std::env::current_exe()?)
            .args(["dev", "--http", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting meniscus dev")?;
        let stdout = child.stdout.take().context("the node's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let Some(line) = lines.next() else {
                bail!(
                    "the node exited before it was ready (its log: {})",
                    log.display()
                );
            };
            if let Some(addr) = line?.trim().strip_prefix("meniscus: http listening on ") {
                break addr.to_owned();
            }
        };
        // Keep reading stdout so the node never blocks writing to it.
        std::thread::spawn(move || lines.for_each(drop));
        let creds: Value = serde_json::from_slice(&std::fs::read(data.join("credentials.json"))?)?;
        let admin = creds["admin_token"]
            .as_str()
            .context("no admin token in credentials.json")?
            .to_owned();
        Ok(ChildNode {
            child,
            base: format!("http://{addr}"),
            admin,
            data,
            log,
        })
    }

    /// Why the node is gone, when it is.
    fn exited(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok()??;
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        Some(format!(
            "{status}; last lines of its log:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tenant_name(i: usize) -> String {
    format!("scale-{i:06}")
}

/// A word only tenant `i`'s events carry.
fn marker(i: usize) -> String {
    format!("marker{i:06}")
}

/// Creates tenant `i` and publishes its events; returns its token.
async fn create_and_publish(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    i: usize,
    events: usize,
) -> anyhow::Result<String> {
    let created = client
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(admin)
        .json(&json!({"name": tenant_name(i)}))
        .send()
        .await?;
    if created.status() != 201 {
        bail!("creating {}: {}", tenant_name(i), created.text().await?);
    }
    let token = created.json::<Value>().await?["token"]
        .as_str()
        .context("no token for a new tenant")?
        .to_owned();
    let batch: Vec<Value> = (0..events)
        .map(|e| json!({"message": format!("scale event {e} of {} {}", tenant_name(i), marker(i))}))
        .collect();
    let published = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(&token)
        .json(&batch)
        .send()
        .await?;
    if published.status() != 200 {
        bail!(
            "publishing as {}: {}",
            tenant_name(i),
            published.text().await?
        );
    }
    Ok(token)
}

/// Tenant `i` finds its own events, and nothing by another tenant's marker.
async fn check(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    i: usize,
    events: usize,
    other: usize,
) -> anyhow::Result<()> {
    let total = |q: String| async move {
        let found: Value = client
            .get(format!("{base}/v1/search"))
            .bearer_auth(token)
            .query(&[("q", q.as_str()), ("limit", "100")])
            .send()
            .await?
            .json()
            .await?;
        anyhow::Ok((found["total"].as_u64().unwrap_or(u64::MAX), found))
    };
    let (own, found) = total(marker(i)).await?;
    if own != events as u64 {
        bail!(
            "{} found {own} of its {events} events: {found}",
            tenant_name(i)
        );
    }
    let (all, found) = total("*".into()).await?;
    if all != events as u64 {
        bail!(
            "{} sees {all} events in all, not {events}: {found}",
            tenant_name(i)
        );
    }
    let (theirs, _) = total(marker(other)).await?;
    if theirs != 0 {
        bail!(
            "{} found {theirs} of {}'s events",
            tenant_name(i),
            tenant_name(other)
        );
    }
    Ok(())
}

pub async fn run(args: TenantsArgs) -> anyhow::Result<()> {
    if args.tenants == 0 || args.events_per_tenant == 0 || args.concurrency == 0 {
        bail!("--tenants, --events-per-tenant and --concurrency must be positive");
    }
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("meniscus-bench-tenants-")
        .tempdir_in(&parent)?;
    let mut node = ChildNode::start(dir.path())?;
    let pid = node.child.id();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let start = Resources::read(pid, &node.data).context("reading the node's /proc")?;
    println!(
        "meniscus bench-tenants: {} tenants, {} events each, {} requests in flight",
        args.tenants, args.events_per_tenant, args.concurrency
    );
    println!("tenants  tenants/s  RSS MiB  threads  open files  disk MiB");
    let print = |n: usize, rate: f64, r: &Resources| {
        println!(
            "{n:>7}  {rate:>9.0}  {:>7.0}  {:>7}  {:>10}  {:>8.1}",
            r.rss_mib, r.threads, r.open_files, r.disk_mib
        );
    };
    print(0, 0.0, &start);

    let started = Instant::now();
    let mut tokens: Vec<Option<String>> = vec![None; args.tenants];
    let limit = Arc::new(Semaphore::new(args.concurrency));
    let mut failure = None;
    let mut done = 0;
    while done < args.tenants && failure.is_none() {
        let chunk = done..(done + args.report_every).min(args.tenants);
        let chunk_started = Instant::now();
        let mut tasks = JoinSet::new();
        for i in chunk.clone() {
            let permit = limit.clone().acquire_owned().await?;
            let (client, base, admin) = (client.clone(), node.base.clone(), node.admin.clone());
            let events = args.events_per_tenant;
            tasks.spawn(async move {
                let token = create_and_publish(&client, &base, &admin, i, events).await;
                drop(permit);
                (i, token)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined? {
                (i, Ok(token)) => tokens[i] = Some(token),
                (_, Err(e)) if failure.is_none() => failure = Some(e.to_string()),
                _ => {}
            }
        }
        if let Some(why) = node.exited() {
            failure = Some(format!("the node exited: {why}"));
            break;
        }
        done = chunk.end;
        let rate = chunk.len() as f64 / chunk_started.elapsed().as_secs_f64();
        if let Some(r) = Resources::read(pid, &node.data) {
            print(done, rate, &r);
        }
    }
    let elapsed = started.elapsed();
    if let Some(why) = failure {
        println!(
            "FAILED after {done} tenants ({:.0} s): {why}",
            elapsed.as_secs_f64()
        );
        bail!("the node did not carry {} tenants", args.tenants);
    }

    // Each tenant (or a spread sample) finds its own events and nobody else's.
    let step = args.tenants.div_ceil(args.full_check_up_to.max(1));
    let checked: Vec<usize> = (0..args.tenants).step_by(step).collect();
    let mut tasks = JoinSet::new();
    for &i in &checked {
        let permit = limit.clone().acquire_owned().await?;
        let (client, base) = (client.clone(), node.base.clone());
        let token = tokens[i].clone().context("a tenant without a token")?;
        let (events, other) = (args.events_per_tenant, (i + 1) % args.tenants);
        tasks.spawn(async move {
            let outcome = check(&client, &base, &token, i, events, other).await;
            drop(permit);
            outcome
        });
    }
    while let Some(outcome) = tasks.join_next().await {
        outcome??;
    }
    let end = Resources::read(pid, &node.data).context("reading the node's /proc")?;
    let per = |a: f64, b: f64| (a - b) / args.tenants as f64;
    println!(
        "{} tenants created and published in {:.1} s ({:.0} tenants/s); {} of them found their own {} events and none of another's",
        args.tenants,
        elapsed.as_secs_f64(),
        args.tenants as f64 / elapsed.as_secs_f64(),
        checked.len(),
        args.events_per_tenant,
    );
    println!(
        "per tenant: {:.1} KiB RSS, {:.3} threads, {:.3} open files, {:.1} KiB on disk",
        per(end.rss_mib, start.rss_mib) * 1024.0,
        per(end.threads as f64, start.threads as f64),
        per(end.open_files as f64, start.open_files as f64),
        per(end.disk_mib, start.disk_mib) * 1024.0,
    );
    Ok(())
}
