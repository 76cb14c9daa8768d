//! [`Group`]: one Raft group on a node, with its log, its state machine, the tenant actors it
//! feeds, its snapshots, and the tasks that compact its log, reconcile its membership and copy
//! its leader's indexes. A [`crate::Node`] runs its groups over one transport.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meniscus_consensus::transport::Transport;
use meniscus_consensus::{RaftConfig, RaftHandle, RaftNode, RaftStatus, RaftThread};
use meniscus_event::Event;
use meniscus_storage::{
    AppendEvents, ApplyOutcome, Command, CommandKind, CompactLog, IndexStore, Metadata, RaftLog,
    SearchRequest, SearchResponse,
};
use ractor::{Actor, ActorRef};
use raft::Storage;

use crate::log_events;
use crate::membership::{self, Wanted};
use crate::mirror::Mirror;
use crate::node::{GroupStatus, IndexesStatus, NodeOptions, SearchOutcome};
use crate::snapshot::SnapshotSourceRef;
use crate::tenant_supervisor::TenantStatus;
use crate::{
    Applier, DispatchProgress, Error, NodeContext, NodeMsg, NodeSupervisor, Result, SnapshotStore,
    TenantMsg,
};

/// Which Raft group to start, and where it keeps its state.
pub(crate) struct GroupSpec {
    /// The Raft group id: 0 for the metadata group, else the event shard's id.
    pub(crate) id: u64,
    /// Where its Raft log, tenant indexes and snapshots live.
    pub(crate) dir: PathBuf,
    /// Where its Raft state and state machine live.
    pub(crate) db: sled::Db,
    /// Its state machine's store.
    pub(crate) metadata: Metadata,
    /// Who should be in the group.
    pub(crate) members: Wanted,
    /// Voters a fresh group starts with; empty to wait until its leader adds this node.
    pub(crate) voters: Vec<u64>,
}

/// A running Raft group and everything that hangs off it on this node.
pub(crate) struct Group {
    /// The Raft group id.
    pub(crate) id: u64,
    pub(crate) metadata: Metadata,
    pub(crate) raft: RaftHandle<ApplyOutcome>,
    raft_thread: Mutex<Option<RaftThread>>,
    supervisor: ActorRef<NodeMsg>,
    ctx: Arc<NodeContext>,
    max_backlog: u64,
    compactor: tokio::task::JoinHandle<()>,
    reconciler: Option<tokio::task::JoinHandle<()>>,
    /// Index copying, when followers copy the leader's indexes; and its task.
    pub(crate) mirror: Option<Arc<Mirror>>,
    mirror_task: Option<tokio::task::JoinHandle<()>>,
    /// Snapshots, in a cluster.
    pub(crate) snapshots: Option<Arc<SnapshotStore>>,
    dispatch: Arc<AtomicBool>,
    db: sled::Db,
    clustered: bool,
    max_log_entries: u64,
}

/// Drops the Raft log below what every tenant index has committed, so disk use stays bounded.
/// Returns the log's new first index.
///
/// A tenant constrains compaction only while it has entries its index has not committed (its
/// last entry in this process is above its commit point); tenants that were behind at start are
/// recorded as such in [`Group::start`].
///
/// In a cluster, the log is also kept from what the leader last allowed (a `CompactLog` entry:
/// below what every member has stored), so a lagging or restarting member can still catch up
/// from any node's log.
async fn compact_log(
    metadata: &Metadata,
    ctx: &NodeContext,
    clustered: bool,
    snapshot_hold: u64,
) -> Result<u64> {
    let watermark = ctx.progress.watermark();
    let mut keep_from = watermark.min(metadata.applied_index()?).min(snapshot_hold);
    if clustered {
        keep_from = keep_from.min(metadata.compact_allowed()?);
    }
    if let Some(committed) = lagging_index_commit(metadata, ctx)? {
        keep_from = keep_from.min(committed + 1);
    }
    let log = ctx.log.clone();
    tokio::task::spawn_blocking(move || {
        if keep_from > log.first_index()? {
            log.compact(keep_from)?;
        }
        log.first_index()
    })
    .await
    .map_err(|e| Error::Actor(format!("compaction task failed: {e}")))?
    .map_err(|e| Error::Storage(meniscus_storage::Error::Raft(e)))
}

