//! Followers that copy the leader's tenant indexes instead of indexing every event.
//!
//! With `copy` follower indexes, only the leader's indexers index. After each of its index
//! commits, every follower asks it for the indexes that moved past what the follower holds,
//! pulls the segment files it lacks (tantivy's files never change once written) and adopts
//! the commit: its `read=local` searches then see what the leader's did. A follower never
//! adopts an older commit than its own, and its Raft log keeps every entry above its
//! indexes' commits (compaction already stops there), so when it becomes leader it indexes
//! the rest from its log, as any indexer that starts behind does.
//!
//! Roles are watched here: a node that becomes leader starts indexing (applied events go to
//! its indexers again, what its indexes lack is read from the log into their tails, so it is
//! searchable at once, and indexes that are behind catch up from the log); one that stops
//! being leader stops its indexers (they commit what they have) and copies from then on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meniscus_consensus::transport::{Envelope, MirrorOffer, MirrorRequest, Transport};
use meniscus_consensus::RaftHandle;
use meniscus_storage::{adopt_checkpoint, missing_files, ApplyOutcome, CheckpointFile, Metadata};
use prost::Message as _;
use ractor::ActorRef;

use crate::answers::Answers;
use crate::log_events;
use crate::snapshot::{another_leader_than, Manifest, ManifestFile};
use crate::{NodeContext, NodeMsg, SnapshotStore};

/// How often the role is looked at: a new leader's events wait this long at most before they
/// reach its tails and indexers.
const ROLE_CHECK: Duration = Duration::from_millis(100);

/// How long a follower waits for the leader's offer.
const OFFER_TIMEOUT: Duration = Duration::from_secs(10);

/// One node's side of index copying: serving copies as leader, taking them as follower.
pub struct Mirror {
    node_id: u64,
    ctx: Arc<NodeContext>,
    metadata: Metadata,
    raft: RaftHandle<ApplyOutcome>,
    supervisor: ActorRef<NodeMsg>,
    transport: Arc<Transport>,
    snapshots: Arc<SnapshotStore>,
    /// Whether the applier hands events to this node's indexers (shared with it).
    dispatch: Arc<AtomicBool>,
    /// Whether this node copies (true) or indexes; changed only with the lock held.
    copying: tokio::sync::Mutex<bool>,
    work: PathBuf,
    offers: Answers<MirrorOffer>,
    adopted: AtomicU64,
}

