//! A cluster of real node processes on this machine.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::Client;
use crate::network::Network;
use crate::node::{Membership, NodeProcess, NodeSettings};
use crate::{Error, Result};

/// Each node on its own loopback address (127.0.0.11 for node 1, ...), so its traffic can be
/// told apart; long runs with many joins go on in 127.0.1.x and up.
fn node_ip(id: u64) -> String {
    format!("127.0.{}.{}", id / 200, 10 + id % 200)
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// How many voters.
    pub nodes: usize,
    /// The `meniscus` binary.
    pub binary: std::path::PathBuf,
    /// `--commit-interval-ms` of every node.
    pub commit_interval_ms: u64,
    /// `--follower-indexes` of every node.
    pub follower_indexes: String,
    /// `--shards` the first nodes bootstrap with (`None`: the binary's default).
    pub shards: Option<u64>,
    /// `--replication-factor` of those shards (0: every node; `None`: the binary's default).
    pub replication_factor: Option<u64>,
    /// Whether node-to-node traffic goes through a fault-injecting proxy per directed link
    /// (see [`Network`]); without, nodes dial each other directly.
    pub proxies: bool,
    /// Plain-text, unauthenticated peer links (`--insecure`) instead of certificates made
    /// with `meniscus cert` (the default).
    pub insecure: bool,
}

impl ClusterSpec {
    /// `nodes` nodes of `binary`, 100 ms index commits, followers copying the leader's
    /// indexes, without proxies.
    pub fn new(nodes: usize, binary: std::path::PathBuf) -> ClusterSpec {
        ClusterSpec {
            nodes,
            binary,
            commit_interval_ms: 100,
            follower_indexes: "copy".into(),
            shards: None,
            replication_factor: None,
            proxies: false,
            insecure: false,
        }
    }
}

/// N `meniscus start` processes forming one cluster. Dropping it kills them all.
pub struct Cluster {
    nodes: Vec<NodeProcess>,
    settings: NodeSettings,
    network: Option<Network>,
    client: Client,
    dir: std::path::PathBuf,
    tempdir: Option<tempfile::TempDir>,
}

impl Cluster {
    /// Starts `spec.nodes` nodes under a fresh temporary directory and waits for a leader.
    pub fn start(spec: &ClusterSpec) -> Result<Cluster> {
        let mut cluster = Cluster::temporary(spec)?;
        cluster.start_all()?;
        Ok(cluster)
    }

