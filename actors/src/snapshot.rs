//! Snapshots for members that need entries the Raft log no longer has.
//!
//! The leader builds one at the highest index every tenant index has committed everything up
//! to ([`SnapshotStore::complete_up_to`], at or past the log's truncation point, since
//! compaction never passes it): the metadata records (applied up to some index at or above
//! the point) and a hard-linked checkpoint of every tenant index's last commit, which holds
//! every event up to the point. Entries after it are applied next, and both the metadata and
//! the indexes skip what they already hold. The Raft log sends it with the configuration of
//! that index (not the current one: the member applies the changes after it).
//!
//! The Raft message carries only a [`Manifest`]; the member pulls the files in pieces over the
//! node-to-node transport before its Raft thread sees the message ([`SnapshotStore::prefetch`]),
//! then swaps them in while its tenant actors are stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use meniscus_consensus::transport::{Envelope, SnapshotPiece, SnapshotPull, Transport};
use meniscus_consensus::RaftHandle;
use meniscus_storage::{
    checkpoint_index, validate_tenant_name, ApplyOutcome, Metadata, SnapshotSource,
};
use prost::Message as _;
use ractor::ActorRef;
use raft::eraftpb::Message;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::answers::Answers;
use crate::{NodeContext, NodeMsg};

/// Bytes asked for in one pull.
const PIECE_BYTES: u32 = 1024 * 1024;
/// How long one pull may wait for its piece.
const PULL_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts per piece before the install fails.
const PULL_ATTEMPTS: usize = 4;
/// Pieces of one file asked for at once: the serving node answers each after a disk read and
/// its own queue, so one piece at a time leaves the link idle most of the time.
const PULLS_IN_FLIGHT: usize = 4;
/// Snapshots a leader keeps on disk (older ones are removed when a new one is built).
const KEEP: usize = 2;
/// Set in the id of a checkpoint built for a follower that copies indexes (see `mirror`),
/// which lives under `mirror/` rather than beside the Raft snapshots.
pub(crate) const MIRROR_BIT: u64 = 1 << 63;
/// How long such a checkpoint stays for its follower to pull from.
const MIRROR_KEEP: Duration = Duration::from_secs(60);
/// How often a fetch looks whether its source still leads.
const LEADER_CHECK_EVERY: Duration = Duration::from_millis(100);

/// What a snapshot's Raft message carries.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Manifest {
    /// The node that built it, which serves its files.
    #[prost(uint64, tag = "1")]
    pub(crate) node: u64,
    /// Its Raft index (and directory name on the builder); for a follower's copy, an id
    /// with [`MIRROR_BIT`] set.
    #[prost(uint64, tag = "2")]
    pub(crate) index: u64,
    /// `Metadata::dump` (empty for a follower's copy).
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) metadata: Vec<u8>,
    /// Every index file, as `tenant/file`.
    #[prost(message, repeated, tag = "4")]
    pub(crate) files: Vec<ManifestFile>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ManifestFile {
    #[prost(string, tag = "1")]
    pub(crate) path: String,
    #[prost(uint64, tag = "2")]
    pub(crate) size: u64,
}

/// What the Raft log builds snapshots with: a node's [`SnapshotStore`], held weakly (the store
/// holds the log, through the context; a strong cycle would keep the database open after
/// shutdown).
pub(crate) struct SnapshotSourceRef(pub(crate) std::sync::Weak<SnapshotStore>);

impl SnapshotSourceRef {
    fn store(&self) -> Result<Arc<SnapshotStore>, String> {
        self.0
            .upgrade()
            .ok_or_else(|| "the node is shutting down".to_string())
    }
}

impl SnapshotSource for SnapshotSourceRef {
    fn complete_up_to(&self) -> Result<u64, String> {
        self.store()?.complete_up_to()
    }

    fn build(&self, index: u64) -> Result<Vec<u8>, String> {
        self.store()?.build(index)
    }

    fn latest_built(&self) -> Option<u64> {
        self.store().ok()?.latest_built()
    }
}

/// Builds, serves and installs snapshots for one node.
pub struct SnapshotStore {
    node_id: u64,
    /// The Raft group whose snapshots these are.
    pub(crate) group: u64,
    dir: PathBuf,
    metadata: Metadata,
    ctx: Arc<NodeContext>,
    supervisor: ActorRef<NodeMsg>,
    transport: Arc<Transport>,
    runtime: tokio::runtime::Handle,
    pulls: Answers<SnapshotPiece>,
    next_mirror: AtomicU64,
    /// Held while index files are swapped, by a snapshot install or a follower's copy.
    pub(crate) swapping: tokio::sync::Mutex<()>,
    prefetch: Mutex<Prefetch>,
}

