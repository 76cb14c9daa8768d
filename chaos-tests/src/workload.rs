//! Concurrent publishers that log every acknowledgement, and the checker that compares the log
//! with what each replica stores.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{Client, Published};
use crate::relp::RelpPublisher;
use crate::Result;

/// A tenant the workload writes to.
#[derive(Debug, Clone)]
pub struct TenantLoad {
    /// Its name; every event id starts with it, so a leak to another tenant is visible.
    pub name: String,
    /// Its token.
    pub token: String,
}

/// What the publishers saw.
#[derive(Debug, Default)]
pub struct AckLog {
    /// Per tenant: the ids of acknowledged events.
    pub acked: HashMap<String, HashSet<String>>,
    /// Per tenant: ids sent but never acknowledged (may be stored or not, never twice).
    pub unacked: HashMap<String, HashSet<String>>,
    /// When each acknowledgement arrived.
    pub ack_times: Vec<Instant>,
    /// Publish requests that failed (and were retried).
    pub failures: u64,
    /// The first failures: when, and why (for the timeline).
    pub failure_log: Vec<(Instant, String)>,
}

/// How many failures [`AckLog::failure_log`] keeps.
const FAILURE_LOG_LIMIT: usize = 10_000;

impl AckLog {
    /// Acknowledged events, all tenants.
    pub fn acked_count(&self) -> usize {
        self.acked.values().map(HashSet::len).sum()
    }

    /// Counts a failed request, keeping its reason while the log has room.
    pub(crate) fn failed(&mut self, reason: String) {
        self.failures += 1;
        if self.failure_log.len() < FAILURE_LOG_LIMIT {
            self.failure_log.push((Instant::now(), reason));
        }
    }

    /// Records what became of one batch of `tenant`: the ids acknowledged (now) and the ids
    /// given up on.
    pub(crate) fn record(&mut self, tenant: &str, acked: Vec<String>, unacked: Vec<String>) {
        if !acked.is_empty() {
            self.ack_times.push(Instant::now());
            self.acked
                .entry(tenant.to_owned())
                .or_default()
                .extend(acked);
        }
        if !unacked.is_empty() {
            self.unacked
                .entry(tenant.to_owned())
                .or_default()
                .extend(unacked);
        }
    }

    /// Adds another publisher group's log to this one.
    pub fn merge(&mut self, other: AckLog) {
        for (tenant, ids) in other.acked {
            self.acked.entry(tenant).or_default().extend(ids);
        }
        for (tenant, ids) in other.unacked {
            self.unacked.entry(tenant).or_default().extend(ids);
        }
        self.ack_times.extend(other.ack_times);
        self.failures += other.failures;
        self.failure_log.extend(other.failure_log);
    }

    /// The longest time between two acknowledgements within `[from, to]`, in milliseconds.
    pub fn max_unavailable_ms(&self, from: Instant, to: Instant) -> u64 {
        let mut times: Vec<Instant> = self
            .ack_times
            .iter()
            .copied()
            .filter(|t| *t >= from && *t <= to)
            .collect();
        times.sort_unstable();
        let mut points = vec![from];
        points.extend(times);
        points.push(to);
        points
            .windows(2)
            .map(|w| w[1].duration_since(w[0]).as_millis() as u64)
            .max()
            .unwrap_or(0)
    }
}

/// The token each tenant's publishers use now; replaced after a rotation.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Arc<RwLock<HashMap<String, String>>>);

impl Tokens {
    /// The tenants' first tokens.
    pub fn new(tenants: &[TenantLoad]) -> Tokens {
        let tokens = tenants
            .iter()
            .map(|t| (t.name.clone(), t.token.clone()))
            .collect();
        Tokens(Arc::new(RwLock::new(tokens)))
    }

    /// The current token of `tenant`.
    pub fn get(&self, tenant: &str) -> Option<String> {
        self.0.read().expect("tokens poisoned").get(tenant).cloned()
    }

    /// Replaces the token of `tenant`.
    pub fn set(&self, tenant: &str, token: &str) {
        self.0
            .write()
            .expect("tokens poisoned")
            .insert(tenant.to_owned(), token.to_owned());
    }
}

/// One node as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Its id.
    pub id: u64,
    /// The base URL of its HTTP API.
    pub url: String,
    /// Its RELP listener, if it has one.
    pub relp: Option<SocketAddr>,
}

/// The nodes clients may use, shared by every client thread: a node that joins is added, a
/// node that leaves is taken out, and clients see the change at their next request.
#[derive(Debug, Clone, Default)]
pub struct Endpoints(Arc<RwLock<Vec<Endpoint>>>);

