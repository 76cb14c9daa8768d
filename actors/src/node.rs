//! [`Node`]: one Meniscus node's storage, consensus and actors, wired together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meniscus_consensus::transport::{Inbound, PeerStatus, Transport};
use meniscus_consensus::{RaftHandle, RaftStatus, Router};
use meniscus_event::Event;
use meniscus_storage::{
    tokens, AddAdminToken, AddMember, ApplyOutcome, CommandKind, CreateTenant, Principal,
    RemoveMember, RotateToken, SearchRequest, SearchResponse,
};
use raft::eraftpb::MessageType;
use time::OffsetDateTime;

use crate::group::Group;
use crate::mirror::Mirror;
use crate::tenant_supervisor::TenantStatus;
use crate::{Error, IndexerSettings, Result, SnapshotStore};

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Where everything is stored.
    pub data_dir: PathBuf,
    /// This node's Raft id.
    pub node_id: u64,
    /// Indexer behaviour.
    pub indexer: IndexerSettings,
    /// Bytes of committed events waiting for indexers above which publishes are refused.
    pub max_indexing_backlog_bytes: u64,
    /// How often the Raft log is compacted below what the indexes have committed.
    pub compact_interval: Duration,
    /// Other voters, when this node is one of several; `None` runs a cluster of one.
    pub cluster: Option<ClusterOptions>,
    /// Raft log entries kept for a member that stopped answering; past this, the log is
    /// compacted anyway and that member gets a snapshot when it returns.
    pub max_raft_log_entries: u64,
    /// In a cluster: followers copy the leader's tenant indexes after each of its commits
    /// instead of indexing every event themselves (see `mirror`).
    pub copy_follower_indexes: bool,
}

/// A static cluster: every voter's id and Raft address, known at bootstrap.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// This node's Raft (node-to-node) listen address.
    pub raft_addr: SocketAddr,
    /// Every voter, this node included: id and Raft address.
    pub members: Vec<(u64, SocketAddr)>,
    /// Length of one Raft tick (election timeout is 10 ticks).
    pub tick_interval: Duration,
    /// Whether this node joins a running cluster (added through another member's
    /// [`Node::add_member`]) rather than bootstrapping `members` as the initial voters.
    pub join: bool,
}

impl NodeOptions {
    /// Defaults for a single node storing in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        NodeOptions {
            data_dir: data_dir.into(),
            node_id: 1,
            indexer: IndexerSettings::default(),
            max_indexing_backlog_bytes: 512 * 1024 * 1024,
            compact_interval: Duration::from_secs(30),
            cluster: None,
            max_raft_log_entries: 20_000,
            copy_follower_indexes: false,
        }
    }
}

/// A running node: its Raft groups, and the transport they share in a cluster.
pub struct Node {
    /// The one group: metadata and every tenant's events.
    group: Group,
    transport: Option<Arc<Transport>>,
    raft_addr: Option<SocketAddr>,
    clustered: bool,
}

/// What [`Node::cluster_status`] reports.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    /// This node's id.
    pub node_id: u64,
    /// This node's Raft address (`None` for a node that runs alone).
    pub raft_addr: Option<SocketAddr>,
    /// The other members this node knows, with its connection to each.
    pub peers: Vec<PeerStatus>,
    /// The Raft group's state as this node sees it.
    pub raft: RaftStatus,
    /// The first index still in this node's Raft log.
    pub log_first_index: u64,
    /// Every tenant, in name order.
    pub tenants: Vec<String>,
    /// How this node keeps its tenant indexes.
    pub indexes: IndexesStatus,
}

/// How a node keeps its tenant indexes (see `--follower-indexes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexesStatus {
    /// Whether followers copy the leader's indexes (rather than index every event).
    pub copy_follower_indexes: bool,
    /// Whether this node's indexers index applied events now (the leader, or every node
    /// when followers index).
    pub indexing_here: bool,
    /// Index commits this node copied from leaders since it started.
    pub copies_adopted: u64,
}

/// How long a linearizable read retries while the cluster has no leader.
const READ_INDEX_PATIENCE: Duration = Duration::from_secs(5);

fn now_nanos() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp_nanos() as i64
}

