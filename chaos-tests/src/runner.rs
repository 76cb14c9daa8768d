//! A whole chaos run: start a cluster behind proxies, create tenants, publish to every node,
//! inflict a seeded [`Plan`] of faults (rotating a token and creating a tenant while they go
//! on), heal, wait for the replicas to converge, and check every node for every tenant.
//!
//! The result is a [`ChaosReport`], whose [`ChaosReport::summary`] is the one line
//! `chaos: seed=S nodes=N faults=F acked=A lost=L duplicated=D max_unavailable_ms=M`, and a
//! timeline file in the run's directory (one line per fault start and end, with the leader at
//! that moment, then the longest window without an acknowledgement per fault).

use std::collections::HashSet;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::background::{LateTenant, Rotated, Rotation, Searcher, ROTATION_GRACE};
use crate::cluster::{Cluster, ClusterSpec};
use crate::node::NodeProcess;
use crate::plan::{Fault, FaultKind, Plan, Step, Target};
use crate::proxy::LinkState;
use crate::timeline::Timeline;
use crate::workload::{
    check_replica, wait_listed, AckLog, Endpoint, Endpoints, ReplicaReport, Routing, TenantLoad,
    Workload, WorkloadOptions,
};
use crate::{Error, Result};

/// What to run.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Cluster size.
    pub nodes: usize,
    /// Seed of the fault plan.
    pub seed: u64,
    /// How long faults go on (the run takes longer: start, recovery, checks).
    pub duration: Duration,
    /// Which kinds of faults to draw.
    pub faults: Vec<FaultKind>,
    /// Where nodes keep data and logs and the timeline is written; a temporary directory when
    /// `None` (kept when the run fails).
    pub dir: Option<PathBuf>,
    /// The `meniscus` binary the nodes run.
    pub binary: PathBuf,
    /// Tenants created before the faults.
    pub tenants: usize,
    /// HTTP publisher threads per tenant.
    pub publishers: usize,
    /// RELP publisher threads per tenant.
    pub relp_publishers: usize,
    /// Events per publish request.
    pub batch: usize,
    /// `--commit-interval-ms` of every node.
    pub commit_interval_ms: u64,
    /// `--follower-indexes` of every node.
    pub follower_indexes: String,
    /// Event shards the cluster is bootstrapped with (0: events travel in the metadata group;
    /// `None`: the binary's default).
    pub shards: Option<u64>,
    /// How many nodes hold each shard (0: every node; `None`: the binary's default).
    pub replication_factor: Option<u64>,
    /// How long replicas may take to hold every acknowledged event after the faults healed.
    pub converge_timeout: Duration,
}

impl ChaosConfig {
    /// Every fault kind, two tenants with two HTTP publishers and one RELP publisher each,
    /// batches (and RELP windows) of 20.
    pub fn new(nodes: usize, seed: u64, duration: Duration, binary: PathBuf) -> ChaosConfig {
        ChaosConfig {
            nodes,
            seed,
            duration,
            faults: FaultKind::ALL.to_vec(),
            dir: None,
            binary,
            tenants: 2,
            publishers: 2,
            relp_publishers: 1,
            batch: 20,
            commit_interval_ms: 100,
            follower_indexes: "copy".into(),
            shards: None,
            replication_factor: None,
            converge_timeout: Duration::from_secs(120),
        }
    }
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    /// The plan's seed.
    pub seed: u64,
    /// Cluster size.
    pub nodes: usize,
    /// Faults inflicted.
    pub faults: usize,
    /// Events acknowledged, all tenants.
    pub acked: usize,
    /// Acknowledged events missing, summed over replicas.
    pub lost: usize,
    /// Events stored more than once, summed over replicas.
    pub duplicated: usize,
    /// Events of another tenant found in a tenant, summed over replicas.
    pub leaked: usize,
    /// The longest time during the faults in which no write was acknowledged.
    pub max_unavailable_ms: u64,
    /// Publish requests that failed (and were retried).
    pub failed_requests: u64,
    /// Everything else that went wrong: a node that did not come back, a tenant missing on a
    /// node, a replica that could not be read, no write acknowledged after healing.
    pub problems: Vec<String>,
    /// The run's directory (node data and logs, the timeline).
    pub dir: PathBuf,
    /// The timeline file (gone after a clean run in a temporary directory).
    pub timeline: PathBuf,
    /// The timeline's text.
    pub timeline_text: String,
    /// Per fault: what was done, and the longest window without an acknowledgement from its
    /// start to the next fault's.
    pub windows: Vec<FaultWindow>,
}

