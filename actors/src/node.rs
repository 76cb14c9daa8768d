//! [`Node`]: one Meniscus node's storage, consensus and actors, wired together.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use meniscus_consensus::transport::{Inbound, PeerSecurity, PeerStatus, Transport, TransportStats};
use meniscus_consensus::{RaftStatus, Router};
use meniscus_event::Event;
use meniscus_storage::{
    tokens, AddAdminToken, AddMember, ApplyOutcome, CommandKind, CreateShard, CreateTenant,
    Metadata, PlaceShard, Principal, RemoveMember, RotateToken, SearchRequest, SearchResponse,
    ShardRecord,
};
use raft::eraftpb::MessageType;
use time::OffsetDateTime;

use crate::group::{Group, GroupSpec};
use crate::membership::Wanted;
use crate::placement;
use crate::processing::Processing;
use crate::remote::{self, Remote};
use crate::tenant_supervisor::TenantStatus;
use crate::{Error, IndexerSettings, Result};

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
    /// How much of one event the tenants' pipelines may take (run time, size).
    pub pipeline_limits: meniscus_pipeline::Limits,
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
    /// How links to the other nodes are secured.
    pub security: PeerSecurity,
}

/// The default [`NodeOptions::max_indexing_backlog_bytes`].
pub const DEFAULT_MAX_INDEXING_BACKLOG_BYTES: u64 = 512 * 1024 * 1024;

impl NodeOptions {
    /// Defaults for a single node storing in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        NodeOptions {
            data_dir: data_dir.into(),
            node_id: 1,
            indexer: IndexerSettings::default(),
            max_indexing_backlog_bytes: DEFAULT_MAX_INDEXING_BACKLOG_BYTES,
            compact_interval: Duration::from_secs(30),
            cluster: None,
            max_raft_log_entries: 20_000,
            copy_follower_indexes: false,
            pipeline_limits: meniscus_pipeline::Limits::default(),
        }
    }
}

/// A running node: its Raft groups, and the transport they share in a cluster.
pub struct Node {
    /// The metadata group (0): tenants, tokens, members and shards, and the events of the
    /// tenants placed in no shard.
    pub(crate) meta: Arc<Group>,
    /// The tenants' pipelines, run on what this node receives.
    pub(crate) processing: Arc<Processing>,
    /// Every group this node runs, the metadata group included, by id.
    groups: Groups,
    /// Starts the shards this node should run as the metadata group records them; and its
    /// task.
    shards: Option<Arc<ShardKeeper>>,
    keeper: Option<tokio::task::JoinHandle<()>>,
    /// On the metadata leader, moves shard replicas as nodes join and leave.
    placer: Option<tokio::task::JoinHandle<()>>,
    transport: Option<Arc<Transport>>,
    /// Requests to other nodes for shards this one does not hold.
    remote: Option<Arc<Remote>>,
    raft_addr: Option<SocketAddr>,
    clustered: bool,
}

/// Where a tenant's events are served from.
enum Route {
    /// A group this node runs.
    Local(Arc<Group>),
    /// A shard this node holds no replica of.
    Remote(ShardRecord),
}

/// How [`Node::search_with`] searches.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchOptions {
    /// Wait until the writes up to this commit index (what a publish answered) are searchable.
    pub min_index: Option<u64>,
    /// How long to wait for them.
    pub wait: Duration,
    /// Answer from this node's replica only (fails where this node holds none).
    pub local_only: bool,
}

/// What [`Node::search_with`] found.
#[derive(Debug)]
pub enum SearchOutcome {
    /// A page of results.
    Found(SearchResponse),
    /// The writes up to `min_index` were not searchable within the wait.
    NotYetSearchable,
}

/// The groups a node runs, by id; shared with the tasks that route messages to them.
type Groups = Arc<RwLock<BTreeMap<u64, Arc<Group>>>>;

/// How often a node looks for shards the metadata group made that it does not run yet.
const SHARD_CHECK_EVERY: Duration = Duration::from_millis(200);