impl Mirror {
    /// A mirror for a node that starts as a follower: not indexing until it leads. `dispatch`
    /// must be false from before the Raft group applies anything, or a follower's indexers
    /// would run beside its copies.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        node_id: u64,
        ctx: Arc<NodeContext>,
        metadata: Metadata,
        raft: RaftHandle<ApplyOutcome>,
        supervisor: ActorRef<NodeMsg>,
        transport: Arc<Transport>,
        snapshots: Arc<SnapshotStore>,
        dispatch: Arc<AtomicBool>,
        work: PathBuf,
    ) -> Arc<Mirror> {
        Arc::new(Mirror {
            node_id,
            ctx,
            metadata,
            raft,
            supervisor,
            transport,
            snapshots,
            dispatch,
            copying: tokio::sync::Mutex::new(true),
            work,
            offers: Answers::new(),
            adopted: AtomicU64::new(0),
        })
    }

    /// Watches the role, and copies while following every `every` (the commit interval),
    /// until the task is aborted.
    pub(crate) async fn run(self: Arc<Self>, every: Duration) {
        let mut last_copy = Instant::now();
        loop {
            tokio::time::sleep(ROLE_CHECK.min(every)).await;
            self.follow_role().await;
            if last_copy.elapsed() >= every {
                last_copy = Instant::now();
                if let Err(e) = self.copy_once().await {
                    tracing::debug!(error = %e, "copying the leader's indexes failed; will retry");
                }
            }
        }
    }

    /// Starts or stops this node's indexers when it gains or loses the leadership.
    async fn follow_role(&self) {
        let status = self.raft.status();
        let leading = status.id != 0 && status.leader == status.id;
        let mut copying = self.copying.lock().await;
        if leading && *copying {
            // Events applied from now on go to the indexers; those applied before are in the
            // log above each index's commit, where a starting indexer reads them.
            self.dispatch.store(true, Ordering::SeqCst);
            *copying = false;
            // Read once dispatching is on: later entries reach the tails as they are applied.
            let up_to = self.ctx.progress.watermark();
            let mut behind = Vec::new();
            for tenant in self.metadata.tenants_here().unwrap_or_default() {
                let committed = self
                    .ctx
                    .indexes
                    .get(&tenant.name)
                    .map(|i| i.searchable_up_to())
                    .unwrap_or(0);
                if committed < self.ctx.progress.last_entry_of(&tenant.name) {
                    behind.push((tenant.name, committed));
                }
            }
            // What the copies lack was searchable on the old leader (from its tail): make it
            // searchable here now, not once the indexers have caught up.
            let (ctx, lagging) = (self.ctx.clone(), behind.clone());
            match tokio::task::spawn_blocking(move || log_events::seed_tails(&ctx, &lagging, up_to))
                .await
            {
                Ok(Ok(())) => self.ctx.searchable_changed.notify_waiters(),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading unindexed events from the log; they are searchable once indexed")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading unindexed events from the log failed")
                }
            }
            tracing::info!(
                behind = behind.len(),
                "leading: indexing events here, not copying them"
            );
            for (tenant, _) in behind {
                let _ = self.supervisor.cast(NodeMsg::Start(tenant));
            }
        } else if !leading && !*copying {
            self.dispatch.store(false, Ordering::SeqCst);
            let stopped = self
                .supervisor
                .call(NodeMsg::StopTenants, Some(Duration::from_secs(120)))
                .await;
            if let Err(e) = stopped {
                tracing::warn!(error = %e, "stopping the indexers after losing the leadership");
            }
            *copying = true;
            tracing::info!("following: copying the leader's indexes");
        }
    }

    /// One round: asks the leader for the indexes that moved past this node's, pulls what
    /// they lack and adopts them.
    async fn copy_once(&self) -> Result<(), String> {
        if !*self.copying.lock().await {
            return Ok(());
        }
        let status = self.raft.status();
        if status.leader == 0 || status.leader == self.node_id {
            return Ok(());
        }
        let mut held = BTreeMap::new();
        let mut behind = false;
        for tenant in self.metadata.tenants_here().map_err(|e| e.to_string())? {
            // What the index has committed and made visible: kept in memory, no meta.json read.
            let committed = self
                .ctx
                .indexes
                .get(&tenant.name)
                .map_err(|e| e.to_string())?
                .searchable_up_to();
            behind |= committed < self.ctx.progress.last_entry_of(&tenant.name);
            held.insert(tenant.name, committed);
        }
        if !behind {
            return Ok(());
        }
        let offer = tokio::select! {
            offer = self.ask(status.leader, held) => offer?,
            () = another_leader_than(&self.raft, status.leader) => {
                return Err(format!("node {} stopped leading before it offered", status.leader));
            }
        };
        let manifest =
            Manifest::decode(offer.manifest.as_slice()).map_err(|e| format!("bad offer: {e}"))?;
        let mut by_tenant: BTreeMap<&str, Vec<CheckpointFile>> = BTreeMap::new();
        for file in &manifest.files {
            let (tenant, name) = file
                .path
                .split_once('/')
                .ok_or_else(|| format!("bad path {:?} in an offer", file.path))?;
            by_tenant.entry(tenant).or_default().push(CheckpointFile {
                name: name.to_owned(),
                size: file.size,
            });
        }
        for (tenant, files) in by_tenant {
            self.copy_tenant(&manifest, tenant, &files).await?;
        }
        Ok(())
    }

    async fn copy_tenant(
        &self,
        manifest: &Manifest,
        tenant: &str,
        files: &[CheckpointFile],
    ) -> Result<(), String> {
        let index = self.ctx.indexes.get(tenant).map_err(|e| e.to_string())?;
        let index_dir = self.ctx.indexes.root().join(tenant);
        let wanted: Vec<ManifestFile> = missing_files(&index_dir, files)
            .into_iter()
            .map(|f| ManifestFile {
                path: format!("{tenant}/{}", f.name),
                size: f.size,
            })
            .collect();
        let _ = tokio::fs::remove_dir_all(self.work.join(tenant)).await;
        // A leader that stops leading may stop answering too (it was replaced, or killed):
        // waiting out every pull's timeouts would leave this copy a minute behind the new
        // leader. Only the download is given up: it writes nothing but the work directory.
        tokio::select! {
            fetched = self.snapshots.fetch_files(manifest, &wanted, &self.work) => fetched?,
            // Not while nobody leads: a follower whose heartbeats queue behind this very copy
            // on a slow link loses sight of the leader now and then, and giving up each time
            // would never let it finish.
            () = another_leader_than(&self.raft, manifest.node) => {
                return Err(format!(
                    "node {} stopped leading while this node copied from it",
                    manifest.node
                ));
            }
        }
        let _swapping = self.snapshots.swapping.lock().await;
        if !*self.copying.lock().await {
            return Ok(()); // became leader meanwhile: its indexers own the index now
        }
        let (incoming, dir, files) = (self.work.join(tenant), index_dir, files.to_vec());
        let adopted =
            tokio::task::spawn_blocking(move || adopt_checkpoint(&dir, &incoming, &files))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        if let Some(raft_index) = adopted {
            index.reload().map_err(|e| e.to_string())?;
            self.adopted.fetch_add(1, Ordering::Relaxed);
            self.ctx.searchable_changed.notify_waiters();
            tracing::debug!(tenant, raft_index, "copied the leader's index");
        }
        Ok(())
    }

    async fn ask(&self, leader: u64, held: BTreeMap<String, u64>) -> Result<MirrorOffer, String> {
        let send = |id| {
            let envelope = Envelope {
                group: self.snapshots.group,
                mirror_request: Some(MirrorRequest { id, held }),
                ..Default::default()
            };
            self.transport.send_envelope(leader, envelope);
        };
        match self.offers.ask(send, OFFER_TIMEOUT).await {
            Some(offer) if offer.error.is_empty() => Ok(offer),
            Some(offer) => Err(offer.error),
            None => Err(format!(
                "no offer from node {leader} within {OFFER_TIMEOUT:?}"
            )),
        }
    }

    /// How many index commits this node has copied from leaders.
    pub(crate) fn adopted(&self) -> u64 {
        self.adopted.load(Ordering::Relaxed)
    }

    /// An offer arrived for one of our requests.
    pub(crate) fn on_offer(&self, offer: MirrorOffer) {
        self.offers.answer(offer.id, offer);
    }

    /// Answers a follower's request with a copy of the indexes that moved past what it holds.
    pub(crate) async fn serve(&self, from: u64, request: MirrorRequest) {
        let id = request.id;
        let status = self.raft.status();
        let offer = if status.leader != self.node_id || *self.copying.lock().await {
            Err(format!("node {} is not indexing as leader", self.node_id))
        } else {
            let snapshots = self.snapshots.clone();
            tokio::task::spawn_blocking(move || snapshots.build_mirror(&request.held))
                .await
                .map_err(|e| e.to_string())
                .and_then(|built| built)
        };
        let offer = match offer {
            Ok(manifest) => MirrorOffer {
                id,
                manifest,
                error: String::new(),
            },
            Err(error) => MirrorOffer {
                id,
                manifest: Vec::new(),
                error,
            },
        };
        let envelope = Envelope {
            group: self.snapshots.group,
            mirror_offer: Some(offer),
            ..Default::default()
        };
        self.transport.send_envelope(from, envelope);
    }
}