/// One fault as it happened, and the unavailability it caused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultWindow {
    /// The fault as planned and as resolved ("killed 3  [kill -9 leader, then restart]").
    pub what: String,
    /// The longest time in which no write was acknowledged, from its start to the next fault.
    pub unavailable_ms: u64,
}

impl ChaosReport {
    /// `chaos: seed=S nodes=N faults=F acked=A lost=L duplicated=D max_unavailable_ms=M`
    /// (plus `leaked=` and `problems=` when not zero).
    pub fn summary(&self) -> String {
        let mut line = format!(
            "chaos: seed={} nodes={} faults={} acked={} lost={} duplicated={} max_unavailable_ms={}",
            self.seed,
            self.nodes,
            self.faults,
            self.acked,
            self.lost,
            self.duplicated,
            self.max_unavailable_ms
        );
        if self.leaked > 0 {
            line.push_str(&format!(" leaked={}", self.leaked));
        }
        if !self.problems.is_empty() {
            line.push_str(&format!(" problems={}", self.problems.len()));
        }
        line
    }

    /// Nothing lost, duplicated or leaked, and no other problem.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.leaked == 0 && self.problems.is_empty()
    }

    /// `Err` with the summary, the problems and where the logs are, unless clean.
    pub fn verdict(&self) -> Result<()> {
        if self.is_clean() {
            return Ok(());
        }
        let mut message = self.summary();
        for problem in &self.problems {
            message.push_str("\n  ");
            message.push_str(problem);
        }
        message.push_str(&format!(
            "\n  timeline: {}\n  node data and logs: {}",
            self.timeline.display(),
            self.dir.display()
        ));
        Err(Error::Unsafe(message))
    }
}

/// Runs `config` end to end; `Err` only when the harness itself could not run (the cluster did
/// not start, a file could not be written). Safety violations are in the report.
pub fn run(config: &ChaosConfig) -> Result<ChaosReport> {
    let plan = Plan::generate(config.seed, config.nodes, config.duration, &config.faults);
    eprint!("{plan}");
    let spec = ClusterSpec {
        nodes: config.nodes,
        binary: config.binary.clone(),
        commit_interval_ms: config.commit_interval_ms,
        follower_indexes: config.follower_indexes.clone(),
        shards: config.shards,
        replication_factor: config.replication_factor,
        proxies: true,
        insecure: false,
    };
    let mut cluster = match &config.dir {
        Some(dir) => {
            if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
                return Err(Error::Unexpected(format!(
                    "{} is not empty: a chaos run needs a fresh directory",
                    dir.display()
                )));
            }
            std::fs::create_dir_all(dir)?;
            Cluster::create(&spec, dir)?
        }
        None => Cluster::temporary(&spec)?,
    };
    let timeline_path = cluster.dir().join("timeline.txt");
    let mut timeline = Timeline::create(&timeline_path)?;
    timeline.note(&plan.to_string())?;
    if let Err(e) = cluster.start_all() {
        let dir = cluster.keep_dir();
        let _ = timeline.note(&format!("harness error: {e}"));
        return Err(Error::Unexpected(format!(
            "the cluster did not start: {e} (node data and logs kept in {})",
            dir.display()
        )));
    }
    let endpoints = Endpoints::new(cluster.nodes().iter().map(endpoint).collect());
    let mut run = Run {
        cluster,
        endpoints,
        timeline,
        problems: Vec::new(),
        // The plan's own randomness is spent; these only pick partition styles and whose
        // leader "the leader" is.
        style: crate::plan::Rng::new(config.seed ^ 0x5EED),
        groups: crate::plan::Rng::new(config.seed ^ 0x6E0D),
    };
    let report = run.execute(config, &plan);
    match report {
        Ok(mut report) => {
            report.timeline = timeline_path;
            if !report.is_clean() {
                report.dir = run.cluster.keep_dir();
            }
            run.timeline.note(&report.summary())?;
            for problem in &report.problems {
                run.timeline.note(&format!("problem: {problem}"))?;
            }
            report.timeline_text = run.timeline.text.clone();
            Ok(report)
        }
        Err(e) => {
            let dir = run.cluster.keep_dir();
            let _ = run.timeline.note(&format!("harness error: {e}"));
            Err(Error::Unexpected(format!(
                "{e} (node data and logs kept in {})",
                dir.display()
            )))
        }
    }
}