impl Node {
    /// Opens the data directory, replays what the indexes miss, and starts taking writes.
    pub async fn start(options: NodeOptions) -> Result<Node> {
        std::fs::create_dir_all(&options.data_dir).map_err(meniscus_storage::Error::from)?;
        let db = sled::Config::new()
            .path(options.data_dir.join("raft"))
            .open()
            .map_err(meniscus_storage::Error::from)?;
        let mut transport = None;
        let mut inbound = None;
        let mut raft_addr = None;
        if let Some(cluster) = &options.cluster {
            let (sender, receiver) = tokio::sync::mpsc::channel(16 * 1024);
            let (bound, local) = Transport::bind(options.node_id, cluster.raft_addr, sender)
                .await
                .map_err(meniscus_storage::Error::from)?;
            raft_addr = Some(local);
            for (id, addr) in &cluster.members {
                if *id != options.node_id {
                    bound.set_peer(*id, *addr);
                }
            }
            transport = Some(bound);
            inbound = Some(receiver);
        }
        let group = Group::start(&options, db, transport.clone()).await?;
        if let (Some(inbound), Some(snapshots)) = (inbound, &group.snapshots) {
            let router = Arc::new(Router::new());
            router.add(group.id, group.raft.clone());
            tokio::spawn(receive(
                inbound,
                router,
                group.raft.clone(),
                snapshots.clone(),
                group.mirror.clone(),
            ));
        }
        Ok(Node {
            group,
            transport,
            raft_addr,
            clustered: options.cluster.is_some(),
        })
    }

    async fn propose(&self, kind: CommandKind) -> Result<(u64, ApplyOutcome)> {
        self.group.propose(kind).await
    }

    /// Appends events to `tenant`'s store. Returns the Raft index once it is committed (fsync'd).
    pub async fn publish(&self, tenant: &str, events: &[Event]) -> Result<u64> {
        self.group.publish(tenant, events).await
    }

    /// Creates a tenant. Returns its first token, or `None` if the tenant exists.
    pub async fn create_tenant(&self, name: &str) -> Result<Option<String>> {
        let token = tokens::generate();
        let created = self.create_tenant_with_token(name, &token).await?;
        Ok(created.then_some(token))
    }

    /// Creates a tenant whose first token is `token`. Returns false if the tenant exists.
    pub async fn create_tenant_with_token(&self, name: &str, token: &str) -> Result<bool> {
        meniscus_storage::validate_tenant_name(name)?;
        let kind = CommandKind::CreateTenant(CreateTenant {
            name: name.to_owned(),
            token_hash: tokens::hash(token),
            created_at_nanos: now_nanos(),
        });
        Ok(!matches!(
            self.propose(kind).await?,
            (_, ApplyOutcome::TenantExists)
        ))
    }

    /// Gives a tenant a new token; its previous tokens keep working for `grace`.
    pub async fn rotate_token(
        &self,
        tenant: &str,
        grace: Duration,
    ) -> Result<(String, OffsetDateTime)> {
        let token = tokens::generate();
        let valid_until = OffsetDateTime::now_utc() + grace;
        let kind = CommandKind::RotateToken(RotateToken {
            tenant: tenant.to_owned(),
            token_hash: tokens::hash(&token),
            previous_valid_until_nanos: valid_until.unix_timestamp_nanos() as i64,
        });
        match self.propose(kind).await? {
            (_, ApplyOutcome::UnknownTenant) => Err(Error::UnknownTenant(tenant.to_owned())),
            _ => Ok((token, valid_until)),
        }
    }

    /// Installs an admin token (bootstrap).
    pub async fn add_admin_token(&self, token: &str) -> Result<()> {
        let kind = CommandKind::AddAdminToken(AddAdminToken {
            token_hash: tokens::hash(token),
        });
        self.propose(kind).await.map(|_| ())
    }

    /// Whether any admin token exists.
    pub fn has_admin(&self) -> Result<bool> {
        Ok(self.group.metadata.has_admin()?)
    }

    /// Every tenant's name.
    pub fn tenant_names(&self) -> Result<Vec<String>> {
        Ok(self
            .group
            .metadata
            .tenants()?
            .into_iter()
            .map(|t| t.name)
            .collect())
    }

    /// Whether a tenant exists.
    pub fn tenant_exists(&self, name: &str) -> Result<bool> {
        Ok(self.group.metadata.tenant_exists(name)?)
    }

    /// Who a bearer token speaks for, by this node's metadata as applied so far. A follower
    /// that lags may not know of a change acknowledged elsewhere: see
    /// [`Node::authenticate_linearizable`].
    pub fn authenticate(&self, token: &str) -> Result<Option<Principal>> {
        Ok(self.group.metadata.authenticate(token, now_nanos())?)
    }

    /// Who a bearer token speaks for, after this node has applied every change acknowledged
    /// anywhere in the cluster before the call (Raft ReadIndex): a token revoked on one node
    /// is refused on every node once the revocation is acknowledged. A node alone in its
    /// cluster has nothing to wait for.
    pub async fn authenticate_linearizable(&self, token: &str) -> Result<Option<Principal>> {
        if self.clustered {
            self.wait_read_index().await?;
        }
        self.authenticate(token)
    }