/// The lowest commit point of the tenant indexes that lack some of their applied entries
/// (`None`: none lacks any).
pub(crate) fn lagging_index_commit(metadata: &Metadata, ctx: &NodeContext) -> Result<Option<u64>> {
    let mut lowest = None;
    for tenant in metadata.tenants_here()? {
        let last = ctx.progress.last_entry_of(&tenant.name);
        if last == 0 {
            continue;
        }
        let committed = ctx.indexes.get(&tenant.name)?.committed_raft_index()?;
        if committed < last {
            lowest = Some(lowest.map_or(committed, |l: u64| l.min(committed)));
        }
    }
    Ok(lowest)
}

/// How many times `--max-raft-log-entries` the log may grow while a member fetches a snapshot.
const SNAPSHOT_PATIENCE: u64 = 4;

/// The lowest log index every member that counts has stored (or is being sent by snapshot).
///
/// A member that is down holds compaction back, so it can catch up from the log when it
/// returns, until the log holds more than `max_entries`: then only members that answered
/// lately count, and one that returns later gets a snapshot instead. A member busy fetching a
/// snapshot does not answer while it installs it, yet it needs the log from the snapshot on:
/// compacting past that would send it another snapshot as soon as it has installed this one,
/// over and over while writes go on. So it counts until the log holds `SNAPSHOT_PATIENCE`
/// times `max_entries`.
fn stored_everywhere(status: &RaftStatus, first_index: u64, max_entries: u64) -> u64 {
    let length = status.commit.saturating_sub(first_index);
    let too_long = length > max_entries;
    let far_too_long = length > max_entries.saturating_mul(SNAPSHOT_PATIENCE);
    status
        .replicas
        .iter()
        .filter(|r| r.recent_active || !too_long || (r.pending_snapshot > 0 && !far_too_long))
        .map(|r| r.matched.max(r.pending_snapshot))
        .min()
        .unwrap_or(0)
}

/// Where this node's own log must start while it sends snapshots: right after the oldest one
/// a member is still fetching (`u64::MAX`: anywhere). Compaction may have been allowed past it
/// before the member asked; the member needs the entries after its snapshot from this node,
/// the leader, once it has installed it. Bounded like [`stored_everywhere`].
fn snapshot_hold(status: &RaftStatus, first_index: u64, max_entries: u64) -> u64 {
    let length = status.commit.saturating_sub(first_index);
    if status.leader != status.id || length > max_entries.saturating_mul(SNAPSHOT_PATIENCE) {
        return u64::MAX;
    }
    status
        .replicas
        .iter()
        .filter(|r| r.pending_snapshot > 0)
        .map(|r| r.pending_snapshot + 1)
        .min()
        .unwrap_or(u64::MAX)
}

/// On the leader: proposes a `CompactLog` entry for [`stored_everywhere`], when that moved.
async fn allow_compaction(
    metadata: &Metadata,
    raft: &RaftHandle<ApplyOutcome>,
    log: &RaftLog,
    max_entries: u64,
) {
    let status = raft.status();
    if status.leader != status.id || status.replicas.is_empty() {
        return;
    }
    let first = log.first_index().unwrap_or(0);
    let below = stored_everywhere(&status, first, max_entries).min(status.applied) + 1;
    if below <= metadata.compact_allowed().unwrap_or(u64::MAX) {
        return;
    }
    let command = Command::new(CommandKind::CompactLog(CompactLog { below }));
    if let Err(e) = raft.propose(command.to_bytes()).await {
        tracing::debug!(error = %e, "could not propose log compaction; will retry");
    }
}

/// How long a proposal waits for a leader to be known.
const LEADER_PATIENCE: Duration = Duration::from_secs(5);

/// How often a search waiting for its writes looks again without being woken by a commit.
const SEARCHABLE_RECHECK: Duration = Duration::from_millis(50);