struct Run {
    cluster: Cluster,
    /// The nodes clients use: joiners are added, removed nodes taken out.
    endpoints: Endpoints,
    timeline: Timeline,
    problems: Vec<String>,
    style: crate::plan::Rng,
    groups: crate::plan::Rng,
}

/// How to undo a fault.
enum Undo {
    Restart(Vec<u64>),
    Resume(u64),
    Heal,
    RestartAll,
    /// Wait until the node is out of the group, then stop it for good.
    Retire(u64),
    Nothing,
}

/// A step as it happened.
struct Done {
    index: usize,
    started: Instant,
    what: String,
}

impl Run {
    fn execute(&mut self, config: &ChaosConfig, plan: &Plan) -> Result<ChaosReport> {
        let leader = self.cluster.wait_leader(Duration::from_secs(30))?;
        let mut tenants = Vec::new();
        for i in 1..=config.tenants {
            let name = format!("tenant-{i}");
            let token = self.cluster.create_tenant(leader, &name)?;
            tenants.push(TenantLoad { name, token });
        }
        self.check_routes("at start");
        let nodes = self.endpoints.clone();
        let client = self.cluster.client().clone();
        // Sticky publishers spread over every node: at least one per node.
        let publishers = config
            .publishers
            .max(config.nodes.div_ceil(config.tenants.max(1)));
        let options = WorkloadOptions {
            publishers,
            batch: config.batch,
            routing: Routing::Sticky,
            relp_publishers: config.relp_publishers,
            first_node: 0,
        };
        let workload = Workload::start_with(&client, nodes.clone(), &tenants, &options);
        let searcher = Searcher::start(&client, nodes.clone(), &tenants, workload.tokens());
        // Faults start once writes flow.
        wait_for(Duration::from_secs(60), || workload.acked_count() >= 200)
            .map_err(|_| Error::Timeout("no writes acknowledged before the faults".into()))?;

        let start = Instant::now();
        self.timeline.start = start;
        self.timeline.note("faults begin")?;
        let mut done = Vec::new();
        let mut late_tenant: Option<JoinHandle<LateTenant>> = None;
        let mut rotation: Option<JoinHandle<Rotation>> = None;
        let middle = plan.steps.len() / 2;
        let third = plan.steps.len() / 3;
        for (index, step) in plan.steps.iter().enumerate() {
            sleep_until(start + step.at);
            if index == third {
                let admin = self.cluster.admin_token().to_owned();
                let (client, nodes) = (client.clone(), nodes.clone());
                let (tenant, tokens) = (tenants[0].clone(), workload.tokens());
                rotation = Some(std::thread::spawn(move || {
                    Rotation::run(&client, &nodes, &admin, &tenant, &tokens)
                }));
                self.timeline.note(&format!(
                    "rotating the token of {} with a {} s grace period (in the background)",
                    tenants[0].name,
                    ROTATION_GRACE.as_secs()
                ))?;
            }
            if index == middle {
                let admin = self.cluster.admin_token().to_owned();
                let (client, nodes) = (client.clone(), nodes.clone());
                let options = WorkloadOptions {
                    publishers: 1,
                    batch: config.batch,
                    routing: Routing::Sticky,
                    relp_publishers: config.relp_publishers.min(1),
                    first_node: index,
                };
                late_tenant = Some(std::thread::spawn(move || {
                    LateTenant::create(&client, &nodes, &admin, &options)
                }));
                self.timeline
                    .note("creating tenant created-during-faults (in the background)")?;
            }
            done.push(self.inflict_and_undo(index, plan.steps.len(), step)?);
        }
        let faults_end = Instant::now();

        // Heal everything, then writes must flow again.
        self.recover_everything();
        let leader = self.cluster.wait_leader(Duration::from_secs(30)).ok();
        self.timeline
            .event(leader, "healed: every link passes, every node runs")?;
        let before = workload.acked_count();
        if wait_for(Duration::from_secs(30), || {
            workload.acked_count() > before + 100
        })
        .is_err()
        {
            self.problems.push(format!(
                "after healing, {} events were acknowledged in 30 s (wanted more than 100)",
                workload.acked_count() - before
            ));
        }

        let mut log = workload.stop();
        let searches = searcher.stop();
        let mut all_tenants = tenants.clone();
        if let Some(handle) = late_tenant {
            match handle.join() {
                Ok(LateTenant::Created { tenant, workload }) => {
                    self.timeline
                        .note(&format!("tenant {} was created", tenant.name))?;
                    log.merge(workload.stop());
                    all_tenants.push(tenant);
                }
                Ok(LateTenant::Failed(why)) => self
                    .problems
                    .push(format!("creating a tenant during faults failed: {why}")),
                Err(_) => self.problems.push("the tenant creator panicked".into()),
            }
        }
        let rotated = match rotation.map(JoinHandle::join) {
            Some(Ok(Rotation::Done(rotated))) => {
                self.timeline
                    .note(&format!("the token of {} was rotated", rotated.tenant))?;
                for tenant in &mut all_tenants {
                    if tenant.name == rotated.tenant {
                        tenant.token = rotated.new.clone();
                    }
                }
                Some(rotated)
            }
            Some(Ok(Rotation::Failed(why))) => {
                self.problems
                    .push(format!("rotating a token during faults failed: {why}"));
                None
            }
            Some(Err(_)) => {
                self.problems.push("the token rotator panicked".into());
                None
            }
            None => None,
        };
        let over_relp: usize = log
            .acked
            .values()
            .map(|ids| ids.iter().filter(|id| id.contains("-p-relp")).count())
            .sum();
        self.timeline.note(&format!(
            "publishing stopped: {} acknowledged ({over_relp} over RELP), {} failed requests; searches during faults: {} answered, {} failed",
            log.acked_count(),
            log.failures,
            searches.0,
            searches.1
        ))?;

        // Every member, joiners that were still catching up included, ends with the same group.
        let cluster = &self.cluster;
        if wait_for(config.converge_timeout, || {
            cluster.membership_disagreements().is_empty()
        })
        .is_err()
        {
            for (node, has) in self.cluster.membership_disagreements() {
                self.problems.push(format!(
                    "node {node} has the group {has:?}, not the members {:?}",
                    self.cluster.members()
                ));
            }
        }
        let totals = self.check(&all_tenants, &log, config.converge_timeout)?;
        self.check_routes("after the faults");
        if let Some(rotated) = &rotated {
            self.check_rotation(rotated)?;
        }
        let max_unavailable_ms = log.max_unavailable_ms(start, faults_end);
        self.timeline
            .note("longest window without an acknowledgement, per fault:")?;
        let mut windows = Vec::new();
        for (i, step) in done.iter().enumerate() {
            let until = done.get(i + 1).map_or(faults_end, |next| next.started);
            let window = FaultWindow {
                what: step.what.clone(),
                unavailable_ms: log.max_unavailable_ms(step.started, until),
            };
            self.timeline.note(&format!(
                "  step {}: {} ms  ({})",
                step.index + 1,
                window.unavailable_ms,
                window.what
            ))?;
            windows.push(window);
        }
        Ok(ChaosReport {
            seed: config.seed,
            nodes: config.nodes,
            faults: done.len(),
            acked: log.acked_count(),
            lost: totals.lost,
            duplicated: totals.duplicated,
            leaked: totals.leaked,
            max_unavailable_ms,
            failed_requests: log.failures,
            problems: std::mem::take(&mut self.problems),
            dir: self.cluster.dir().to_path_buf(),
            timeline: PathBuf::new(),
            timeline_text: String::new(),
            windows,
        })
    }