    /// Prepares a cluster under a fresh temporary directory (removed when the cluster is
    /// dropped, unless [`Cluster::keep_dir`]) without starting it.
    pub fn temporary(spec: &ClusterSpec) -> Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("meniscus-chaos-")
            .tempdir()?;
        let mut cluster = Cluster::create(spec, dir.path())?;
        cluster.tempdir = Some(dir);
        Ok(cluster)
    }

    /// Prepares a cluster under `dir` (kept after the run, for its logs) without starting it.
    pub fn create(spec: &ClusterSpec, dir: &Path) -> Result<Cluster> {
        let mut nodes = Vec::new();
        for id in 1..=spec.nodes as u64 {
            let ip = node_ip(id);
            let node_dir = dir.join(format!("node-{id}"));
            std::fs::create_dir_all(&node_dir)?;
            nodes.push(NodeProcess::new(id, &ip, node_dir)?);
        }
        let members: Vec<(u64, std::net::SocketAddr)> =
            nodes.iter().map(|n| (n.id, n.raft)).collect();
        let network = if spec.proxies {
            Some(Network::start(&members, !spec.insecure)?)
        } else {
            None
        };
        let direct = members
            .iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect::<Vec<_>>()
            .join(",");
        for node in &mut nodes {
            node.membership = Membership::Initial(match &network {
                Some(network) => network.initial_cluster(),
                None => direct.clone(),
            });
        }
        let certs_dir = if spec.insecure {
            None
        } else {
            let certs = dir.join("certs");
            crate::node::run_cli(&spec.binary, &["cert", "create-ca", "--certs-dir"], &certs)?;
            Some(certs)
        };
        let settings = NodeSettings {
            certs_dir,
            binary: spec.binary.clone(),
            admin_token: format!("mns_{}", "a1".repeat(32)),
            commit_interval_ms: spec.commit_interval_ms,
            follower_indexes: spec.follower_indexes.clone(),
            shards: spec.shards,
            replication_factor: spec.replication_factor,
        };
        Ok(Cluster {
            nodes,
            settings,
            network,
            client: Client::new()?,
            dir: dir.to_path_buf(),
            tempdir: None,
        })
    }

    /// Starts every node that is not running, then waits for a leader.
    pub fn start_all(&mut self) -> Result<()> {
        for node in &mut self.nodes {
            node.spawn(&self.settings)?;
        }
        for node in &mut self.nodes {
            node.wait_ready()?;
        }
        self.wait_leader(Duration::from_secs(30))?;
        Ok(())
    }

    /// Where its nodes keep their data and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps a temporary directory after the cluster is dropped (for its logs); returns it.
    pub fn keep_dir(&mut self) -> std::path::PathBuf {
        if let Some(tempdir) = self.tempdir.take() {
            let _ = tempdir.keep();
        }
        self.dir.clone()
    }

    /// The proxies between its nodes, when started with [`ClusterSpec::proxies`].
    pub fn network(&self) -> Option<&Network> {
        self.network.as_ref()
    }

    /// The proxies between its nodes, to change how partitions look.
    pub fn network_mut(&mut self) -> Option<&mut Network> {
        self.network.as_mut()
    }

    /// SIGKILL every node at once (a power loss).
    pub fn kill_all(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }

    /// The nodes, by index (node id - 1).
    pub fn nodes(&self) -> &[NodeProcess] {
        &self.nodes
    }

    /// The node with this id.
    pub fn node(&self, id: u64) -> &NodeProcess {
        &self.nodes[id as usize - 1]
    }

    /// The node with this id, to inflict faults on.
    pub fn node_mut(&mut self, id: u64) -> &mut NodeProcess {
        &mut self.nodes[id as usize - 1]
    }

    /// Starts a stopped node again with the same addresses and data.
    pub fn restart(&mut self, id: u64) -> Result<()> {
        let settings = self.settings.clone();
        self.node_mut(id).start(&settings)
    }

    /// The admin token.
    pub fn admin_token(&self) -> &str {
        &self.settings.admin_token
    }

    /// The HTTP client the harness uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Ids of nodes that run and are not paused.
    pub fn live(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.is_running() && !n.is_paused() && !n.is_removed())
            .map(|n| n.id)
            .collect()
    }

    /// Ids of the members: every node started so far that was not removed, running or not.
    pub fn members(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| !n.is_removed())
            .map(|n| n.id)
            .collect()
    }

    /// Starts a new node that joins the running cluster with `--join` (through `via`, or the
    /// next live member when that fails), announcing its proxy as its Raft address. Returns its
    /// id once its HTTP API listens; it then receives a snapshot and becomes a voter on its own.
    pub fn add_node(&mut self, via: u64) -> Result<u64> {
        let id = self.nodes.len() as u64 + 1;
        let ip = node_ip(id);
        let node_dir = self.dir.join(format!("node-{id}"));
        std::fs::create_dir_all(&node_dir)?;
        let mut node = NodeProcess::new(id, &ip, node_dir)?;
        let advertise = match &mut self.network {
            Some(network) => network.add(id, node.raft)?,
            None => node.raft,
        };
        node.membership = Membership::Join {
            url: self.node(via).url(),
            advertise,
        };
        self.nodes.push(node);
        // A join is refused while the cluster has no leader (just after a fault): try the
        // members in turn for a while. Each try is the same request, so a join that was
        // committed but not answered is simply confirmed by the next.
        let deadline = Instant::now() + Duration::from_secs(30);
        let settings = self.settings.clone();
        let mut attempt = 0;
        loop {
            let result = self.node_mut(id).start(&settings);
            let Err(e) = result else {
                return Ok(id);
            };
            self.node_mut(id).kill();
            let others = self.live();
            if Instant::now() > deadline || others.is_empty() {
                // Whatever was recorded for it must not linger as a member that never comes.
                let _ = self.remove_member(id);
                self.retire(id);
                return Err(e);
            }
            attempt += 1;
            let url = self.node(others[attempt % others.len()]).url();
            if let Membership::Join { url: via, .. } = &mut self.node_mut(id).membership {
                *via = url;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Asks the cluster to remove node `id` (`DELETE /v1/cluster/nodes/{id}`), through each
    /// live member in turn until one accepts, for up to 10 s.
    pub fn remove_member(&self, id: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut attempt = 0;
        loop {
            let others: Vec<u64> = self.live().into_iter().filter(|n| *n != id).collect();
            let via = others
                .get(attempt % others.len().max(1))
                .copied()
                .unwrap_or(id);
            let path = format!("/v1/cluster/nodes/{id}");
            match self
                .client
                .delete_json(&self.node(via).url(), &path, self.admin_token())
            {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => {}
            }
            attempt += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the group no longer has `id`: first on the leader, then on every live member
    /// that has applied as far as the leader had when it dropped `id`. A member still behind
    /// that point (a joiner fetching its snapshot under faults, say) has not seen the change yet
    /// and is not waited for; [`Cluster::membership_disagreements`] checks it after the faults.
    pub fn wait_removed(&self, id: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut removed_at: Option<u64> = None;
        loop {
            if removed_at.is_none() {
                if let Some((leader, _)) = self.leader_and_term().filter(|(l, _)| *l != id) {
                    if let Ok(status) = self.status(leader) {
                        let group = &status["groups"][0];
                        if !lists(group, id) {
                            removed_at = group["commit_index"].as_u64();
                        }
                    }
                }
            }
            let still: Vec<u64> = match removed_at {
                None => vec![id],
                Some(index) => self
                    .live()
                    .into_iter()
                    .filter(|n| *n != id)
                    .filter(|n| match self.status(*n) {
                        Ok(status) => {
                            let group = &status["groups"][0];
                            let applied = group["applied_index"].as_u64().unwrap_or(0);
                            applied >= index && lists(group, id)
                        }
                        Err(_) => false,
                    })
                    .collect(),
            };
            if still.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(match removed_at {
                    None => format!("the leader still has node {id} after {timeout:?}"),
                    Some(index) => format!(
                        "node {id} is still a member on nodes {still:?}, which applied past index {index} where the leader had removed it, after {timeout:?}"
                    ),
                }));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Live members with a group (voters and learners) that is not the harness's list of
    /// members, with what they have instead (the first such group); empty when all agree.
    /// Every group counts: the metadata group and each event shard.
    pub fn membership_disagreements(&self) -> Vec<(u64, Vec<u64>)> {
        let mut wanted = self.members();
        wanted.sort_unstable();
        self.live()
            .into_iter()
            .filter_map(|n| {
                let status = self.status(n).ok()?;
                let groups = status["groups"].as_array().cloned().unwrap_or_default();
                groups.iter().find_map(|group| {
                    // A shard placed on some nodes only has those as its members.
                    let placed = &status["shard_replicas"][group["id"].to_string()];
                    let wanted: Vec<u64> = match placed.as_array() {
                        Some(nodes) => {
                            let mut nodes: Vec<u64> =
                                nodes.iter().filter_map(|v| v.as_u64()).collect();
                            nodes.sort_unstable();
                            nodes
                        }
                        None => wanted.clone(),
                    };
                    let mut has: Vec<u64> = ["voters", "learners"]
                        .iter()
                        .flat_map(|key| group[*key].as_array().cloned().unwrap_or_default())
                        .filter_map(|v| v.as_u64())
                        .collect();
                    has.sort_unstable();
                    (has != wanted).then_some((n, has))
                })
            })
            .collect()
    }

    /// Stops a removed node for good and forgets its proxy.
    pub fn retire(&mut self, id: u64) {
        self.node_mut(id).retire();
        if let Some(network) = &mut self.network {
            network.remove(id);
        }
    }

    /// For each tenant placed in a shard that is on some nodes only, those nodes (by a live
    /// node's view); tenants whose events every node holds are not listed.
    pub fn tenant_holders(&self) -> std::collections::HashMap<String, Vec<u64>> {
        let mut out = std::collections::HashMap::new();
        let Some(status) = self.any_status() else {
            return out;
        };
        let Some(shards) = status["shards"].as_object() else {
            return out;
        };
        for (shard, tenants) in shards {
            let Some(nodes) = status["shard_replicas"][shard].as_array() else {
                continue;
            };
            let nodes: Vec<u64> = nodes.iter().filter_map(|v| v.as_u64()).collect();
            for tenant in tenants.as_array().into_iter().flatten() {
                if let Some(name) = tenant.as_str() {
                    out.insert(name.to_owned(), nodes.clone());
                }
            }
        }
        out
    }

    /// The event shards (Raft groups other than the metadata group), by a live node's view.
    pub fn shard_ids(&self) -> Vec<u64> {
        let Some(status) = self.any_status() else {
            return Vec::new();
        };
        let mut ids: Vec<u64> = status["shards"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(id, _)| id.parse().ok())
            .filter(|id| *id != 0)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The Raft group carrying `tenant`'s events (0: the metadata group), by a live node's view.
    pub fn group_of(&self, tenant: &str) -> Option<u64> {
        let status = self.any_status()?;
        status["shards"]
            .as_object()?
            .iter()
            .find_map(|(shard, tenants)| {
                tenants
                    .as_array()?
                    .iter()
                    .any(|t| t.as_str() == Some(tenant))
                    .then(|| shard.parse().ok())?
            })
    }

    /// `GET /v1/cluster` on the first live node that answers.
    fn any_status(&self) -> Option<Value> {
        self.live().into_iter().find_map(|n| self.status(n).ok())
    }

    /// `GET /v1/cluster` on node `id`.
    pub fn status(&self, id: u64) -> Result<Value> {
        self.client
            .get_json(&self.node(id).url(), "/v1/cluster", self.admin_token())
    }

    /// The leader, if a live node says it is the leader (the one of the highest term when a
    /// partitioned old leader still thinks it leads).
    pub fn leader(&self) -> Option<u64> {
        self.leader_and_term().map(|(id, _)| id)
    }

    /// The leader and its term, as [`Cluster::leader`].
    ///
    /// The nodes are asked at once: one that is partitioned away costs a client timeout, and
    /// asking them in turn would spend that once per unreachable node between fault steps.
    pub fn leader_and_term(&self) -> Option<(u64, u64)> {
        self.group_leader_and_term(0)
    }

    /// As [`Cluster::leader_and_term`], for Raft group `group` (0: metadata; else a shard).
    pub fn group_leader_and_term(&self, group: u64) -> Option<(u64, u64)> {
        let asked: Vec<(u64, String)> = self
            .live()
            .into_iter()
            .map(|id| (id, self.node(id).url()))
            .collect();
        let (client, token) = (&self.client, self.admin_token());
        std::thread::scope(|scope| {
            let answers: Vec<_> = asked
                .iter()
                .map(|(id, url)| {
                    scope.spawn(move || {
                        let status = client.get_json(url, "/v1/cluster", token).ok()?;
                        let group = status["groups"]
                            .as_array()?
                            .iter()
                            .find(|g| g["id"].as_u64() == Some(group))?
                            .clone();
                        let term = group["term"].as_u64()?;
                        (group["leader"].as_u64() == Some(*id)).then_some((*id, term))
                    })
                })
                .collect();
            answers
                .into_iter()
                .filter_map(|answer| answer.join().ok().flatten())
                .max_by_key(|(_, term)| *term)
        })
    }

    /// Waits until a live node leads; returns its id.
    pub fn wait_leader(&self, timeout: Duration) -> Result<u64> {
        self.wait_group_leader(0, timeout)
    }

    /// As [`Cluster::wait_leader`], for Raft group `group`.
    pub fn wait_group_leader(&self, group: u64, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((id, _)) = self.group_leader_and_term(group) {
                return Ok(id);
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!("no leader within {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Creates a tenant through node `id`; returns its token.
    pub fn create_tenant(&self, id: u64, name: &str) -> Result<String> {
        let body = serde_json::json!({ "name": name });
        let created = self.client.post_json(
            &self.node(id).url(),
            "/v1/tenants",
            self.admin_token(),
            &body,
        )?;
        created["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Unexpected(format!("tenant creation answered {created}")))
    }
}

/// Whether a `/v1/cluster` group lists node `id` as a voter or learner.
fn lists(group: &Value, id: u64) -> bool {
    ["voters", "learners"].iter().any(|key| {
        group[*key]
            .as_array()
            .is_some_and(|ids| ids.iter().any(|v| v.as_u64() == Some(id)))
    })
}