/// A group's state, for [`ClusterStatus`].
#[derive(Debug, Clone)]
pub struct GroupStatus {
    /// The Raft group id: 0 for the metadata group, else an event shard's.
    pub id: u64,
    /// Its Raft state as this node sees it.
    pub raft: RaftStatus,
    /// The first index still in this node's copy of its log.
    pub log_first_index: u64,
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
    /// Every group this node runs: the metadata group (0) first, then the event shards.
    pub groups: Vec<GroupStatus>,
    /// Every event shard the cluster has, whether this node runs it or not.
    pub shards: Vec<ShardPlacement>,
}

/// Where an event shard is, and what it carries.
#[derive(Debug, Clone)]
pub struct ShardPlacement {
    /// The shard's id (0: the metadata group, for tenants placed in no shard).
    pub id: u64,
    /// The nodes that hold a replica (`None`: every member).
    pub replicas: Option<Vec<u64>>,
    /// The tenants placed in it, in name order.
    pub tenants: Vec<String>,
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

/// The longest grace period a rotated-out token may get: ten years.
pub const MAX_TOKEN_GRACE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How far a node's applied index may trail its commit index while it counts as ready.
pub const READY_LAG: u64 = 100;

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
            let (bound, local) = Transport::bind(
                options.node_id,
                cluster.raft_addr,
                cluster.security.clone(),
                sender,
            )
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
        let metadata = Metadata::open(&db)?;
        let voters = match &options.cluster {
            None => vec![options.node_id],
            Some(cluster) if cluster.join => Vec::new(),
            Some(cluster) => cluster.members.iter().map(|(id, _)| *id).collect(),
        };
        let spec = GroupSpec {
            id: 0,
            dir: options.data_dir.clone(),
            db,
            metadata: metadata.clone(),
            members: Wanted::Cluster(metadata),
            voters,
        };
        let meta = Arc::new(Group::start(&options, spec, transport.clone()).await?);
        let groups: Groups = Arc::new(RwLock::new(BTreeMap::from([(0, meta.clone())])));
        let router = Arc::new(Router::new());
        router.add(0, meta.raft.clone());
        let mut keeper = None;
        let mut placer = None;
        let mut shards = None;
        let mut remote = None;
        if let (Some(inbound), Some(transport)) = (inbound, &transport) {
            let asking = Arc::new(Remote::new(options.node_id, transport.clone()));
            tokio::spawn(receive(
                inbound,
                router.clone(),
                groups.clone(),
                transport.clone(),
                asking.clone(),
            ));
            remote = Some(asking);
            let keeping = Arc::new(ShardKeeper {
                options: options.clone(),
                meta: meta.clone(),
                groups: groups.clone(),
                router,
                transport: transport.clone(),
                starting: tokio::sync::Mutex::new(HashMap::new()),
            });
            // Shards known now run before the node says it started; later ones as they come.
            keeping.start_missing().await;
            keeper = Some(tokio::spawn(keeping.clone().run()));
            placer = Some(tokio::spawn(place_shards(meta.clone())));
            shards = Some(keeping);
        }
        let processing = Arc::new(Processing::new(
            meta.metadata.clone(),
            options.pipeline_limits,
        ));
        Ok(Node {
            meta,
            processing,
            groups,
            shards,
            keeper,
            placer,
            transport,
            remote,
            raft_addr,
            clustered: options.cluster.is_some(),
        })
    }

    /// Where `tenant`'s events are served from: a group this node runs, or (for a shard this
    /// node holds no replica of) another node. A shard made a moment ago may not run here yet:
    /// it is started now rather than on the keeper's next round.
    async fn route(&self, tenant: &str) -> Result<Route> {
        let mut record = self.meta.metadata.tenant(tenant)?;
        if record.is_none() && self.clustered {
            // Made elsewhere a moment ago, maybe: catch up with the metadata group first.
            self.wait_read_index().await?;
            record = self.meta.metadata.tenant(tenant)?;
        }
        let shard = record.map_or(0, |t| t.shard);
        if shard == 0 {
            return Ok(Route::Local(self.meta.clone()));
        }
        if let Some(group) = self.group(shard) {
            return Ok(Route::Local(group));
        }
        let record = self
            .meta
            .metadata
            .shard(shard)?
            .ok_or_else(|| Error::Unavailable(format!("shard {shard} is not recorded yet")))?;
        if !record.is_on(self.meta.raft.status().id) {
            return Ok(Route::Remote(record));
        }
        if let Some(keeper) = &self.shards {
            keeper.start_missing().await;
        }
        self.group(shard).map(Route::Local).ok_or_else(|| {
            Error::Unavailable(format!(
                "shard {shard}, which holds tenant {tenant:?}, is not running on this node yet"
            ))
        })
    }

    /// The group that carries `tenant`'s events on this node.
    async fn group_of(&self, tenant: &str) -> Result<Arc<Group>> {
        match self.route(tenant).await? {
            Route::Local(group) => Ok(group),
            Route::Remote(shard) => Err(Error::Unavailable(no_replica_here(&shard, tenant))),
        }
    }

    fn remote(&self) -> Result<&Remote> {
        self.remote
            .as_deref()
            .ok_or_else(|| Error::Unavailable("a node alone holds every shard".into()))
    }

    fn group(&self, id: u64) -> Option<Arc<Group>> {
        self.groups
            .read()
            .expect("groups lock poisoned")
            .get(&id)
            .cloned()
    }

    fn all_groups(&self) -> Vec<Arc<Group>> {
        self.groups
            .read()
            .expect("groups lock poisoned")
            .values()
            .cloned()
            .collect()
    }

    async fn propose(&self, kind: CommandKind) -> Result<(u64, ApplyOutcome)> {
        self.meta.propose(kind).await
    }

    /// Refuses (as [`Error::Overloaded`]) what a publish for `tenant` would refuse for
    /// back-pressure, so a caller can say so before it parses or shapes a batch. A publish
    /// checks again.
    pub async fn admit(&self, tenant: &str) -> Result<()> {
        self.admitted_route(tenant).await.map(drop)
    }

    /// Where `tenant`'s events go, once back-pressure there lets them in (a remote group
    /// answers for itself).
    async fn admitted_route(&self, tenant: &str) -> Result<Route> {
        let route = self.route(tenant).await?;
        if let Route::Local(group) = &route {
            group.check_backlog()?;
        }
        Ok(route)
    }

    /// Runs `tenant`'s pipelines on `events` and appends what they leave to the tenant's
    /// store. Returns the Raft index, in the group that carries the tenant's events, once it is
    /// committed (fsync'd); 0 when the pipelines dropped every event (nothing to store).
    pub async fn publish(&self, tenant: &str, events: &[Event]) -> Result<u64> {
        // A batch that would be refused for back-pressure is refused before its pipelines run:
        // under overload, retried batches would otherwise pay for their programs every time.
        let route = self.admitted_route(tenant).await?;
        let processed = self.processing.process(tenant, events).await?;
        let events = processed.as_deref().unwrap_or(events);
        if events.is_empty() {
            return Ok(0);
        }
        match route {
            Route::Local(group) => group.publish(tenant, events).await,
            Route::Remote(shard) => {
                let batch = meniscus_event::wire::encode_batch(events);
                self.remote()?.publish(&shard, tenant, batch).await
            }
        }
    }

    /// Creates a tenant. Returns its first token, or `None` if the tenant exists.
    pub async fn create_tenant(&self, name: &str) -> Result<Option<String>> {
        let token = tokens::generate();
        let created = self.create_tenant_with_token(name, &token).await?;
        Ok(created.then_some(token))
    }

    /// Creates a tenant whose first token is `token`, in the event shard with the fewest
    /// tenants (in the metadata group while there are no shards). Returns false if the tenant
    /// exists.
    pub async fn create_tenant_with_token(&self, name: &str, token: &str) -> Result<bool> {
        meniscus_storage::validate_tenant_name(name)?;
        let kind = CommandKind::CreateTenant(CreateTenant {
            name: name.to_owned(),
            token_hash: tokens::hash(token),
            created_at_nanos: now_nanos(),
            shard: self.least_used_shard()?,
        });
        Ok(!matches!(
            self.propose(kind).await?,
            (_, ApplyOutcome::TenantExists)
        ))
    }

    /// The shard with the fewest tenants, the lowest id on a tie; 0 when there are none.
    fn least_used_shard(&self) -> Result<u64> {
        let placed = self.tenants_by_shard()?;
        let tenants: BTreeMap<u64, usize> = self
            .meta
            .metadata
            .shards()?
            .into_iter()
            .map(|shard| (shard.id, placed.get(&shard.id).map_or(0, Vec::len)))
            .collect();
        Ok(placement::shard_for_new_tenant(&tenants).unwrap_or(0))
    }

    /// The ids of the event shards the metadata group records.
    pub fn shard_ids(&self) -> Result<Vec<u64>> {
        Ok(self
            .meta
            .metadata
            .shards()?
            .into_iter()
            .map(|s| s.id)
            .collect())
    }

    /// Makes sure event shards 1 to `count` exist, each a Raft group of its own. A missing one
    /// is placed on `factor` of `members` (0: on every member, now and as members come and
    /// go), balanced over them, and bootstrapped there. Tenants created from then on are spread
    /// over the shards. Repeating it (a bootstrap that stopped half way) makes nothing twice.
    pub async fn ensure_shards(&self, count: u64, members: &[u64], factor: u64) -> Result<()> {
        let existing = self.meta.metadata.shards()?;
        let ids: Vec<u64> = (1..=count).collect();
        let current = assignment(&existing);
        let nodes: BTreeSet<u64> = members.iter().copied().collect();
        let planned = placement::plan(&nodes, &ids, factor as usize, &current);
        for id in ids {
            if existing.iter().any(|s| s.id == id) {
                continue;
            }
            let replicas = match factor {
                0 => members.to_vec(),
                _ => planned[&id].iter().copied().collect(),
            };
            let kind = CommandKind::CreateShard(CreateShard {
                id,
                replicas,
                factor,
            });
            self.propose(kind).await?;
        }
        Ok(())
    }

    /// Gives a tenant a new token; its previous tokens keep working for `grace`.
    pub async fn rotate_token(
        &self,
        tenant: &str,
        grace: Duration,
    ) -> Result<(String, OffsetDateTime)> {
        if grace > MAX_TOKEN_GRACE {
            return Err(Error::InvalidArgument(format!(
                "grace_seconds may be at most {} (ten years)",
                MAX_TOKEN_GRACE.as_secs()
            )));
        }
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
        Ok(self.meta.metadata.has_admin()?)
    }

    /// Every tenant's name.
    pub fn tenant_names(&self) -> Result<Vec<String>> {
        Ok(self
            .meta
            .metadata
            .tenants()?
            .into_iter()
            .map(|t| t.name)
            .collect())
    }

    /// Whether a tenant exists.
    pub fn tenant_exists(&self, name: &str) -> Result<bool> {
        Ok(self.meta.metadata.tenant_exists(name)?)
    }

    /// Who a bearer token speaks for, by this node's metadata as applied so far. A follower
    /// that lags may not know of a change acknowledged elsewhere: see
    /// [`Node::authenticate_linearizable`].
    pub fn authenticate(&self, token: &str) -> Result<Option<Principal>> {
        Ok(self.meta.metadata.authenticate(token, now_nanos())?)
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
            match self.meta.raft.read_index().await {
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
        match self
            .search_with(tenant, request, SearchOptions::default())
            .await?
        {
            SearchOutcome::Found(response) => Ok(response),
            SearchOutcome::NotYetSearchable => Err(Error::Unavailable(
                "not searchable yet, though nothing was waited for".into(),
            )),
        }
    }

    /// Searches a tenant's committed events as `options` say: on this node's replica, or on a
    /// node that holds one.
    pub async fn search_with(
        &self,
        tenant: &str,
        request: SearchRequest,
        options: SearchOptions,
    ) -> Result<SearchOutcome> {
        let group = match self.route(tenant).await? {
            Route::Local(group) => group,
            Route::Remote(shard) if !options.local_only => {
                let index = options.min_index.unwrap_or(0);
                return self
                    .remote()?
                    .search(&shard, tenant, &request, index, options.wait)
                    .await;
            }
            Route::Remote(shard) => {
                return Err(Error::Unavailable(format!(
                    "read=local: {}",
                    no_replica_here(&shard, tenant)
                )))
            }
        };
        group
            .search_when_searchable(tenant, request, options.min_index, options.wait)
            .await
    }

    /// Commits every running tenant index, making everything acknowledged so far searchable.
    pub async fn flush(&self) -> Result<()> {
        for group in self.all_groups() {
            group.flush().await?;
        }
        Ok(())
    }

    /// Drops each group's Raft log below what every tenant index has committed. Returns the
    /// metadata group's new first index.
    pub async fn compact_log(&self) -> Result<u64> {
        for group in self.all_groups() {
            if group.id != 0 {
                group.compact_log().await?;
            }
        }
        self.meta.compact_log().await
    }

    /// The Raft log's first index (everything below was compacted).
    pub fn log_first_index(&self) -> u64 {
        self.meta.log_first_index()
    }

    /// The Raft group's state.
    pub fn raft_status(&self) -> RaftStatus {
        self.meta.raft.status()
    }

    /// How this node keeps its tenant indexes, now.
    pub fn indexes_status(&self) -> IndexesStatus {
        self.meta.indexes_status()
    }

    /// Every group this node runs, the metadata group (0) first.
    pub fn group_statuses(&self) -> Vec<GroupStatus> {
        self.all_groups()
            .iter()
            .map(|group| group.status())
            .collect()
    }

    /// Tenant names by the shard they are placed in (0: the metadata group), in name order.
    fn tenants_by_shard(&self) -> Result<BTreeMap<u64, Vec<String>>> {
        let mut placed: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for tenant in self.meta.metadata.tenants()? {
            placed.entry(tenant.shard).or_default().push(tenant.name);
        }
        Ok(placed)
    }

    /// Every shard and where it is, with the metadata group (for unplaced tenants) first.
    fn placement(&self) -> Result<Vec<ShardPlacement>> {
        let mut placed = self.tenants_by_shard()?;
        let mut out = vec![ShardPlacement {
            id: 0,
            replicas: None,
            tenants: placed.remove(&0).unwrap_or_default(),
        }];
        for shard in self.meta.metadata.shards()? {
            out.push(ShardPlacement {
                id: shard.id,
                replicas: (shard.factor > 0).then_some(shard.replicas),
                tenants: placed.remove(&shard.id).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Membership, leadership and replication progress, as this node sees them.
    pub fn cluster_status(&self) -> Result<ClusterStatus> {
        Ok(ClusterStatus {
            node_id: self.meta.raft.status().id,
            raft_addr: self.raft_addr,
            peers: self
                .transport
                .as_ref()
                .map(|t| t.peers())
                .unwrap_or_default(),
            raft: self.meta.raft.status(),
            log_first_index: self.log_first_index(),
            tenants: self.tenant_names()?,
            indexes: self.indexes_status(),
            groups: self.group_statuses(),
            shards: self.placement()?,
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
        let status = self.meta.raft.status();
        let known = self.meta.metadata.members()?;
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
        let status = self.meta.raft.status();
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
        let records = self.meta.metadata.members().unwrap_or_default();
        let status = self.meta.raft.status();
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

    /// What the peer transport refused or dropped (`None` for a node alone).
    pub fn peer_link_stats(&self) -> Option<&TransportStats> {
        self.transport.as_deref().map(Transport::stats)
    }

    /// Whether this node can take writes and searches now (readiness): its metadata group
    /// runs, knows a leader (this node or another, which it forwards to), and has applied
    /// its log to within [`READY_LAG`] entries of the commit index; and it was not removed
    /// from the cluster. `Err` says why not.
    pub fn readiness(&self) -> std::result::Result<(), String> {
        let raft = self.meta.raft.status();
        if !raft.running {
            return Err("the metadata group's Raft thread has stopped".into());
        }
        if let Some(id) = self.removed_from_cluster() {
            return Err(format!("node {id} was removed from the cluster"));
        }
        if raft.leader == 0 {
            return Err(
                "no leader of the metadata group is known (an election is under way, or this node cannot reach a majority)"
                    .into(),
            );
        }
        if raft.commit > raft.applied + READY_LAG {
            return Err(format!(
                "applying the log: {} of {} committed entries applied",
                raft.applied, raft.commit
            ));
        }
        Ok(())
    }

    /// This node's id, if the cluster removed it (`cluster remove`).
    pub fn removed_from_cluster(&self) -> Option<u64> {
        if !self.clustered {
            return None;
        }
        let id = self.meta.raft.status().id;
        let members = self.meta.metadata.members().ok()?;
        members
            .iter()
            .any(|m| m.id == id && m.removed)
            .then_some(id)
    }

    /// Whether the node leads the metadata group (takes writes without forwarding them).
    pub fn is_writable(&self) -> bool {
        self.meta.is_writable()
    }

    /// Bytes of applied events not yet committed to their index.
    pub fn indexing_backlog_bytes(&self) -> u64 {
        self.all_groups()
            .iter()
            .map(|g| g.indexing_backlog_bytes())
            .sum()
    }

    /// A tenant's actor status, if its supervisor runs.
    pub async fn tenant_status(&self, tenant: &str) -> Result<Option<TenantStatus>> {
        self.group_of(tenant).await?.tenant_status(tenant).await
    }

    /// Test hook: proposes `data` to the metadata group as it is, unchecked, as a bug or a
    /// version skew could; returns what the proposal came to.
    #[doc(hidden)]
    pub async fn propose_unchecked(&self, data: Vec<u8>) -> Result<u64> {
        Ok(self.meta.raft.propose(data).await?.index)
    }

    /// Test hook: make a tenant's indexer fail as a poisoned input would.
    #[doc(hidden)]
    pub fn crash_indexer(&self, tenant: &str) {
        let shard = self
            .meta
            .metadata
            .tenant(tenant)
            .ok()
            .flatten()
            .map_or(0, |t| t.shard);
        if let Some(group) = self.group(shard) {
            group.crash_indexer(tenant);
        }
    }

    /// Stops taking writes, commits every index, and stops the actors.
    pub async fn shutdown(&self) -> Result<()> {
        for task in self.keeper.iter().chain(&self.placer) {
            task.abort();
        }
        let groups = self.all_groups();
        for group in &groups {
            group.begin_shutdown();
        }
        if let Some(transport) = &self.transport {
            transport.shutdown();
        }
        for group in &groups {
            group.finish_shutdown().await?;
        }
        Ok(())
    }
}

/// Hands what the transport receives to the group it is for. A snapshot is fetched before
/// its Raft thread sees it (see [`crate::SnapshotStore::prefetch`]). What names a group this node does
/// not run is dropped: its sender tries again, and the group may be running by then.
async fn receive(
    mut inbound: tokio::sync::mpsc::Receiver<Inbound>,
    router: Arc<Router>,
    groups: Groups,
    transport: Arc<Transport>,
    remote: Arc<Remote>,
) {
    let group = |id: u64| {
        groups
            .read()
            .expect("groups lock poisoned")
            .get(&id)
            .cloned()
    };
    while let Some(message) = inbound.recv().await {
        let message = match message {
            Inbound::Raft { group: id, message }
                if message.get_msg_type() == MessageType::MsgSnapshot =>
            {
                if let Some(snapshots) = group(id).and_then(|g| g.snapshots.clone()) {
                    let router = router.clone();
                    let raft = group(id).expect("just found").raft.clone();
                    snapshots.prefetch(message, raft, move |message| {
                        router.route(Inbound::Raft { group: id, message });
                    });
                }
                continue;
            }
            message => message,
        };
        match router.route(message) {
            Some(Inbound::SnapshotPull {
                group: id,
                from,
                pull,
            }) => {
                if let Some(snapshots) = group(id).and_then(|g| g.snapshots.clone()) {
                    tokio::spawn(async move { snapshots.serve(from, pull).await });
                }
            }
            Some(Inbound::SnapshotPiece { group: id, piece }) => {
                if let Some(snapshots) = group(id).and_then(|g| g.snapshots.clone()) {
                    snapshots.on_piece(piece);
                }
            }
            Some(Inbound::MirrorRequest {
                group: id,
                from,
                request,
            }) => {
                if let Some(mirror) = group(id).and_then(|g| g.mirror.clone()) {
                    tokio::spawn(async move { mirror.serve(from, request).await });
                }
            }
            Some(Inbound::MirrorOffer { group: id, offer }) => {
                if let Some(mirror) = group(id).and_then(|g| g.mirror.clone()) {
                    mirror.on_offer(offer);
                }
            }
            Some(Inbound::ShardRequest {
                group: id,
                from,
                request,
            }) => {
                let served = remote::serve(group(id), transport.clone(), from, id, request);
                tokio::spawn(served);
            }
            Some(Inbound::ShardReply(reply)) => remote.on_reply(reply),
            _ => {}
        }
    }
}

/// Starts the event shards the metadata group records that this node should hold: every shard
/// placed on every member, and those placed on this node. A node among the replicas a shard
/// was made with bootstraps its group with them; any other waits for the shard's leader to add
/// it, as a node joining the cluster does.
struct ShardKeeper {
    options: NodeOptions,
    meta: Arc<Group>,
    groups: Groups,
    router: Arc<Router>,
    transport: Arc<Transport>,
    /// Held while shards start or stop: one at a time per shard. With it, since when each
    /// shard this node runs has been placed elsewhere.
    starting: tokio::sync::Mutex<HashMap<u64, std::time::Instant>>,
}

/// How long a node keeps running a shard placed elsewhere: time for the shard's leader to move
/// the replica (add the new one, let it catch up, remove this one), which this node may never
/// hear of once it is out of the group.
const PLACED_ELSEWHERE_GRACE: Duration = Duration::from_secs(60);

impl ShardKeeper {
    async fn run(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SHARD_CHECK_EVERY).await;
            self.start_missing().await;
            self.forget_removed_members();
        }
    }

    /// Stops talking to members that were removed and have left every group this node runs:
    /// nothing is sent to them, and their certificates no longer open a connection.
    fn forget_removed_members(&self) {
        let Ok(members) = self.meta.metadata.members() else {
            return;
        };
        let me = self.options.node_id;
        let groups: Vec<Arc<Group>> = self
            .groups
            .read()
            .expect("groups lock poisoned")
            .values()
            .cloned()
            .collect();
        let peers = self.transport.peers();
        for member in members.iter().filter(|m| m.removed && m.id != me) {
            let known = peers.iter().any(|p| p.id == member.id);
            let in_a_group = groups.iter().any(|g| {
                let status = g.raft.status();
                status.voters.contains(&member.id) || status.learners.contains(&member.id)
            });
            if known && !in_a_group {
                tracing::info!(
                    node = member.id,
                    "a removed member left every group: no longer a peer"
                );
                self.transport.remove_peer(member.id);
            }
        }
    }

    async fn start_missing(&self) {
        let mut placed_elsewhere = self.starting.lock().await;
        let shards = match self.meta.metadata.shards() {
            Ok(shards) => shards,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the shards");
                return;
            }
        };
        self.stop_moved(&shards, &mut placed_elsewhere).await;
        for shard in shards {
            let running = self
                .groups
                .read()
                .expect("groups lock poisoned")
                .contains_key(&shard.id);
            if running || !shard.is_on(self.options.node_id) {
                continue;
            }
            match self.start(&shard).await {
                Ok(group) => {
                    self.router.add(shard.id, group.raft.clone());
                    self.groups
                        .write()
                        .expect("groups lock poisoned")
                        .insert(shard.id, group);
                    tracing::info!(shard = shard.id, "started an event shard");
                }
                Err(e) => {
                    tracing::warn!(shard = shard.id, error = %e, "cannot start an event shard; will retry")
                }
            }
        }
    }

    /// Stops, and removes the data of, each shard group this node runs that was placed
    /// elsewhere a while ago and that this node does not lead.
    async fn stop_moved(
        &self,
        shards: &[ShardRecord],
        placed_elsewhere: &mut HashMap<u64, std::time::Instant>,
    ) {
        let me = self.options.node_id;
        let running: Vec<Arc<Group>> = self
            .groups
            .read()
            .expect("groups lock poisoned")
            .values()
            .filter(|g| g.id != 0)
            .cloned()
            .collect();
        for group in running {
            let elsewhere = shards
                .iter()
                .find(|s| s.id == group.id)
                .is_some_and(|s| !s.is_on(me));
            if !elsewhere {
                placed_elsewhere.remove(&group.id);
                continue;
            }
            let since = *placed_elsewhere
                .entry(group.id)
                .or_insert_with(std::time::Instant::now);
            let status = group.raft.status();
            let out = !status.voters.contains(&me) && !status.learners.contains(&me);
            if status.leader == me || (!out && since.elapsed() < PLACED_ELSEWHERE_GRACE) {
                continue;
            }
            self.router.remove(group.id);
            self.groups
                .write()
                .expect("groups lock poisoned")
                .remove(&group.id);
            group.begin_shutdown();
            if let Err(e) = group.finish_shutdown().await {
                tracing::warn!(shard = group.id, error = %e, "stopping a moved shard");
            }
            placed_elsewhere.remove(&group.id);
            let dir = shard_dir(&self.options.data_dir, group.id);
            drop(group);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(shard = dir.display().to_string(), error = %e, "removing a moved shard's data");
            }
            tracing::info!(dir = %dir.display(), "stopped a shard placed on other nodes and removed its data");
        }
    }

    async fn start(&self, shard: &ShardRecord) -> Result<Arc<Group>> {
        let me = self.options.node_id;
        let dir = shard_dir(&self.options.data_dir, shard.id);
        std::fs::create_dir_all(&dir).map_err(meniscus_storage::Error::from)?;
        let db = sled::Config::new()
            .path(dir.join("raft"))
            .open()
            .map_err(meniscus_storage::Error::from)?;
        let spec = GroupSpec {
            id: shard.id,
            dir,
            metadata: Metadata::open_shard(&db, shard.id)?,
            db,
            members: match shard.factor {
                0 => Wanted::Cluster(self.meta.metadata.clone()),
                _ => Wanted::Shard {
                    metadata: self.meta.metadata.clone(),
                    id: shard.id,
                },
            },
            // The founders bootstrap it, all with the same first configuration; any other
            // node waits for the shard's leader to add it.
            voters: if shard.founders.contains(&me) {
                shard.founders.clone()
            } else {
                Vec::new()
            },
        };
        Ok(Arc::new(
            Group::start(&self.options, spec, Some(self.transport.clone())).await?,
        ))
    }
}

/// How often the metadata leader compares where shards are with where they should be.
const PLACE_EVERY: Duration = Duration::from_secs(1);

/// On the metadata group's leader: keeps every shard placed with a replication factor on that
/// many live members, balanced, moving as few replicas as it can (see [`placement::plan`]) —
/// onto a node that joins, off one that leaves. One shard moves per round; each shard's leader
/// then carries the move out (see [`Wanted`]).
async fn place_shards(meta: Arc<Group>) {
    loop {
        tokio::time::sleep(PLACE_EVERY).await;
        let status = meta.raft.status();
        if status.leader != status.id {
            continue;
        }
        let (Ok(members), Ok(shards)) = (meta.metadata.members(), meta.metadata.shards()) else {
            continue;
        };
        let nodes: BTreeSet<u64> = members
            .iter()
            .filter(|m| !m.removed)
            .map(|m| m.id)
            .collect();
        let placed: Vec<&ShardRecord> = shards.iter().filter(|s| s.factor > 0).collect();
        let Some(factor) = placed.first().map(|s| s.factor) else {
            continue;
        };
        if nodes.is_empty() {
            continue;
        }
        let ids: Vec<u64> = placed.iter().map(|s| s.id).collect();
        let current = assignment(placed.iter().copied());
        let target = placement::plan(&nodes, &ids, factor as usize, &current);
        let Some((id, replicas)) = target
            .iter()
            .find(|(id, wanted)| current.get(id) != Some(wanted))
        else {
            continue;
        };
        tracing::info!(shard = id, ?replicas, "moving a shard's replicas");
        let kind = CommandKind::PlaceShard(PlaceShard {
            id: *id,
            replicas: replicas.iter().copied().collect(),
        });
        if let Err(e) = meta.propose(kind).await {
            tracing::info!(error = %e, "could not place a shard; will retry");
        }
    }
}

/// Where `shards`' replicas are, as [`placement::plan`] reads it.
fn assignment<'a>(shards: impl IntoIterator<Item = &'a ShardRecord>) -> placement::Assignment {
    shards
        .into_iter()
        .map(|s| (s.id, s.replicas.iter().copied().collect()))
        .collect()
}

/// Why a node that holds no replica of `shard` cannot serve `tenant` from its own copy.
fn no_replica_here(shard: &ShardRecord, tenant: &str) -> String {
    format!(
        "this node holds no replica of shard {}, which holds tenant {tenant:?}; nodes {:?} do",
        shard.id, shard.replicas
    )
}

/// Where shard `id` keeps its state under a node's data directory.
fn shard_dir(data_dir: &Path, id: u64) -> PathBuf {
    data_dir.join("shards").join(id.to_string())
}