    /// Inflicts one step, holds it, undoes it; records both ends in the timeline.
    fn inflict_and_undo(&mut self, index: usize, count: usize, step: &Step) -> Result<Done> {
        let group = if step.fault.targets_leader() {
            self.pick_group()
        } else {
            0
        };
        let leader = self.cluster.group_leader_and_term(group).map(|(id, _)| id);
        let started = Instant::now();
        let (what, undo) = self.inflict(&step.fault, leader);
        let what = match group {
            0 => format!("{what}  [{}]", step.fault),
            shard => format!("{what}  [{}; the leader of shard {shard}]", step.fault),
        };
        self.timeline
            .event(leader, &format!("start {}/{count}: {what}", index + 1))?;
        if let Some(network) = self.cluster.network() {
            self.timeline
                .note(&format!("  links: {}", network.describe()))?;
        }
        std::thread::sleep(step.hold);
        self.undo(undo);
        let leader = self.cluster.group_leader_and_term(group).map(|(id, _)| id);
        self.timeline
            .event(leader, &format!("end   {}/{count}: {what}", index + 1))?;
        Ok(Done {
            index,
            started,
            what,
        })
    }

    /// The Raft group whose leader a step's "the leader" is: the metadata group's half the
    /// time, else a random event shard's (each holds some tenants' events; the metadata group
    /// holds tokens and placement).
    fn pick_group(&mut self) -> u64 {
        let shards = self.cluster.shard_ids();
        if shards.is_empty() || self.groups.percent(50) {
            return 0;
        }
        shards[self.groups.below(shards.len() as u64) as usize]
    }