impl Group {
    /// Opens the group's state in `db` and the data directory, replays what the indexes miss,
    /// and starts the Raft group; in a cluster, it talks to its peers through `transport`.
    pub(crate) async fn start(
        options: &NodeOptions,
        spec: GroupSpec,
        transport: Option<Arc<Transport>>,
    ) -> Result<Group> {
        let GroupSpec {
            id,
            dir,
            db,
            metadata,
            members,
            voters,
        } = spec;
        let log =
            RaftLog::open(&db, &dir.join("raft-log"), id).map_err(meniscus_storage::Error::from)?;
        let commit = log
            .initial_state()
            .map_err(meniscus_storage::Error::from)?
            .hard_state
            .commit;
        let progress = Arc::new(DispatchProgress::new(commit));
        let ctx = Arc::new(NodeContext {
            indexes: IndexStore::open(&dir.join("indexes"))?,
            log: log.clone(),
            progress: progress.clone(),
            settings: options.indexer.clone(),
            searchable_changed: tokio::sync::Notify::new(),
        });
        let (supervisor, _) = Actor::spawn(None, NodeSupervisor, ctx.clone())
            .await
            .map_err(|e| Error::Actor(e.to_string()))?;
        let copying = options.cluster.is_some() && options.copy_follower_indexes;
        // Indexes that are behind the log catch up now rather than on their next event; until
        // they have, the log above their commit point must stay (see `compact_log`). A node
        // that copies indexes does so only once it leads.
        let mut lagging = Vec::new();
        for tenant in metadata.tenants_here()? {
            let committed = ctx.indexes.get(&tenant.name)?.committed_raft_index()?;
            if committed < commit {
                lagging.push((tenant.name, committed));
            }
        }
        if copying {
            for (tenant, _) in &lagging {
                ctx.progress.record(tenant, commit);
            }
        } else {
            log_events::seed_tails(&ctx, &lagging, commit)?;
            for (tenant, _) in lagging {
                let _ = supervisor.cast(NodeMsg::Start(tenant));
            }
        }
        let dispatch = Arc::new(AtomicBool::new(!copying));
        let mut applier = Applier::new(metadata.clone(), supervisor.clone(), progress)
            .with_dispatch(dispatch.clone());
        let applied = metadata.applied_index()?;
        let mut raft_config = RaftConfig::single(options.node_id);
        raft_config.initial_voters = voters;
        let mut snapshot_store = None;
        if let (Some(cluster), Some(transport)) = (&options.cluster, &transport) {
            raft_config.tick_interval = cluster.tick_interval;
            // Members added at run time; their records win over the flags. A removed member
            // that is still in the group (its removal, or its replacement, is not done yet)
            // still votes, so it is dialled too.
            let conf = log
                .initial_state()
                .map_err(meniscus_storage::Error::from)?
                .conf_state;
            let in_group = |id: u64| conf.voters.contains(&id) || conf.learners.contains(&id);
            for member in members.metadata().members()? {
                match member.raft_addr.parse() {
                    Ok(addr)
                        if member.id != options.node_id
                            && (!member.removed || in_group(member.id)) =>
                    {
                        transport.set_peer(member.id, addr)
                    }
                    _ => {}
                }
            }
            let snapshots = SnapshotStore::new(
                options.node_id,
                id,
                dir.join("snapshots"),
                metadata.clone(),
                ctx.clone(),
                supervisor.clone(),
                transport.clone(),
            )
            .map_err(meniscus_storage::Error::from)?;
            log.set_snapshot_source(Arc::new(SnapshotSourceRef(Arc::downgrade(&snapshots))));
            applier = applier
                .with_snapshots(snapshots.clone())
                .with_transport(options.node_id, transport.clone());
            snapshot_store = Some(snapshots);
        }
        let (raft, raft_thread) =
            RaftNode::start(raft_config, log, applied, applier, transport.clone())?;
        let mut mirror_task = None;
        let mut mirror = None;
        if let (Some(transport), Some(snapshots), true) = (&transport, &snapshot_store, copying) {
            let copier = Mirror::new(
                options.node_id,
                ctx.clone(),
                metadata.clone(),
                raft.clone(),
                supervisor.clone(),
                transport.clone(),
                snapshots.clone(),
                dispatch.clone(),
                dir.join("mirror-incoming"),
            );
            let every = options.indexer.commit_interval;
            mirror_task = Some(tokio::spawn(copier.clone().run(every)));
            mirror = Some(copier);
        }
        // Alone in its group the node leads at once, but only after its first Ready is
        // persisted: wait for that so "started" means "takes writes". A cluster member cannot
        // wait here: its peers may not be up yet, and elections need them.
        if options.cluster.is_none() {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !raft.is_writable() && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            if !raft.is_writable() {
                tracing::warn!("the node is not writable 10 s after start; writes will wait");
            }
        }
        let clustered = options.cluster.is_some();
        let max_log_entries = options.max_raft_log_entries;
        let compactor = {
            let (metadata, ctx, every) = (metadata.clone(), ctx.clone(), options.compact_interval);
            let raft = raft.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if clustered {
                        allow_compaction(&metadata, &raft, &ctx.log, max_log_entries).await;
                    }
                    let first = ctx.log.first_index().unwrap_or(0);
                    let hold = snapshot_hold(&raft.status(), first, max_log_entries);
                    if let Err(e) = compact_log(&metadata, &ctx, clustered, hold).await {
                        tracing::warn!(error = %e, "raft log compaction failed; will retry");
                    }
                }
            })
        };
        let reconciler = clustered.then(|| {
            let raft = raft.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(membership::RECONCILE_EVERY).await;
                    membership::reconcile(&members, &raft).await;
                }
            })
        });
        Ok(Group {
            id,
            reconciler,
            mirror,
            mirror_task,
            snapshots: snapshot_store,
            dispatch,
            compactor,
            metadata,
            raft,
            raft_thread: Mutex::new(Some(raft_thread)),
            supervisor,
            ctx,
            max_backlog: options.max_indexing_backlog_bytes,
            db,
            clustered,
            max_log_entries,
        })
    }

    /// Proposes `kind` and waits until it is applied. While no leader is known (an election,
    /// or a group that has just started) it waits a few seconds for one rather than fail at
    /// once.
    pub(crate) async fn propose(&self, kind: CommandKind) -> Result<(u64, ApplyOutcome)> {
        let deadline = tokio::time::Instant::now() + LEADER_PATIENCE;
        while self.raft.status().leader == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let committed = self.raft.propose(Command::new(kind).to_bytes()).await?;
        Ok((committed.index, committed.output))
    }

    /// Refuses more events while indexing is further behind than the bound allows: checked
    /// before anything costly is done for a batch (its pipelines), and again when proposing.
    pub(crate) fn check_backlog(&self) -> Result<()> {
        let backlog = self.ctx.progress.queued_bytes();
        if backlog > self.max_backlog {
            return Err(Error::Overloaded(format!(
                "indexing is behind by {backlog} bytes; retry shortly"
            )));
        }
        Ok(())
    }

    /// Appends events to `tenant`'s store. Returns the Raft index once it is committed (fsync'd).
    pub async fn publish(&self, tenant: &str, events: &[Event]) -> Result<u64> {
        self.check_backlog()?;
        let kind = CommandKind::AppendEvents(AppendEvents {
            tenant: tenant.to_owned(),
            batch: meniscus_event::wire::encode_batch(events),
        });
        match self.propose(kind).await? {
            (_, ApplyOutcome::UnknownTenant) => Err(Error::UnknownTenant(tenant.to_owned())),
            (_, ApplyOutcome::PlacedElsewhere) => Err(Error::Unavailable(format!(
                "tenant {tenant:?} was placed in a shard this node had not learnt of yet; retry"
            ))),
            (index, _) => Ok(index),
        }
    }

    /// Searches a tenant's committed events.
    pub async fn search(&self, tenant: &str, request: SearchRequest) -> Result<SearchResponse> {
        let index = self.ctx.indexes.get(tenant)?;
        tokio::task::spawn_blocking(move || index.search(&request))
            .await
            .map_err(|e| Error::Actor(format!("search task failed: {e}")))?
            .map_err(Error::from)
    }

    /// Waits until every event of `tenant` committed at Raft index `index` or below is
    /// searchable on this node (read your writes: `index` is what a publish answered), for at
    /// most `timeout`. Returns whether it is. With `scanning`, events applied but not yet
    /// indexed count as searchable (a search whose query can scan them sees them).
    pub async fn wait_searchable(
        &self,
        tenant: &str,
        index: u64,
        timeout: Duration,
        scanning: bool,
    ) -> Result<bool> {
        let tenant_index = self.ctx.indexes.get(tenant)?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let committed = self.ctx.searchable_changed.notified();
            tokio::pin!(committed);
            committed.as_mut().enable();
            // Every entry up to `index` must have been applied here; of those, the tenant's
            // last one must be searchable (its index may never reach `index` itself when
            // later entries belong to other tenants).
            if self.raft.status().applied >= index {
                let wanted = index.min(self.ctx.progress.last_entry_of(tenant));
                let visible = if scanning {
                    tenant_index.visible_up_to()
                } else {
                    tenant_index.searchable_up_to()
                };
                if visible >= wanted {
                    return Ok(true);
                }
            }
            // A commit wakes us; applying alone does not, so look again now and then.
            let wake = (tokio::time::Instant::now() + SEARCHABLE_RECHECK).min(deadline);
            if tokio::time::timeout_at(wake, committed).await.is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return Ok(false);
            }
        }
    }

    /// Searches once the writes up to `min_index` (if any) are searchable here, waiting up to
    /// `wait` for them.
    pub(crate) async fn search_when_searchable(
        &self,
        tenant: &str,
        request: SearchRequest,
        min_index: Option<u64>,
        wait: Duration,
    ) -> Result<SearchOutcome> {
        if let Some(index) = min_index {
            let scanning = self.ctx.indexes.get(tenant)?.can_scan(&request);
            if !self.wait_searchable(tenant, index, wait, scanning).await? {
                return Ok(SearchOutcome::NotYetSearchable);
            }
        }
        Ok(SearchOutcome::Found(self.search(tenant, request).await?))
    }

    /// Commits every running tenant index, making everything acknowledged so far searchable.
    pub async fn flush(&self) -> Result<()> {
        self.supervisor
            .call(NodeMsg::FlushAll, Some(Duration::from_secs(120)))
            .await
            .map_err(|e| Error::Actor(e.to_string()))?;
        Ok(())
    }

    /// Drops the Raft log below what every tenant index has committed (see [`compact_log`]).
    /// Returns the log's new first index.
    pub async fn compact_log(&self) -> Result<u64> {
        if self.clustered {
            allow_compaction(
                &self.metadata,
                &self.raft,
                &self.ctx.log,
                self.max_log_entries,
            )
            .await;
        }
        let hold = snapshot_hold(
            &self.raft.status(),
            self.log_first_index(),
            self.max_log_entries,
        );
        compact_log(&self.metadata, &self.ctx, self.clustered, hold).await
    }

    /// The Raft log's first index (everything below was compacted).
    pub fn log_first_index(&self) -> u64 {
        self.ctx.log.first_index().unwrap_or(0)
    }

    /// How this node keeps its tenant indexes, now.
    pub fn indexes_status(&self) -> IndexesStatus {
        IndexesStatus {
            copy_follower_indexes: self.mirror.is_some(),
            indexing_here: self.dispatch.load(std::sync::atomic::Ordering::SeqCst),
            copies_adopted: self.mirror.as_ref().map_or(0, |m| m.adopted()),
        }
    }

    /// Whether the node can take writes now.
    pub fn is_writable(&self) -> bool {
        self.raft.is_writable()
    }

    /// Bytes of applied events not yet committed to their index.
    pub fn indexing_backlog_bytes(&self) -> u64 {
        self.ctx.progress.queued_bytes()
    }

    /// A tenant's actor status, if its supervisor runs.
    pub async fn tenant_status(&self, tenant: &str) -> Result<Option<TenantStatus>> {
        let tenant = tenant.to_owned();
        self.supervisor
            .call(
                move |reply| NodeMsg::TenantStatus(tenant, reply),
                Some(Duration::from_secs(10)),
            )
            .await
            .map_err(|e| Error::Actor(e.to_string()))?
            .success_or(())
            .map_err(|_| Error::Actor("tenant status timed out".into()))
    }

    /// Test hook: make a tenant's indexer fail as a poisoned input would.
    #[doc(hidden)]
    pub fn crash_indexer(&self, tenant: &str) {
        let _ = self.supervisor.cast(NodeMsg::ToTenant(
            tenant.to_owned(),
            TenantMsg::CrashIndexer,
        ));
    }

    /// The group's state, as this node sees it.
    pub(crate) fn status(&self) -> GroupStatus {
        GroupStatus {
            id: self.id,
            raft: self.raft.status(),
            log_first_index: self.log_first_index(),
        }
    }

    /// Stops the group's tasks and asks its Raft thread to stop; [`Group::finish_shutdown`]
    /// waits for it.
    pub(crate) fn begin_shutdown(&self) {
        self.compactor.abort();
        if let Some(reconciler) = &self.reconciler {
            reconciler.abort();
        }
        if let Some(task) = &self.mirror_task {
            task.abort();
        }
        if let Some(snapshots) = &self.snapshots {
            snapshots.stop_fetching();
        }
        self.raft.shutdown();
    }

    /// Waits for the Raft thread, commits every index, and stops the actors.
    pub(crate) async fn finish_shutdown(&self) -> Result<()> {
        let thread = self
            .raft_thread
            .lock()
            .expect("raft thread lock poisoned")
            .take();
        if let Some(thread) = thread {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if let Ok(Ok(Err(e))) = joined {
                tracing::warn!(error = %e, "raft thread ended with an error");
            }
        }
        self.flush().await?;
        self.supervisor
            .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(30)))
            .await
            .map_err(|e| Error::Actor(e.to_string()))?;
        self.db
            .flush_async()
            .await
            .map_err(meniscus_storage::Error::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use meniscus_consensus::ReplicaProgress;

    use super::*;

    fn replica(
        id: u64,
        matched: u64,
        recent_active: bool,
        pending_snapshot: u64,
    ) -> ReplicaProgress {
        ReplicaProgress {
            id,
            matched,
            recent_active,
            pending_snapshot,
        }
    }

    #[test]
    fn a_member_fetching_a_snapshot_keeps_the_log_from_it_for_a_while() {
        let mut status = RaftStatus {
            commit: 10_000,
            ..Default::default()
        };
        status.replicas = vec![
            replica(1, 10_000, true, 0),
            replica(2, 9_990, true, 0),
            // Busy installing the snapshot at 8,500: silent, nothing matched yet.
            replica(3, 0, false, 8_500),
        ];
        // The log (from 8,000) is past the limit of 1,000 but not four times past it.
        assert_eq!(stored_everywhere(&status, 8_000, 1_000), 8_500);
        // A silent member that is not being sent a snapshot no longer counts...
        status.replicas[2] = replica(3, 8_200, false, 0);
        assert_eq!(stored_everywhere(&status, 8_000, 1_000), 9_990);
        // ...unless the log is within the limit.
        assert_eq!(stored_everywhere(&status, 9_500, 1_000), 8_200);
        // Far past the limit, a fetching member stops holding the log back too.
        status.replicas[2] = replica(3, 0, false, 8_500);
        assert_eq!(stored_everywhere(&status, 5_000, 1_000), 9_990);
    }

    #[test]
    fn the_leader_keeps_its_log_after_a_snapshot_being_fetched() {
        let mut status = RaftStatus {
            id: 1,
            leader: 1,
            commit: 10_000,
            ..Default::default()
        };
        status.replicas = vec![replica(1, 10_000, true, 0), replica(4, 0, false, 8_500)];
        assert_eq!(snapshot_hold(&status, 8_000, 1_000), 8_501);
        assert_eq!(
            snapshot_hold(&status, 5_000, 1_000),
            u64::MAX,
            "far too long"
        );
        status.replicas[1] = replica(4, 8_600, true, 0);
        assert_eq!(snapshot_hold(&status, 8_000, 1_000), u64::MAX, "installed");
        status.leader = 2;
        status.replicas[1] = replica(4, 0, false, 8_500);
        assert_eq!(
            snapshot_hold(&status, 8_000, 1_000),
            u64::MAX,
            "not the leader"
        );
    }
}