/// Snapshots fetched ahead of the Raft thread (see [`SnapshotStore::prefetch`]).
#[derive(Default)]
struct Prefetch {
    /// The snapshot whose files are being fetched, and the task fetching them.
    fetching: Option<(u64, tokio::task::AbortHandle)>,
    /// Snapshots whose files are all here, waiting for the Raft thread to install one.
    fetched: BTreeSet<u64>,
}

impl SnapshotStore {
    /// A store keeping snapshots under `dir`. Must be created inside the tokio runtime that
    /// runs the transport: installs, on the Raft thread, wait on it.
    pub fn new(
        node_id: u64,
        group: u64,
        dir: PathBuf,
        metadata: Metadata,
        ctx: Arc<NodeContext>,
        supervisor: ActorRef<NodeMsg>,
        transport: Arc<Transport>,
    ) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)?;
        // Copies built for followers by an earlier run: their ids start again from 0.
        let _ = std::fs::remove_dir_all(dir.join("mirror"));
        // Fetches of an earlier run, finished or not: nothing knows them any more.
        remove_incoming(&dir, u64::MAX);
        Ok(Arc::new(SnapshotStore {
            node_id,
            group,
            dir,
            metadata,
            ctx,
            supervisor,
            transport,
            runtime: tokio::runtime::Handle::current(),
            pulls: Answers::new(),
            next_mirror: AtomicU64::new(0),
            swapping: tokio::sync::Mutex::new(()),
            prefetch: Mutex::new(Prefetch::default()),
        }))
    }

    /// The highest Raft index up to which the metadata and every tenant index hold
    /// everything: where a snapshot can be built now.
    pub fn complete_up_to(&self) -> Result<u64, String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let mut complete = self
            .ctx
            .progress
            .watermark()
            .min(self.metadata.applied_index().map_err(|e| err(&e))?);
        if let Some(committed) =
            crate::group::lagging_index_commit(&self.metadata, &self.ctx).map_err(|e| err(&e))?
        {
            complete = complete.min(committed);
        }
        Ok(complete)
    }

    /// Builds (or reuses) the snapshot at `index`; returns its manifest. Called by the Raft
    /// log on the leader's Raft thread.
    pub fn build(&self, index: u64) -> Result<Vec<u8>, String> {
        let done = self.dir.join(index.to_string());
        if let Ok(manifest) = std::fs::read(done.join("manifest")) {
            return Ok(manifest);
        }
        let staging = self.dir.join(format!("{index}.building"));
        let _ = std::fs::remove_dir_all(&staging);
        let manifest = self.build_in(index, &staging).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&staging);
        })?;
        std::fs::rename(&staging, &done).map_err(|e| e.to_string())?;
        self.remove_old(index);
        tracing::info!(index, files = manifest.files.len(), "built a snapshot");
        Ok(manifest.encode_to_vec())
    }

    fn build_in(&self, index: u64, staging: &Path) -> Result<Manifest, String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        // A group may have no tenant index to copy (the metadata group, once every tenant is
        // in a shard): the manifest still needs its directory.
        std::fs::create_dir_all(staging).map_err(|e| err(&e))?;
        // The metadata first: it is at or past `index`, like the index commits that follow.
        let metadata = self.metadata.dump().map_err(|e| err(&e))?;
        let mut files = Vec::new();
        for tenant in self.metadata.tenants_here().map_err(|e| err(&e))? {
            let index_dir = self.ctx.indexes.root().join(&tenant.name);
            if !index_dir.join("meta.json").exists() {
                continue; // never indexed anything
            }
            let copied =
                checkpoint_index(&index_dir, &staging.join(&tenant.name)).map_err(|e| err(&e))?;
            files.extend(copied.into_iter().map(|f| ManifestFile {
                path: format!("{}/{}", tenant.name, f.name),
                size: f.size,
            }));
        }
        let manifest = Manifest {
            node: self.node_id,
            index,
            metadata,
            files,
        };
        std::fs::write(staging.join("manifest"), manifest.encode_to_vec()).map_err(|e| err(&e))?;
        Ok(manifest)
    }

    /// The indexes of the snapshots built and kept, in no order. A directory is named by its
    /// index only once complete (it is built under `{index}.building`).
    fn built(&self) -> Vec<u64> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// The newest snapshot built and kept (see [`SnapshotSource::latest_built`]).
    fn latest_built(&self) -> Option<u64> {
        self.built().into_iter().max()
    }

    fn remove_old(&self, newest: u64) {
        let mut built = self.built();
        built.sort_unstable();
        built.retain(|i| *i <= newest);
        let remove = built.len().saturating_sub(KEEP);
        for index in &built[..remove] {
            let _ = std::fs::remove_dir_all(self.dir.join(index.to_string()));
        }
    }

    /// Builds a checkpoint of every tenant index whose last commit is above what `held` says
    /// a follower has; returns its manifest. Blocking (hard links, directory reads).
    pub(crate) fn build_mirror(&self, held: &BTreeMap<String, u64>) -> Result<Vec<u8>, String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let id = MIRROR_BIT | self.next_mirror.fetch_add(1, Ordering::Relaxed);
        let dir = self.snapshot_dir(id);
        let mut files = Vec::new();
        for tenant in self.metadata.tenants_here().map_err(|e| err(&e))? {
            let index_dir = self.ctx.indexes.root().join(&tenant.name);
            if !index_dir.join("meta.json").exists() {
                continue;
            }
            let committed = self
                .ctx
                .indexes
                .get(&tenant.name)
                .and_then(|index| index.committed_raft_index())
                .map_err(|e| err(&e))?;
            if committed <= held.get(&tenant.name).copied().unwrap_or(0) {
                continue;
            }
            let copied =
                checkpoint_index(&index_dir, &dir.join(&tenant.name)).map_err(|e| err(&e))?;
            files.extend(copied.into_iter().map(|f| ManifestFile {
                path: format!("{}/{}", tenant.name, f.name),
                size: f.size,
            }));
        }
        self.remove_old_mirrors();
        Ok(Manifest {
            node: self.node_id,
            index: id,
            metadata: Vec::new(),
            files,
        }
        .encode_to_vec())
    }

    fn remove_old_mirrors(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("mirror")) else {
            return;
        };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > MIRROR_KEEP);
            if old {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    fn snapshot_dir(&self, id: u64) -> PathBuf {
        if id & MIRROR_BIT != 0 {
            self.dir.join("mirror").join((id & !MIRROR_BIT).to_string())
        } else {
            self.dir.join(id.to_string())
        }
    }

    /// Answers a member's pull for a piece of a snapshot file.
    pub async fn serve(&self, from: u64, pull: SnapshotPull) {
        // Tests: `return` leaves the pull unanswered (a source that died), `return(MESSAGE)`
        // answers it with that error.
        fail::fail_point!("snapshot-serve", |error: Option<String>| {
            if let Some(error) = error {
                let piece = SnapshotPiece {
                    id: pull.id,
                    data: Vec::new(),
                    error,
                };
                self.transport.send_envelope(
                    from,
                    Envelope {
                        group: self.group,
                        snapshot_piece: Some(piece),
                        ..Default::default()
                    },
                );
            }
        });
        let piece = match self.read_piece(&pull).await {
            Ok(data) => SnapshotPiece {
                id: pull.id,
                data,
                error: String::new(),
            },
            Err(e) => SnapshotPiece {
                id: pull.id,
                data: Vec::new(),
                error: e,
            },
        };
        let envelope = Envelope {
            group: self.group,
            snapshot_piece: Some(piece),
            ..Default::default()
        };
        self.transport.send_envelope(from, envelope);
    }

    async fn read_piece(&self, pull: &SnapshotPull) -> Result<Vec<u8>, String> {
        let path = self.file_path(pull.snapshot, &pull.path)?;
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| format!("{}: {e}", pull.path))?;
        file.seek(std::io::SeekFrom::Start(pull.offset))
            .await
            .map_err(|e| e.to_string())?;
        let mut data = Vec::new();
        file.take(u64::from(pull.len.min(PIECE_BYTES)))
            .read_to_end(&mut data)
            .await
            .map_err(|e| e.to_string())?;
        Ok(data)
    }

    /// Where a snapshot file is, refusing paths that would leave the snapshot's directory.
    fn file_path(&self, snapshot: u64, path: &str) -> Result<PathBuf, String> {
        let (tenant, file) = path
            .split_once('/')
            .ok_or_else(|| format!("bad snapshot path {path:?}"))?;
        validate_tenant_name(tenant).map_err(|e| e.to_string())?;
        let plain = !file.is_empty()
            && file != ".."
            && file != "."
            && !file.contains('/')
            && !file.contains('\\');
        if !plain {
            return Err(format!("bad snapshot path {path:?}"));
        }
        Ok(self.snapshot_dir(snapshot).join(tenant).join(file))
    }

    /// A piece arrived for one of our pulls.
    pub fn on_piece(&self, piece: SnapshotPiece) {
        self.pulls.answer(piece.id, piece);
    }

    /// Fetches the files of the snapshot that a leader's `message` describes before the Raft
    /// thread sees it, then hands the message on with `deliver`.
    ///
    /// raft-rs takes a snapshot as soon as it steps the message: a fetch that failed after
    /// that (its source died) would leave the group's state ahead of its storage, with no way
    /// back but a restart. Fetched first, a failure only drops the message, and the leader
    /// sends one again. The fetch ends early once another node leads (its source may be gone
    /// for good). One fetch runs at a time; messages that arrive meanwhile are dropped, since
    /// the one being fetched is handed on when done. The member is quiet meanwhile (see
    /// [`RaftHandle::set_quiet`]).
    pub fn prefetch(
        self: &Arc<Self>,
        message: Message,
        raft: RaftHandle<ApplyOutcome>,
        deliver: impl FnOnce(Message) + Send + 'static,
    ) {
        let snapshot = message.get_snapshot();
        let index = snapshot.get_metadata().index;
        let manifest = match Manifest::decode(snapshot.data.as_ref()) {
            Ok(manifest) => manifest,
            Err(e) => {
                tracing::warn!(index, from = message.from, error = %e, "a snapshot message with a bad manifest");
                return;
            }
        };
        let mut state = self.prefetch.lock().expect("prefetch lock poisoned");
        if state.fetched.contains(&index) {
            drop(state);
            deliver(message);
            return;
        }
        if state.fetching.is_some() {
            return;
        }
        let store = self.clone();
        raft.set_quiet(true);
        let task = tokio::spawn(async move {
            let incoming = store.incoming_dir(index);
            let source = manifest.node;
            let fetched = tokio::select! {
                fetched = store.fetch_into(&manifest, &incoming) => fetched,
                () = another_leader_than(&raft, source) => {
                    let _ = tokio::fs::remove_dir_all(&incoming).await;
                    Err(format!("node {source} stopped leading"))
                }
            };
            let mut state = store.prefetch.lock().expect("prefetch lock poisoned");
            state.fetching = None;
            raft.set_quiet(false);
            match fetched {
                Ok(()) => {
                    state.fetched.insert(index);
                    drop(state);
                    deliver(message);
                }
                Err(e) => {
                    tracing::warn!(index, from = source, error = %e, "fetching a snapshot failed; the leader will send one again")
                }
            }
        });
        state.fetching = Some((index, task.abort_handle()));
    }

    /// Stops a fetch under way (the node is shutting down).
    pub fn stop_fetching(&self) {
        if let Some((_, task)) = self
            .prefetch
            .lock()
            .expect("prefetch lock poisoned")
            .fetching
            .take()
        {
            task.abort();
        }
    }

    fn incoming_dir(&self, index: u64) -> PathBuf {
        self.dir.join(format!("{INCOMING}{index}"))
    }

    /// Replaces this node's metadata and tenant indexes with the snapshot described by `data`.
    /// Runs on the Raft thread; its files were fetched before (see [`SnapshotStore::prefetch`]),
    /// or are fetched now while the thread waits.
    pub fn install(&self, index: u64, data: &[u8]) -> Result<(), String> {
        let manifest = Manifest::decode(data).map_err(|e| format!("bad manifest: {e}"))?;
        let incoming = self.incoming_dir(index);
        let prefetched = self
            .prefetch
            .lock()
            .expect("prefetch lock poisoned")
            .fetched
            .remove(&index);
        if !prefetched {
            self.runtime
                .block_on(self.fetch_into(&manifest, &incoming))?;
        }
        let bytes: u64 = manifest.files.iter().map(|f| f.size).sum();
        // No indexer may write, and no follower's copy land, while the files change.
        let _swapping = self.runtime.block_on(self.swapping.lock());
        self.runtime
            .block_on(
                self.supervisor
                    .call(NodeMsg::StopTenants, Some(Duration::from_secs(120))),
            )
            .map_err(|e| format!("stopping the tenant actors: {e}"))?;
        self.ctx.indexes.close_all();
        let root = self.ctx.indexes.root().to_owned();
        let replaced = root.with_extension("replaced");
        let _ = std::fs::remove_dir_all(&replaced);
        std::fs::rename(&root, &replaced).map_err(|e| e.to_string())?;
        std::fs::rename(&incoming, &root).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_dir_all(&replaced);
        self.metadata
            .restore(&manifest.metadata)
            .map_err(|e| e.to_string())?;
        self.ctx.progress.advance(index);
        // Older snapshots fetched but never taken are of no use now.
        {
            let mut state = self.prefetch.lock().expect("prefetch lock poisoned");
            state.fetched.retain(|fetched| *fetched > index);
        }
        remove_incoming(&self.dir, index);
        tracing::info!(index, bytes, "installed a snapshot");
        Ok(())
    }

    /// Fetches every file of `manifest` into `into`, which is made anew (and removed again if
    /// the fetch fails).
    async fn fetch_into(&self, manifest: &Manifest, into: &Path) -> Result<(), String> {
        let _ = tokio::fs::remove_dir_all(into).await;
        tokio::fs::create_dir_all(into)
            .await
            .map_err(|e| format!("{}: {e}", into.display()))?;
        let bytes: u64 = manifest.files.iter().map(|f| f.size).sum();
        tracing::info!(
            group = self.group,
            index = manifest.index,
            from = manifest.node,
            files = manifest.files.len(),
            bytes,
            "fetching a snapshot"
        );
        let fetched = self.fetch_files(manifest, &manifest.files, into).await;
        if fetched.is_err() {
            let _ = tokio::fs::remove_dir_all(into).await;
        }
        fetched
    }

    /// Pulls `files` (some of `manifest`'s) from the node that built it into `into`, each at
    /// its `tenant/file` path.
    pub(crate) async fn fetch_files(
        &self,
        manifest: &Manifest,
        files: &[ManifestFile],
        into: &Path,
    ) -> Result<(), String> {
        for file in files {
            // The same check the server makes: `tenant/file`, nothing that leaves the directory.
            self.file_path(manifest.index, &file.path)?;
            let target = into.join(&file.path);
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let mut out = tokio::fs::File::create(&target)
                .await
                .map_err(|e| format!("{}: {e}", target.display()))?;
            let mut pieces =
                futures_util::stream::iter((0..file.size).step_by(PIECE_BYTES as usize))
                    .map(|offset| self.pull(manifest, &file.path, offset))
                    .buffered(PULLS_IN_FLIGHT);
            let mut written = 0u64;
            while let Some(piece) = pieces.next().await {
                let piece = piece?;
                // Every piece but the last is whole: the files are immutable.
                let expected = (file.size - written).min(u64::from(PIECE_BYTES));
                if piece.len() as u64 != expected {
                    return Err(format!(
                        "{} gave {} bytes at {written} of {}",
                        file.path,
                        piece.len(),
                        file.size
                    ));
                }
                out.write_all(&piece).await.map_err(|e| e.to_string())?;
                written += piece.len() as u64;
            }
            out.sync_all().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    async fn pull(&self, manifest: &Manifest, path: &str, offset: u64) -> Result<Vec<u8>, String> {
        let mut last_error = String::new();
        for _ in 0..PULL_ATTEMPTS {
            let send = |id| {
                let envelope = Envelope {
                    group: self.group,
                    snapshot_pull: Some(SnapshotPull {
                        id,
                        snapshot: manifest.index,
                        path: path.to_owned(),
                        offset,
                        len: PIECE_BYTES,
                    }),
                    ..Default::default()
                };
                self.transport.send_envelope(manifest.node, envelope);
            };
            match self.pulls.ask(send, PULL_TIMEOUT).await {
                Some(piece) if piece.error.is_empty() => return Ok(piece.data),
                Some(piece) => last_error = piece.error,
                None => {
                    last_error = format!(
                        "no answer from node {} within {PULL_TIMEOUT:?}",
                        manifest.node
                    )
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!("pulling {path} at {offset}: {last_error}"))
    }
}

/// Names of the directories snapshots are fetched into, before their index.
const INCOMING: &str = "incoming-";

/// Removes the fetched snapshots in `dir` at or below `up_to`.
fn remove_incoming(dir: &Path, up_to: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let index = name
            .to_str()
            .and_then(|name| name.strip_prefix(INCOMING))
            .and_then(|index| index.parse::<u64>().ok());
        if index.is_some_and(|index| index <= up_to) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Returns once this node knows of a leader other than `node`. While nobody leads, `node`
/// may still come back.
pub(crate) async fn another_leader_than(raft: &RaftHandle<ApplyOutcome>, node: u64) {
    loop {
        let leader = raft.status().leader;
        if leader != 0 && leader != node {
            return;
        }
        tokio::time::sleep(LEADER_CHECK_EVERY).await;
    }
}