    /// Resolves a target: "the leader" is the leader now, or the lowest live node if none;
    /// `node k` is the k-th member by id (ids change as nodes join and leave).
    fn resolve(&self, target: Target, leader: Option<u64>) -> u64 {
        let members = self.cluster.members();
        match target {
            Target::Node(k) => members[(k.max(1) as usize - 1) % members.len()],
            Target::Leader => leader
                .or_else(|| self.cluster.live().first().copied())
                .unwrap_or(members[0]),
        }
    }

    /// Distinct nodes for `targets`; a duplicate (the leader was also named) is replaced by
    /// the lowest node not chosen yet, so the group keeps its size.
    fn resolve_group(&self, targets: &[Target], leader: Option<u64>) -> Vec<u64> {
        let mut ids: Vec<u64> = Vec::new();
        for target in targets {
            let id = self.resolve(*target, leader);
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        for id in self.cluster.members() {
            if ids.len() >= targets.len() {
                break;
            }
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// Partitions either drop bytes (a lost network) or refuse connections (a dead peer).
    fn pick_partition_style(&mut self) -> &'static str {
        let (style, name) = if self.style.percent(50) {
            (LinkState::Drop, "bytes dropped")
        } else {
            (LinkState::Refuse, "connections refused")
        };
        if let Some(network) = self.cluster.network_mut() {
            network.set_partition_style(style);
        }
        name
    }

    fn inflict(&mut self, fault: &Fault, leader: Option<u64>) -> (String, Undo) {
        let ids = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        match fault {
            Fault::Kill { nodes } => {
                let victims = self.resolve_group(nodes, leader);
                for id in &victims {
                    self.cluster.node_mut(*id).kill();
                }
                (format!("killed {}", ids(&victims)), Undo::Restart(victims))
            }
            Fault::Pause { node } => {
                let id = self.resolve(*node, leader);
                self.cluster.node_mut(id).pause();
                (format!("paused {id}"), Undo::Resume(id))
            }
            Fault::PowerLoss => {
                self.cluster.kill_all();
                ("killed every node".into(), Undo::RestartAll)
            }
            Fault::AddNode => {
                let via = self.resolve(Target::Leader, leader);
                match self.cluster.add_node(via) {
                    Ok(id) => {
                        self.endpoints.add(endpoint(self.cluster.node(id)));
                        (format!("node {id} joined through {via}"), Undo::Nothing)
                    }
                    Err(e) => {
                        self.problems
                            .push(format!("a new node could not join: {e}"));
                        ("a new node failed to join".into(), Undo::Nothing)
                    }
                }
            }
            Fault::RemoveNode { node } => {
                let id = self.resolve(*node, leader);
                match self.cluster.remove_member(id) {
                    Ok(()) => (format!("removing node {id}"), Undo::Retire(id)),
                    Err(e) => {
                        self.problems.push(format!(
                            "the cluster did not accept removing node {id}: {e}"
                        ));
                        (format!("removing node {id} failed"), Undo::Nothing)
                    }
                }
            }
            Fault::Delay {
                node,
                latency,
                loss_percent,
            } => {
                let id = node.map(|t| self.resolve(t, leader));
                if let Some(network) = self.cluster.network() {
                    network.degrade(id, *latency, *loss_percent);
                }
                let whose = id.map_or("every link".into(), |id| format!("node {id}'s links"));
                (
                    format!("{whose} +{} ms, {loss_percent}% loss", latency.as_millis()),
                    Undo::Heal,
                )
            }
            Fault::Isolate { node } => {
                let id = self.resolve(*node, leader);
                let style = self.pick_partition_style();
                if let Some(network) = self.cluster.network() {
                    network.isolate(id);
                }
                (format!("isolated {id} ({style})"), Undo::Heal)
            }
            Fault::Split { minority } => {
                let small = self.resolve_group(minority, leader);
                let style = self.pick_partition_style();
                let Some(network) = self.cluster.network() else {
                    return ("no network".into(), Undo::Heal);
                };
                let large = network.others(&small);
                network.split(&small, &large);
                (
                    format!("split {{{}}} | {{{}}} ({style})", ids(&small), ids(&large)),
                    Undo::Heal,
                )
            }
            Fault::OneWay { node, inbound } => {
                let id = self.resolve(*node, leader);
                let style = self.pick_partition_style();
                let Some(network) = self.cluster.network() else {
                    return ("no network".into(), Undo::Heal);
                };
                let others = network.others(&[id]);
                if *inbound {
                    network.one_way(&others, &[id]);
                    (
                        format!("{{{}}} -> {id} lost ({style})", ids(&others)),
                        Undo::Heal,
                    )
                } else {
                    network.one_way(&[id], &others);
                    (
                        format!("{id} -> {{{}}} lost ({style})", ids(&others)),
                        Undo::Heal,
                    )
                }
            }
            Fault::Bridge { bridge } => {
                let id = self.resolve(*bridge, leader);
                let style = self.pick_partition_style();
                let Some(network) = self.cluster.network() else {
                    return ("no network".into(), Undo::Heal);
                };
                let others = network.others(&[id]);
                let (left, right) = others.split_at(others.len() / 2);
                network.bridge(left, right);
                (
                    format!(
                        "{{{}}} x {{{}}}, bridged by {id} ({style})",
                        ids(left),
                        ids(right)
                    ),
                    Undo::Heal,
                )
            }
        }
    }

    fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Restart(ids) => {
                for id in ids {
                    if let Err(e) = self.cluster.restart(id) {
                        self.problems
                            .push(format!("node {id} did not restart: {e}"));
                    }
                }
            }
            Undo::Resume(id) => self.cluster.node_mut(id).resume(),
            Undo::Heal => {
                if let Some(network) = self.cluster.network() {
                    network.heal();
                }
            }
            Undo::RestartAll => {
                if let Err(e) = self.cluster.start_all() {
                    self.problems.push(format!(
                        "the cluster did not come back from a power loss: {e}"
                    ));
                }
            }
            Undo::Retire(id) => {
                // Clients stop using it first: it is on its way out.
                self.endpoints.remove(id);
                if let Err(e) = self.cluster.wait_removed(id, Duration::from_secs(30)) {
                    self.problems.push(format!("removing node {id}: {e}"));
                }
                self.cluster.retire(id);
            }
            Undo::Nothing => {}
        }
    }