    /// Waits for a ReadIndex round, retrying through a leader change for a few seconds.
    async fn wait_read_index(&self) -> Result<u64> {
        let deadline = tokio::time::Instant::now() + READ_INDEX_PATIENCE;
        loop {
            match self.group.raft.read_index().await {
                Ok(index) => return Ok(index),
                Err(meniscus_consensus::Error::NotLeader { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Searches a tenant's committed events.
    pub async fn search(&self, tenant: &str, request: SearchRequest) -> Result<SearchResponse> {
        self.group.search(tenant, request).await
    }

    /// Waits until every event of `tenant` committed at Raft index `index` or below is
    /// searchable on this node (read your writes: `index` is what a publish answered), for at
    /// most `timeout`. Returns whether it is.
    pub async fn wait_searchable(
        &self,
        tenant: &str,
        index: u64,
        timeout: Duration,
    ) -> Result<bool> {
        self.group.wait_searchable(tenant, index, timeout).await
    }

    /// Commits every running tenant index, making everything acknowledged so far searchable.
    pub async fn flush(&self) -> Result<()> {
        self.group.flush().await
    }

    /// Drops the Raft log below what every tenant index has committed. Returns the log's new
    /// first index.
    pub async fn compact_log(&self) -> Result<u64> {
        self.group.compact_log().await
    }

    /// The Raft log's first index (everything below was compacted).
    pub fn log_first_index(&self) -> u64 {
        self.group.log_first_index()
    }

    /// The Raft group's state.
    pub fn raft_status(&self) -> RaftStatus {
        self.group.raft.status()
    }

    /// How this node keeps its tenant indexes, now.
    pub fn indexes_status(&self) -> IndexesStatus {
        self.group.indexes_status()
    }

    /// Membership, leadership and replication progress, as this node sees them.
    pub fn cluster_status(&self) -> Result<ClusterStatus> {
        Ok(ClusterStatus {
            node_id: self.group.raft.status().id,
            raft_addr: self.raft_addr,
            peers: self
                .transport
                .as_ref()
                .map(|t| t.peers())
                .unwrap_or_default(),
            raft: self.group.raft.status(),
            log_first_index: self.log_first_index(),
            tenants: self.tenant_names()?,
            indexes: self.indexes_status(),
        })
    }

    /// Makes node `id` (listening for Raft at `raft_addr`) a member: once this is committed,
    /// every node connects to it and the leader adds it to the group, as a learner until it
    /// has caught up, then as a voter. With `replaces`, that member leaves in the same joint
    /// change that makes this one a voter. Returns every member's id and Raft address, for the
    /// newcomer to connect to.
    pub async fn add_member(
        &self,
        id: u64,
        raft_addr: SocketAddr,
        replaces: Option<u64>,
    ) -> Result<Vec<(u64, String)>> {
        let status = self.group.raft.status();
        let known = self.group.metadata.members()?;
        if id == 0 {
            return Err(Error::InvalidMember("node ids start at 1".into()));
        }
        if let Some(old) = replaces {
            if old == id {
                return Err(Error::InvalidMember(format!(
                    "node {id} cannot replace itself"
                )));
            }
            if !status.voters.contains(&old) || known.iter().any(|m| m.id == old && m.removed) {
                return Err(Error::InvalidMember(format!(
                    "node {old} is not a voter, so there is nothing to replace"
                )));
            }
        }
        let current = status.voters.contains(&id) || status.learners.contains(&id);
        let listed = known.iter().any(|m| m.id == id && !m.removed);
        if current && !listed {
            return Err(Error::InvalidMember(format!(
                "node {id} is already a member"
            )));
        }
        if known.iter().any(|m| m.id == id && m.removed) {
            return Err(Error::InvalidMember(format!(
                "node {id} was removed; a returning node needs a new id"
            )));
        }
        let kind = CommandKind::AddMember(AddMember {
            id,
            raft_addr: raft_addr.to_string(),
            replaces: replaces.unwrap_or(0),
        });
        self.propose(kind).await?;
        Ok(self.member_addresses(Some((id, raft_addr.to_string()))))
    }

    /// Records the address of a member that is in the group already (the bootstrap voters),
    /// so that nodes joining later learn it from the metadata.
    pub async fn record_member(&self, id: u64, raft_addr: SocketAddr) -> Result<()> {
        let kind = CommandKind::AddMember(AddMember {
            id,
            raft_addr: raft_addr.to_string(),
            replaces: 0,
        });
        self.propose(kind).await.map(|_| ())
    }

    /// Takes node `id` out of the cluster (the leader removes it from the group; a leader
    /// being removed hands leadership over first).
    pub async fn remove_member(&self, id: u64) -> Result<()> {
        let status = self.group.raft.status();
        if !status.voters.contains(&id) && !status.learners.contains(&id) {
            return Err(Error::InvalidMember(format!("node {id} is not a member")));
        }
        if status.voters.len() <= 1 && status.voters.contains(&id) {
            return Err(Error::InvalidMember(
                "the last voter cannot be removed".into(),
            ));
        }
        let kind = CommandKind::RemoveMember(RemoveMember { id });
        self.propose(kind).await.map(|_| ())
    }

    /// Every node this node can reach, itself included, with `extra` added: id and Raft address.
    /// The addresses recorded in the metadata win: they are the ones members announced and
    /// dial (a node's listen address may sit behind a proxy or NAT).
    fn member_addresses(&self, extra: Option<(u64, String)>) -> Vec<(u64, String)> {
        let records = self.group.metadata.members().unwrap_or_default();
        let status = self.group.raft.status();
        // A removed member still in the group (its removal, or its replacement, is not done
        // yet) still votes and may even lead: a newcomer that cannot reach it may never hear
        // back from its leader.
        let in_group = |id: u64| status.voters.contains(&id) || status.learners.contains(&id);
        let removed: Vec<u64> = records
            .iter()
            .filter(|m| m.removed && !in_group(m.id))
            .map(|m| m.id)
            .collect();
        let mut out: Vec<(u64, String)> = records
            .into_iter()
            .filter(|m| !removed.contains(&m.id))
            .map(|m| (m.id, m.raft_addr))
            .collect();
        let mut add = |id: u64, addr: String| {
            if !removed.contains(&id) && !out.iter().any(|(other, _)| *other == id) {
                out.push((id, addr));
            }
        };
        if let Some(transport) = &self.transport {
            for peer in transport.peers() {
                add(peer.id, peer.addr.to_string());
            }
        }
        if let Some(addr) = self.raft_addr {
            add(status.id, addr.to_string());
        }
        if let Some((id, addr)) = extra {
            out.retain(|(other, _)| *other != id);
            out.push((id, addr));
        }
        out.sort_unstable();
        out
    }

    /// Whether the node can take writes now.
    pub fn is_writable(&self) -> bool {
        self.group.is_writable()
    }

    /// Bytes of committed events waiting to be indexed.
    pub fn indexing_backlog_bytes(&self) -> u64 {
        self.group.indexing_backlog_bytes()
    }

    /// A tenant's actor status, if its supervisor runs.
    pub async fn tenant_status(&self, tenant: &str) -> Result<Option<TenantStatus>> {
        self.group.tenant_status(tenant).await
    }

    /// Test hook: make a tenant's indexer fail as a poisoned input would.
    #[doc(hidden)]
    pub fn crash_indexer(&self, tenant: &str) {
        self.group.crash_indexer(tenant);
    }

    /// Stops taking writes, commits every index, and stops the actors.
    pub async fn shutdown(&self) -> Result<()> {
        self.group.begin_shutdown();
        if let Some(transport) = &self.transport {
            transport.shutdown();
        }
        self.group.finish_shutdown().await
    }
}

/// Hands what the transport receives to the group it is for. A snapshot is fetched before
/// its Raft thread sees it (see [`SnapshotStore::prefetch`]).
async fn receive(
    mut inbound: tokio::sync::mpsc::Receiver<Inbound>,
    router: Arc<Router>,
    raft: RaftHandle<ApplyOutcome>,
    snapshots: Arc<SnapshotStore>,
    mirror: Option<Arc<Mirror>>,
) {
    while let Some(message) = inbound.recv().await {
        let message = match message {
            Inbound::Raft { group, message }
                if message.get_msg_type() == MessageType::MsgSnapshot =>
            {
                let router = router.clone();
                snapshots.prefetch(message, raft.clone(), move |message| {
                    router.route(Inbound::Raft { group, message });
                });
                continue;
            }
            message => message,
        };
        match router.route(message) {
            Some(Inbound::SnapshotPull { from, pull }) => {
                let snapshots = snapshots.clone();
                tokio::spawn(async move { snapshots.serve(from, pull).await });
            }
            Some(Inbound::SnapshotPiece(piece)) => snapshots.on_piece(piece),
            Some(Inbound::MirrorRequest { from, request }) => {
                if let Some(mirror) = &mirror {
                    let mirror = mirror.clone();
                    tokio::spawn(async move { mirror.serve(from, request).await });
                }
            }
            Some(Inbound::MirrorOffer(offer)) => {
                if let Some(mirror) = &mirror {
                    mirror.on_offer(offer);
                }
            }
            _ => {}
        }
    }
}