impl Endpoints {
    /// These nodes.
    pub fn new(nodes: Vec<Endpoint>) -> Endpoints {
        Endpoints(Arc::new(RwLock::new(nodes)))
    }

    /// Nodes known only by their HTTP API (ids 1, 2, ... in order).
    pub fn from_urls(urls: Vec<String>) -> Endpoints {
        let nodes = urls
            .into_iter()
            .zip(1..)
            .map(|(url, id)| Endpoint {
                id,
                url,
                relp: None,
            })
            .collect();
        Endpoints::new(nodes)
    }

    /// The `i`-th node, counting round: any `i` names one (`None` when there are none).
    pub fn get(&self, i: usize) -> Option<Endpoint> {
        let nodes = self.0.read().expect("endpoints poisoned");
        (!nodes.is_empty()).then(|| nodes[i % nodes.len()].clone())
    }

    /// The base URL of the `i`-th node, counting round.
    pub fn url(&self, i: usize) -> String {
        self.get(i).map(|e| e.url).unwrap_or_default()
    }

    /// Adds a node.
    pub fn add(&self, node: Endpoint) {
        self.0.write().expect("endpoints poisoned").push(node);
    }

    /// Takes node `id` out.
    pub fn remove(&self, id: u64) {
        self.0
            .write()
            .expect("endpoints poisoned")
            .retain(|e| e.id != id);
    }
}

/// How a publisher picks the node for its next batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// The next node after every batch: every node sees every publisher.
    RoundRobin,
    /// The same node until a request fails, then the next one, as a client behind a health
    /// checking load balancer would: a hung node stalls only the publishers that were on it,
    /// so a window without acknowledgements means the cluster, not one node, could not write.
    Sticky,
}

/// How many publishers, how they write.
#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    /// Publisher threads per tenant.
    pub publishers: usize,
    /// Events per request.
    pub batch: usize,
    /// How publishers pick nodes.
    pub routing: Routing,
    /// RELP publisher threads per tenant (to the nodes' RELP listeners), besides the HTTP ones.
    pub relp_publishers: usize,
    /// The first node of the first publisher (an index into the urls); the next publishers,
    /// across tenants, start on the following nodes.
    pub first_node: usize,
}

/// Publisher threads writing batches with idempotency keys (event ids) to every node.
/// A batch that fails is retried, with the same ids, on the next node until it is acknowledged.
pub struct Workload {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    log: Arc<Mutex<AckLog>>,
    tokens: Tokens,
}

impl Workload {
    /// Starts `publishers` threads per tenant, each sending `batch` events per request to the
    /// nodes at `urls` in turn.
    pub fn start(
        client: &Client,
        urls: Vec<String>,
        tenants: &[TenantLoad],
        publishers: usize,
        batch: usize,
    ) -> Workload {
        let options = WorkloadOptions {
            publishers,
            batch,
            routing: Routing::RoundRobin,
            relp_publishers: 0,
            first_node: 0,
        };
        Workload::start_with(client, Endpoints::from_urls(urls), tenants, &options)
    }

    /// Starts `options.publishers` threads per tenant.
    pub fn start_with(
        client: &Client,
        nodes: Endpoints,
        tenants: &[TenantLoad],
        options: &WorkloadOptions,
    ) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(AckLog::default()));
        let tokens = Tokens::new(tenants);
        let mut threads = Vec::new();
        let mut first = options.first_node;
        for tenant in tenants {
            for p in 0..options.publishers {
                let publisher = Publisher {
                    client: client.clone(),
                    nodes: nodes.clone(),
                    tenant: tenant.clone(),
                    name: format!("{}-p{p}", tenant.name),
                    batch: options.batch,
                    routing: options.routing,
                    tokens: tokens.clone(),
                    stop: stop.clone(),
                    log: log.clone(),
                };
                let start = match options.routing {
                    // As before: publisher p of every tenant starts on node p.
                    Routing::RoundRobin => p,
                    Routing::Sticky => first,
                };
                first += 1;
                threads.push(std::thread::spawn(move || publisher.run(start)));
            }
            for r in 0..options.relp_publishers {
                let publisher = RelpPublisher {
                    nodes: nodes.clone(),
                    tenant: tenant.clone(),
                    name: format!("{}-p-relp{r}", tenant.name),
                    window: options.batch,
                    tokens: tokens.clone(),
                    stop: stop.clone(),
                    log: log.clone(),
                };
                let start = first;
                first += 1;
                threads.push(std::thread::spawn(move || publisher.run(start)));
            }
        }
        Workload {
            stop,
            threads,
            log,
            tokens,
        }
    }

    /// The tokens the publishers use: setting one switches them to it from their next request.
    pub fn tokens(&self) -> Tokens {
        self.tokens.clone()
    }

    /// Acknowledged events so far.
    pub fn acked_count(&self) -> usize {
        self.log.lock().expect("ack log poisoned").acked_count()
    }

    /// Stops the publishers (each finishes or gives up on its current batch) and returns the log.
    pub fn stop(self) -> AckLog {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
        Arc::try_unwrap(self.log)
            .map(|m| m.into_inner().expect("ack log poisoned"))
            .unwrap_or_default()
    }
}