    /// Every link passes, no node is paused, every node runs (a second chance for one that
    /// failed to restart).
    fn recover_everything(&mut self) {
        if let Some(network) = self.cluster.network() {
            network.heal();
        }
        for id in self.cluster.members() {
            let node = self.cluster.node_mut(id);
            if node.is_paused() {
                node.resume();
            }
            if !node.is_running() {
                if let Err(e) = self.cluster.restart(id) {
                    self.problems
                        .push(format!("node {id} never recovered: {e}"));
                }
            }
        }
    }

    /// Every node dials each peer through that peer's proxy (`/v1/cluster` names the addresses
    /// it uses); otherwise link faults would miss that traffic, and the run proves less than
    /// it says.
    fn check_routes(&mut self, when: &str) {
        let Some(network) = self.cluster.network() else {
            return;
        };
        let mut wrong = Vec::new();
        for node in self.cluster.live() {
            let Ok(status) = self.cluster.status(node) else {
                continue;
            };
            for peer in status["nodes"].as_array().into_iter().flatten() {
                let (Some(id), Some(addr)) = (peer["id"].as_u64(), peer["raft_addr"].as_str())
                else {
                    continue;
                };
                if peer["self"] == true || !network.ids().contains(&id) {
                    continue;
                }
                let proxy = network.proxy(id).addr().to_string();
                if addr != proxy {
                    wrong.push(format!(
                        "node {node} dials {id} at {addr}, not its proxy {proxy}"
                    ));
                }
            }
        }
        if !wrong.is_empty() {
            self.problems.push(format!(
                "{when}, some node-to-node traffic bypasses the proxies: {}",
                wrong.join("; ")
            ));
        }
    }