/// How long a publisher keeps retrying one batch after it was asked to stop.
const GIVE_UP_AFTER_STOP: Duration = Duration::from_secs(30);

struct Publisher {
    client: Client,
    nodes: Endpoints,
    tenant: TenantLoad,
    name: String,
    batch: usize,
    routing: Routing,
    tokens: Tokens,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<AckLog>>,
}

impl Publisher {
    fn run(self, offset: usize) {
        let mut next_node = offset;
        let mut seq = 0u64;
        while !self.stop.load(Ordering::Relaxed) {
            let ids: Vec<String> = (0..self.batch)
                .map(|i| format!("{}-{}", self.name, seq + i as u64))
                .collect();
            seq += self.batch as u64;
            let events: Value = ids
                .iter()
                .map(|id| json!({"id": id, "message": format!("chaos event {id}"), "host": self.name}))
                .collect();
            let mut stopped_at: Option<Instant> = None;
            let acked = loop {
                let url = &self.nodes.url(next_node);
                let token = self
                    .tokens
                    .get(&self.tenant.name)
                    .unwrap_or_else(|| self.tenant.token.clone());
                match self.client.publish(url, &token, &events) {
                    Published::Acked(_) => break true,
                    Published::Failed(reason) => {
                        self.log
                            .lock()
                            .expect("ack log poisoned")
                            .failed(format!("{url}: {reason}"));
                        next_node += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                if self.stop.load(Ordering::Relaxed) {
                    let since = *stopped_at.get_or_insert_with(Instant::now);
                    if since.elapsed() > GIVE_UP_AFTER_STOP {
                        break false;
                    }
                }
            };
            let (acked, unacked) = if acked {
                (ids, Vec::new())
            } else {
                (Vec::new(), ids)
            };
            self.log
                .lock()
                .expect("ack log poisoned")
                .record(&self.tenant.name, acked, unacked);
            if self.routing == Routing::RoundRobin {
                next_node += 1;
            }
        }
    }
}

/// What the checker found on one replica for one tenant.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplicaReport {
    /// Acknowledged ids that are missing.
    pub lost: usize,
    /// Ids stored more than once.
    pub duplicated: usize,
    /// Ids of another tenant found here.
    pub leaked: usize,
    /// Events stored.
    pub stored: usize,
}

/// Compares what node `url` stores for `tenant` with the log: every acknowledged id exactly once,
/// nothing twice, nothing of another tenant.
pub fn check_replica(
    client: &Client,
    url: &str,
    tenant: &TenantLoad,
    log: &AckLog,
) -> Result<ReplicaReport> {
    let stored = client.local_ids(url, &tenant.token)?;
    let empty = HashSet::new();
    let acked = log.acked.get(&tenant.name).unwrap_or(&empty);
    let prefix = format!("{}-p", tenant.name);
    Ok(ReplicaReport {
        lost: acked.iter().filter(|id| !stored.contains_key(*id)).count(),
        duplicated: stored.values().filter(|n| **n > 1).count(),
        leaked: stored.keys().filter(|id| !id.starts_with(&prefix)).count(),
        stored: stored.values().map(|n| *n as usize).sum(),
    })
}

/// Waits until node `url` lists every tenant; `Err` names the missing ones.
pub fn wait_listed(
    client: &Client,
    url: &str,
    admin: &str,
    tenants: &[TenantLoad],
    deadline: Instant,
) -> std::result::Result<(), String> {
    loop {
        let missing: Vec<String> = match client.get_json(url, "/v1/tenants", admin) {
            Ok(body) => {
                let listed: HashSet<&str> = body["tenants"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                tenants
                    .iter()
                    .filter(|t| !listed.contains(t.name.as_str()))
                    .map(|t| t.name.clone())
                    .collect()
            }
            Err(e) => vec![format!("(listing failed: {e})")],
        };
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(missing.join(", "));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