    /// Once its grace period is over, a rotated-out token is refused by every node, and the new
    /// one accepted.
    fn check_rotation(&mut self, rotated: &Rotated) -> Result<()> {
        sleep_until(rotated.at + ROTATION_GRACE + Duration::from_millis(500));
        let client = self.cluster.client().clone();
        let mut verdicts = Vec::new();
        for node in self.cluster.nodes().iter().filter(|n| !n.is_removed()) {
            let url = node.url();
            // Not `read=local`: the node answers (or refuses) for a shard it may not hold, through
            // a node that holds it, which may have just restarted: the new token gets a few
            // tries for an answer that is not about tokens.
            let old = client.total(&url, &rotated.old, "*");
            let mut new = client.total(&url, &rotated.new, "*");
            let retry_until = Instant::now() + Duration::from_secs(20);
            while new
                .as_ref()
                .is_err_and(|e| !matches!(e, Error::Status { status: 401, .. }))
                && Instant::now() < retry_until
            {
                std::thread::sleep(Duration::from_millis(500));
                new = client.total(&url, &rotated.new, "*");
            }
            let old_refused = matches!(old, Err(Error::Status { status: 401, .. }));
            if !old_refused {
                self.problems.push(format!(
                    "node {}: the rotated-out token of {} still answers after its grace period: {old:?}",
                    node.id, rotated.tenant
                ));
            }
            if let Err(e) = &new {
                self.problems.push(format!(
                    "node {}: the new token of {} is refused: {e}",
                    node.id, rotated.tenant
                ));
            }
            verdicts.push(format!(
                "node {} old {} new {}",
                node.id,
                if old_refused { "refused" } else { "ACCEPTED" },
                if new.is_ok() { "accepted" } else { "REFUSED" }
            ));
        }
        self.timeline.note(&format!(
            "check token rotation of {}: {}",
            rotated.tenant,
            verdicts.join(", ")
        ))
    }

    /// Waits until every node holds every acknowledged event of every tenant (or the timeout),
    /// then checks each replica and that each tenant exists on each node.
    fn check(
        &mut self,
        tenants: &[TenantLoad],
        log: &AckLog,
        timeout: Duration,
    ) -> Result<ReplicaReport> {
        let deadline = Instant::now() + timeout;
        let mut totals = ReplicaReport::default();
        let client = self.cluster.client().clone();
        let holders = self.cluster.tenant_holders();
        for node in self.cluster.nodes().iter().filter(|n| !n.is_removed()) {
            let url = node.url();
            match wait_listed(&client, &url, self.cluster.admin_token(), tenants, deadline) {
                Ok(()) => {}
                Err(missing) => self.problems.push(format!(
                    "node {}: tenants missing from /v1/tenants: {missing}",
                    node.id
                )),
            }
            for tenant in tenants {
                // A shard placed on some nodes: only they hold its tenants' events.
                if holders
                    .get(&tenant.name)
                    .is_some_and(|nodes| !nodes.contains(&node.id))
                {
                    continue;
                }
                let acked = log.acked.get(&tenant.name).map_or(0, HashSet::len);
                let report = loop {
                    let report = check_replica(&client, &url, tenant, log);
                    // A replica still applying the log can show an id twice across the pages
                    // of one read: when a publisher's retry was received later but committed
                    // earlier than the original (a syslog event takes its time on receipt),
                    // the copy last in the log replaces the other between two pages and sorts
                    // onto a later one. Pages are not a snapshot; a duplicate that is stored
                    // stays through every read until the deadline and is reported.
                    let settled = matches!(&report, Ok(r) if r.lost == 0 && r.duplicated == 0);
                    if settled || Instant::now() > deadline {
                        break report;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                };
                match report {
                    Ok(r) => {
                        self.timeline.note(&format!(
                            "check node {} tenant {}: acked {acked}, stored {}, lost {}, duplicated {}, leaked {}",
                            node.id, tenant.name, r.stored, r.lost, r.duplicated, r.leaked
                        ))?;
                        if r.lost + r.duplicated + r.leaked > 0 {
                            self.problems.push(format!(
                                "node {} tenant {}: {r:?} of {acked} acknowledged; log tail:\n{}",
                                node.id,
                                tenant.name,
                                node.log_tail(15)
                            ));
                        }
                        totals.lost += r.lost;
                        totals.duplicated += r.duplicated;
                        totals.leaked += r.leaked;
                        totals.stored += r.stored;
                    }
                    Err(e) => self.problems.push(format!(
                        "node {} tenant {}: its replica could not be read: {e}",
                        node.id, tenant.name
                    )),
                }
            }
        }
        Ok(totals)
    }
}

/// How clients reach a node.
fn endpoint(node: &NodeProcess) -> Endpoint {
    Endpoint {
        id: node.id,
        url: node.url(),
        relp: Some(node.relp),
    }
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

/// Polls `done` every 50 ms until it holds or `timeout` passes.
fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> std::result::Result<(), ()> {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            return Err(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_has_the_agreed_shape() {
        let report = ChaosReport {
            seed: 7,
            nodes: 5,
            faults: 9,
            acked: 1234,
            lost: 0,
            duplicated: 0,
            leaked: 0,
            max_unavailable_ms: 2100,
            failed_requests: 3,
            problems: Vec::new(),
            dir: PathBuf::new(),
            timeline: PathBuf::new(),
            timeline_text: String::new(),
            windows: Vec::new(),
        };
        assert_eq!(
            report.summary(),
            "chaos: seed=7 nodes=5 faults=9 acked=1234 lost=0 duplicated=0 max_unavailable_ms=2100"
        );
        assert!(report.verdict().is_ok());
        let bad = ChaosReport { lost: 2, ..report };
        assert!(bad.verdict().is_err());
    }
}
