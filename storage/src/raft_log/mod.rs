//! The Raft log of one group: a crash-safe [`raft::Storage`].
//!
//! [`RaftLog`] keeps everything raft-rs asks a storage to keep: the log entries, the
//! [`HardState`] (term, vote, commit), the [`ConfState`], the point the log was compacted
//! to, and the metadata of the latest snapshot. The entries live in append-only segment files
//! of their own (see `segments`); the rest is small and lives in sled, where several groups
//! (the metadata group and the event-log shard groups) may share one [`sled::Db`].
//!
//! # Layout
//!
//! | where                        | key           | value                                        |
//! |------------------------------|---------------|----------------------------------------------|
//! | `{dir}/group-{group}/*.log`  |               | the entries, in segment files                |
//! | sled tree `raft-{group}-state` | `hard_state` | protobuf-encoded [`HardState`]              |
//! | sled tree `raft-{group}-state` | `conf_state` | protobuf-encoded [`ConfState`]              |
//! | sled tree `raft-{group}-state` | `conf_at/` + index, `u64` big-endian | the [`ConfState`] in force from that index on |
//! | sled tree `raft-{group}-state` | `truncated`  | index and term of the entry just before the first one, two `u64` big-endian |
//! | sled tree `raft-{group}-state` | `snapshot`   | protobuf-encoded [`SnapshotMetadata`]       |
//! | sled tree `raft-{group}-state` | `floor`      | the first segment file that counts, `u64` big-endian |
//!
//! A missing state key means its default: a fresh group has an empty log whose first index
//! is 1, and term 0 at index 0. Logs written by earlier versions kept their entries in a sled
//! tree `raft-{group}-entries`; opening such a log moves them to segment files.
//!
//! # Crash contract
//!
//! - Nothing is durable before [`RaftLog::flush`] returns (or
//!   [`RaftLog::append_and_persist`], which flushes). After a crash, each mutator's effect is
//!   either all there or not at all, with one allowance Raft is built for: appended entries
//!   may be durable while the hard state saved with them is not yet.
//! - Entries are made durable before any state that refers to them: a commit index on disk
//!   never points past the entries on disk.
//! - Segment files are removed only after the state that stopped referring to them
//!   (truncation point, floor) is durable, so a crash never leaves a hole.
//! - Writes go to disk first and to the in-memory cache second, so the cache never runs
//!   ahead of the disk.
//!
//! # Handles
//!
//! [`RaftLog`] is a cheap handle: clones share the same cache, so the driver can keep one
//! while raft-rs's `RawNode` owns another. Open a group once per process and clone the
//! handle; two independent `open` calls for the same group would keep separate caches.
//!
//! Snapshot *data* is not stored here: the state machine (the tenant indexes) owns it.
//! This log records a snapshot's metadata ([`RaftLog::store_snapshot_meta`]) so raft-rs
//! can tell a lagging follower which snapshot to fetch. Compact at or below the latest
//! stored snapshot's index + 1, or a follower behind the compaction point cannot catch up.

mod segments;

use std::cmp;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use sled::Batch;

use segments::Segments;

const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_CONF_STATE: &[u8] = b"conf_state";
const KEY_TRUNCATED: &[u8] = b"truncated";
const KEY_SNAPSHOT: &[u8] = b"snapshot";
const KEY_FLOOR: &[u8] = b"floor";
/// Prefix of the configuration history's keys (see [`Cache::conf_history`]).
const KEY_CONF_AT: &[u8] = b"conf_at/";

fn conf_at_key(index: u64) -> Vec<u8> {
    [KEY_CONF_AT, &index.to_be_bytes()].concat()
}

/// What can go wrong reading or changing a [`RaftLog`].
#[derive(Debug, thiserror::Error)]
pub enum RaftLogError {
    /// sled failed to read or write.
    #[error("raft log storage: {0}")]
    Sled(#[from] sled::Error),
    /// Reading or writing a segment file failed.
    #[error("raft log segment: {0}")]
    Io(#[from] std::io::Error),
    /// A stored protobuf message could not be encoded or decoded.
    #[error("raft log encoding: {0}")]
    Protobuf(#[from] protobuf::ProtobufError),
    /// The stored log contradicts itself (a hole, a key that does not match its entry, ...).
    #[error("raft group {group} log is corrupt: {reason}")]
    Corrupt {
        /// The Raft group.
        group: u64,
        /// What was found.
        reason: String,
    },
    /// The entries to append are not consecutive.
    #[error("entries to append are not consecutive: index {found} follows {previous}")]
    NotContiguous {
        /// The index of the earlier entry.
        previous: u64,
        /// The index that followed it.
        found: u64,
    },
    /// The entries to append start before the first index: that part of the log is compacted.
    #[error("append at index {index} overwrites the compacted log (first index {first_index})")]
    AppendCompacted {
        /// The first index to append.
        index: u64,
        /// The log's first index.
        first_index: u64,
    },
    /// The entries to append would leave a hole after the last index.
    #[error("append at index {index} leaves a gap after last index {last_index}")]
    AppendGap {
        /// The first index to append.
        index: u64,
        /// The log's last index.
        last_index: u64,
    },
    /// An operation named an index past the end of the log.
    #[error("{operation} at index {index} is beyond the log (last index {last_index})")]
    BeyondLastIndex {
        /// The operation: `compact`, `commit` or `snapshot`.
        operation: &'static str,
        /// The index it named.
        index: u64,
        /// The log's last index.
        last_index: u64,
    },
    /// A snapshot is older than what the log already holds.
    #[error("snapshot at index {index} is out of date (current index {current})")]
    SnapshotOutOfDate {
        /// The snapshot's index.
        index: u64,
        /// The index it had to reach.
        current: u64,
    },
    /// The group already has a configuration, a hard state or entries.
    #[error("raft group {group} is already initialized")]
    AlreadyInitialized {
        /// The Raft group.
        group: u64,
    },
    /// A group cannot start without voters.
    #[error("raft group {group} cannot be initialized without voters")]
    NoVoters {
        /// The Raft group.
        group: u64,
    },
}

impl From<RaftLogError> for raft::Error {
    fn from(err: RaftLogError) -> Self {
        match err {
            RaftLogError::Protobuf(e) => raft::Error::CodecError(e),
            other => raft::Error::Store(StorageError::Other(Box::new(other))),
        }
    }
}

/// The sled-backed Raft log, hard state and configuration of one Raft group.
///
/// Implements [`raft::Storage`]. Clones share state; see the [module docs](self) for the
/// key layout and the crash contract.
#[derive(Clone, Debug)]
pub struct RaftLog {
    group: u64,
    db: sled::Db,
    state: sled::Tree,
    cache: Arc<RwLock<Cache>>,
    segments: Arc<RwLock<Segments>>,
    snapshot_source: Arc<RwLock<Option<SourceRef>>>,
}

/// A [`SnapshotSource`] that `RaftLog` can derive `Debug` with.
#[derive(Clone)]
struct SourceRef(Arc<dyn SnapshotSource>);

impl std::fmt::Debug for SourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotSource")
    }
}

/// The state machine's side of a snapshot, for a member that needs entries the log no longer
/// has: the state at some index, which the log sends with that index's term and
/// configuration.
pub trait SnapshotSource: Send + Sync {
    /// The highest index the state machine can build a snapshot at now: everything up to it
    /// is in the state. At least the log's truncation point.
    fn complete_up_to(&self) -> Result<u64, String>;

    /// Builds the snapshot data at `index` (at most [`SnapshotSource::complete_up_to`], or
    /// what [`SnapshotSource::latest_built`] said).
    fn build(&self, index: u64) -> Result<Vec<u8>, String>;

    /// The index of the newest snapshot built and still kept, which `build` answers without
    /// building again.
    fn latest_built(&self) -> Option<u64> {
        None
    }
}

/// What the hot path needs without asking sled; always equal to what sled holds.
#[derive(Debug, Default)]
struct Cache {
    /// The entry just before the first one: the compaction or snapshot point.
    truncated: LogPoint,
    /// The last entry, or `truncated` when the log is empty.
    last: LogPoint,
    hard_state: HardState,
    conf_state: ConfState,
    /// The configuration in force from each index on where it changed, from the one in force
    /// at the truncation point: a snapshot at that point must carry the configuration of that
    /// point, not the current one, or the member that installs it applies the changes after
    /// it on top of their own result (and raft-rs refuses, or worse, agrees).
    conf_history: BTreeMap<u64, ConfState>,
    snapshot: SnapshotMetadata,
}

impl Cache {
    fn first_index(&self) -> u64 {
        self.truncated.index + 1
    }

    /// The configuration in force at `index` (at or after the truncation point). A log
    /// written before the history was kept knows only its current configuration.
    fn conf_state_at(&self, index: u64) -> ConfState {
        self.conf_history
            .range(..=index)
            .next_back()
            .map_or_else(|| self.conf_state.clone(), |(_, conf)| conf.clone())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct LogPoint {
    index: u64,
    term: u64,
}

impl LogPoint {
    fn encode(self) -> [u8; 16] {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.index.to_be_bytes());
        bytes[8..].copy_from_slice(&self.term.to_be_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<LogPoint> {
        let index = bytes.get(..8)?.try_into().ok()?;
        let term = bytes.get(8..)?.try_into().ok()?;
        Some(LogPoint {
            index: u64::from_be_bytes(index),
            term: u64::from_be_bytes(term),
        })
    }
}

impl RaftLog {
    /// Opens (or creates) the log of `group`: its state in `db`, its entries in segment files
    /// under `dir`. Loads the state into memory and moves entries an earlier version kept in
    /// sled to segment files.
    ///
    /// Fails if sled or the files fail, or if the stored log is inconsistent.
    pub fn open(db: &sled::Db, dir: &Path, group: u64) -> Result<RaftLog, RaftLogError> {
        let state = db.open_tree(format!("raft-{group}-state"))?;
        let corrupt = |reason: String| RaftLogError::Corrupt { group, reason };

        let truncated = match state.get(KEY_TRUNCATED)? {
            Some(bytes) => LogPoint::decode(&bytes)
                .ok_or_else(|| corrupt(format!("truncation point is {} bytes", bytes.len())))?,
            None => LogPoint::default(),
        };
        let floor = match state.get(KEY_FLOOR)? {
            Some(bytes) => u64::from_be_bytes(
                bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| corrupt(format!("segment floor is {} bytes", bytes.len())))?,
            ),
            None => 0,
        };
        let mut segments = Segments::open(
            &dir.join(format!("group-{group}")),
            floor,
            truncated.index,
            group,
        )?;
        migrate_sled_entries(db, group, truncated, &mut segments)?;
        if segments.first_index() != truncated.index + 1 {
            return Err(corrupt(format!(
                "the first entry is {} but the log was truncated at {}",
                segments.first_index(),
                truncated.index
            )));
        }
        let last_index = segments.last_index();
        let last = match segments.term(last_index) {
            Some(term) => LogPoint {
                index: last_index,
                term,
            },
            None => truncated,
        };
        let cache = Cache {
            truncated,
            last,
            hard_state: read_message(&state, KEY_HARD_STATE)?.unwrap_or_default(),
            conf_state: read_message(&state, KEY_CONF_STATE)?.unwrap_or_default(),
            conf_history: read_conf_history(&state, group)?,
            snapshot: read_message(&state, KEY_SNAPSHOT)?.unwrap_or_default(),
        };
        if cache.hard_state.commit > last.index {
            return Err(corrupt(format!(
                "commit {} is beyond last index {}",
                cache.hard_state.commit, last.index
            )));
        }
        tracing::debug!(
            group,
            first_index = cache.first_index(),
            last_index = last.index,
            commit = cache.hard_state.commit,
            "opened raft log"
        );
        Ok(RaftLog {
            group,
            db: db.clone(),
            state,
            cache: Arc::new(RwLock::new(cache)),
            segments: Arc::new(RwLock::new(segments)),
            snapshot_source: Arc::new(RwLock::new(None)),
        })
    }

    /// Sets what builds snapshot data when a member needs entries below the first index.
    /// Without one, such a member waits (`SnapshotTemporarilyUnavailable`).
    pub fn set_snapshot_source(&self, source: Arc<dyn SnapshotSource>) {
        *self
            .snapshot_source
            .write()
            .expect("snapshot source lock poisoned") = Some(SourceRef(source));
    }

    /// The Raft group this log belongs to.
    pub fn group(&self) -> u64 {
        self.group
    }

    /// Sets the configuration of a fresh group; the log stays empty with first index 1.
    ///
    /// Fails with [`RaftLogError::AlreadyInitialized`] if the group has a configuration,
    /// a hard state or entries, and with [`RaftLogError::NoVoters`] if `voters` is empty.
    pub fn initialize_with_conf_state(&self, voters: Vec<u64>) -> Result<(), RaftLogError> {
        let mut cache = self.write_cache();
        if cache.conf_state != ConfState::default()
            || cache.hard_state != HardState::default()
            || cache.last.index != 0
        {
            return Err(RaftLogError::AlreadyInitialized { group: self.group });
        }
        if voters.is_empty() {
            return Err(RaftLogError::NoVoters { group: self.group });
        }
        let conf_state = ConfState {
            voters,
            ..ConfState::default()
        };
        // The group starts as if from a snapshot at index 1, term 1, holding this configuration:
        // a member that joins later has no entry 1 to start from and so receives a snapshot,
        // which is the only place the initial configuration is written down.
        let truncated = LogPoint { index: 1, term: 1 };
        let hard_state = HardState {
            term: 1,
            commit: 1,
            ..HardState::default()
        };
        let mut state = Batch::default();
        state.insert(KEY_CONF_STATE, conf_state.write_to_bytes()?);
        state.insert(conf_at_key(truncated.index), conf_state.write_to_bytes()?);
        state.insert(KEY_TRUNCATED, truncated.encode().as_slice());
        state.insert(KEY_HARD_STATE, hard_state.write_to_bytes()?);
        self.state.apply_batch(state)?;
        self.write_segments().compact(truncated.index + 1);
        cache.conf_history = BTreeMap::from([(truncated.index, conf_state.clone())]);
        cache.conf_state = conf_state;
        cache.truncated = truncated;
        cache.last = truncated;
        cache.hard_state = hard_state;
        Ok(())
    }

    /// Appends `entries`, first removing any stored entries at or after the first new index.
    ///
    /// `entries` must be consecutive, must not start before the first index and must not
    /// leave a gap after the last index. Atomic, not yet durable: see [`RaftLog::flush`].
    pub fn append(&self, entries: &[Entry]) -> Result<(), RaftLogError> {
        self.write_entries(entries, None)
    }

    /// Appends `entries` (as [`RaftLog::append`]) and saves `hard_state` in one atomic
    /// write, then flushes: on return both are durable, and a crash before that leaves
    /// either the old or the new log and hard state.
    pub fn append_and_persist(
        &self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), RaftLogError> {
        self.write_entries(entries, hard_state)?;
        self.flush()
    }

    /// Saves the hard state (term, vote, commit). Atomic, not yet durable.
    pub fn set_hard_state(&self, hard_state: &HardState) -> Result<(), RaftLogError> {
        let mut cache = self.write_cache();
        self.state
            .insert(KEY_HARD_STATE, hard_state.write_to_bytes()?)?;
        cache.hard_state = hard_state.clone();
        Ok(())
    }

    /// Saves the configuration (voters, learners) that the change at log index `index`
    /// made. Atomic, not yet durable.
    pub fn set_conf_state(&self, index: u64, conf_state: &ConfState) -> Result<(), RaftLogError> {
        let mut cache = self.write_cache();
        let bytes = conf_state.write_to_bytes()?;
        let mut state = Batch::default();
        state.insert(KEY_CONF_STATE, bytes.clone());
        state.insert(conf_at_key(index), bytes);
        self.state.apply_batch(state)?;
        cache.conf_state = conf_state.clone();
        cache.conf_history.insert(index, conf_state.clone());
        Ok(())
    }

    /// Whether the configuration change at log index `index` is recorded already (by
    /// [`RaftLog::set_conf_state`], or as part of a snapshot at that index).
    pub fn has_conf_state_from(&self, index: u64) -> bool {
        self.read_cache().conf_history.contains_key(&index)
    }

    /// Sets the hard state's commit index, as a `LightReady` reports it. Atomic, not yet
    /// durable. Fails if `commit` is beyond the last index.
    pub fn set_commit(&self, commit: u64) -> Result<(), RaftLogError> {
        let mut cache = self.write_cache();
        if commit > cache.last.index {
            return Err(RaftLogError::BeyondLastIndex {
                operation: "commit",
                index: commit,
                last_index: cache.last.index,
            });
        }
        let mut hard_state = cache.hard_state.clone();
        hard_state.commit = commit;
        self.state
            .insert(KEY_HARD_STATE, hard_state.write_to_bytes()?)?;
        cache.hard_state = hard_state;
        Ok(())
    }

    /// Discards the entries before `compact_index`; the term of `compact_index - 1` stays
    /// answerable. A `compact_index` at or below the first index does nothing.
    ///
    /// It is the caller's job not to compact past what has been applied and snapshotted.
    /// Fails if `compact_index` is beyond the last index + 1. Atomic, not yet durable.
    pub fn compact(&self, compact_index: u64) -> Result<(), RaftLogError> {
        let mut cache = self.write_cache();
        let first_index = cache.first_index();
        if compact_index <= first_index {
            return Ok(());
        }
        if compact_index > cache.last.index + 1 {
            return Err(RaftLogError::BeyondLastIndex {
                operation: "compact",
                index: compact_index,
                last_index: cache.last.index,
            });
        }
        let truncated = LogPoint {
            index: compact_index - 1,
            term: self.term_within(&cache, compact_index - 1)?,
        };
        // The configurations before the one in force at the truncation point are not needed.
        let superseded: Vec<u64> = match cache.conf_history.range(..=truncated.index).next_back() {
            Some((&in_force, _)) => cache
                .conf_history
                .range(..in_force)
                .map(|(i, _)| *i)
                .collect(),
            None => Vec::new(),
        };
        let mut state = Batch::default();
        state.insert(KEY_TRUNCATED, truncated.encode().as_slice());
        for index in &superseded {
            state.remove(conf_at_key(*index));
        }
        self.state.apply_batch(state)?;
        // The files below are removed at the next flush, after this is durable.
        self.write_segments().compact(compact_index);
        cache.truncated = truncated;
        for index in superseded {
            cache.conf_history.remove(&index);
        }
        tracing::debug!(group = self.group, compact_index, "compacted raft log");
        Ok(())
    }

    /// Resets the log to `snapshot`'s point: removes every entry, makes the snapshot's index
    /// and term the truncation point, sets the commit to the snapshot's index (and the term
    /// to at least its term), and takes the snapshot's configuration. The snapshot's data is
    /// not stored here. Atomic, not yet durable.
    ///
    /// Fails with [`RaftLogError::SnapshotOutOfDate`] if the snapshot is not newer than the
    /// entry before the first index.
    pub fn apply_snapshot(&self, snapshot: Snapshot) -> Result<(), RaftLogError> {
        let meta = snapshot.get_metadata();
        let mut cache = self.write_cache();
        if meta.index < cache.first_index() {
            return Err(RaftLogError::SnapshotOutOfDate {
                index: meta.index,
                current: cache.truncated.index,
            });
        }
        let point = LogPoint {
            index: meta.index,
            term: meta.term,
        };
        let mut hard_state = cache.hard_state.clone();
        hard_state.term = cmp::max(hard_state.term, meta.term);
        hard_state.commit = meta.index;
        let conf_state = meta.get_conf_state().clone();
        let mut segments = self.write_segments();
        let floor = segments.restart_after(point.index)?;
        let mut state = Batch::default();
        state.insert(KEY_TRUNCATED, point.encode().as_slice());
        state.insert(KEY_HARD_STATE, hard_state.write_to_bytes()?);
        state.insert(KEY_CONF_STATE, conf_state.write_to_bytes()?);
        for index in cache.conf_history.keys() {
            state.remove(conf_at_key(*index));
        }
        state.insert(conf_at_key(point.index), conf_state.write_to_bytes()?);
        state.insert(KEY_SNAPSHOT, meta.write_to_bytes()?);
        state.insert(KEY_FLOOR, floor.to_be_bytes().as_slice());
        self.state.apply_batch(state)?;
        // Durable now: entries appended after the snapshot go to files from the new floor on,
        // and a crash must not find them after the old entries.
        self.db.flush()?;
        segments.remove_doomed()?;
        drop(segments);
        cache.truncated = point;
        cache.last = point;
        cache.hard_state = hard_state;
        cache.conf_history = BTreeMap::from([(point.index, conf_state.clone())]);
        cache.conf_state = conf_state;
        cache.snapshot = meta.clone();
        tracing::debug!(
            group = self.group,
            index = point.index,
            term = point.term,
            "applied raft snapshot"
        );
        Ok(())
    }

    /// Records that the state machine holds a snapshot described by `meta`; [`Storage::snapshot`]
    /// returns it from now on. Atomic, not yet durable.
    ///
    /// Fails if `meta` is older than the stored snapshot or beyond the last index.
    pub fn store_snapshot_meta(&self, meta: &SnapshotMetadata) -> Result<(), RaftLogError> {
        let mut cache = self.write_cache();
        if meta.index < cache.snapshot.index {
            return Err(RaftLogError::SnapshotOutOfDate {
                index: meta.index,
                current: cache.snapshot.index,
            });
        }
        if meta.index > cache.last.index {
            return Err(RaftLogError::BeyondLastIndex {
                operation: "snapshot",
                index: meta.index,
                last_index: cache.last.index,
            });
        }
        self.state.insert(KEY_SNAPSHOT, meta.write_to_bytes()?)?;
        cache.snapshot = meta.clone();
        Ok(())
    }

    /// Makes every write so far durable (fsync): the entries first, then the state. Then
    /// removes segment files that compaction emptied.
    pub fn flush(&self) -> Result<(), RaftLogError> {
        let mut segments = self.write_segments();
        segments.sync()?;
        self.db.flush()?;
        segments.remove_doomed()
    }

    fn write_entries(
        &self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), RaftLogError> {
        let mut cache = self.write_cache();
        let mut last = cache.last;
        if let (Some(first), Some(new_last)) = (entries.first(), entries.last()) {
            for pair in entries.windows(2) {
                if pair[1].index != pair[0].index + 1 {
                    return Err(RaftLogError::NotContiguous {
                        previous: pair[0].index,
                        found: pair[1].index,
                    });
                }
            }
            if first.index < cache.first_index() {
                return Err(RaftLogError::AppendCompacted {
                    index: first.index,
                    first_index: cache.first_index(),
                });
            }
            if first.index > cache.last.index + 1 {
                return Err(RaftLogError::AppendGap {
                    index: first.index,
                    last_index: cache.last.index,
                });
            }
            let mut segments = self.write_segments();
            segments.append(entries)?;
            if hard_state.is_some() {
                // sled flushes on its own timer too: the entries must be on disk before a
                // hard state whose commit index may point at them.
                segments.sync()?;
            }
            last = LogPoint {
                index: new_last.index,
                term: new_last.term,
            };
        }
        if let Some(hard_state) = hard_state {
            self.state
                .insert(KEY_HARD_STATE, hard_state.write_to_bytes()?)?;
        }
        cache.last = last;
        if let Some(hard_state) = hard_state {
            cache.hard_state = hard_state.clone();
        }
        Ok(())
    }

    /// The term of `index`, which must lie in `[truncated.index, last.index]`.
    fn term_within(&self, cache: &Cache, index: u64) -> Result<u64, RaftLogError> {
        if index == cache.truncated.index {
            return Ok(cache.truncated.term);
        }
        if index == cache.last.index {
            return Ok(cache.last.term);
        }
        self.read_segments()
            .term(index)
            .ok_or_else(|| self.corrupt(format!("entry {index} is missing")))
    }

    /// Reads `[low, high)`, stopping once `max_size` is exceeded, then trims the result with
    /// raft's own `limit_size` so the size rule is exactly raft-rs's.
    fn read_entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> Result<Vec<Entry>, RaftLogError> {
        let segments = self.read_segments();
        let mut entries = Vec::new();
        let mut size = 0u64;
        for index in low..high {
            let entry = segments.read(index)?;
            size += u64::from(entry.compute_size());
            entries.push(entry);
            if max_size.is_some_and(|max| size > max) {
                break;
            }
        }
        raft::util::limit_size(&mut entries, max_size);
        Ok(entries)
    }

    fn corrupt(&self, reason: String) -> RaftLogError {
        RaftLogError::Corrupt {
            group: self.group,
            reason,
        }
    }

    // The cache is changed only by plain assignments after sled succeeded, so a panic
    // elsewhere while holding the lock cannot leave it half-updated: poisoning is ignored.
    fn read_cache(&self) -> RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_cache(&self) -> RwLockWriteGuard<'_, Cache> {
        self.cache.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many entries the segment files hold for the log.
    #[cfg(test)]
    fn stored_len(&self) -> usize {
        let segments = self.read_segments();
        (segments.last_index() + 1 - segments.first_index()) as usize
    }

    // Lock order: the cache first, then the segments.
    fn read_segments(&self) -> RwLockReadGuard<'_, Segments> {
        self.segments.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_segments(&self) -> RwLockWriteGuard<'_, Segments> {
        self.segments
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let cache = self.read_cache();
        Ok(RaftState::new(
            cache.hard_state.clone(),
            cache.conf_state.clone(),
        ))
    }

    /// Entries in `[low, high)`, at least one if any, at most `max_size` bytes beyond the
    /// first. `Compacted` if `low` is before the first index; `Unavailable` (where raft-rs's
    /// `MemStorage` panics) if `high` is past the last index + 1.
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let cache = self.read_cache();
        if low < cache.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > cache.last.index + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if low >= high {
            return Ok(Vec::new());
        }
        Ok(self.read_entries(low, high, max_size.into())?)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let cache = self.read_cache();
        if idx < cache.truncated.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > cache.last.index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.term_within(&cache, idx)?)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.read_cache().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.read_cache().last.index)
    }

    /// A snapshot at the log's truncation point, its data built by the snapshot source; without
    /// a source, the latest stored snapshot's metadata. `SnapshotTemporarilyUnavailable` when
    /// neither reaches `request_index`, or the source fails (raft-rs asks again later).
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let unavailable = || raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable);
        let source = self
            .snapshot_source
            .read()
            .expect("snapshot source lock poisoned")
            .clone();
        let Some(SourceRef(source)) = source else {
            let cache = self.read_cache();
            if cache.snapshot.index == 0 || cache.snapshot.index < request_index {
                return Err(unavailable());
            }
            let mut snapshot = Snapshot::default();
            snapshot.set_metadata(cache.snapshot.clone());
            return Ok(snapshot);
        };
        let complete = source.complete_up_to().map_err(|e| {
            tracing::warn!(group = self.group, to, error = %e, "cannot build a snapshot");
            unavailable()
        })?;
        // The entries after a snapshot must still be in the log, and the member must be in its
        // configuration, or raft-rs on the member refuses it (a member added after the
        // truncation point waits for the state to pass its addition). The last one built, if
        // it will do, saves building another (and keeps one that a member may be fetching);
        // else one as recent as the state allows.
        let metadata = {
            let cache = self.read_cache();
            // The configuration at `index`, if a snapshot there will do.
            let usable = |index: u64| {
                if index == 0
                    || index < cache.truncated.index
                    || index < request_index
                    || index > cache.last.index
                {
                    return None;
                }
                let conf_state = cache.conf_state_at(index);
                [
                    &conf_state.voters,
                    &conf_state.learners,
                    &conf_state.voters_outgoing,
                    &conf_state.learners_next,
                ]
                .iter()
                .any(|ids| ids.contains(&to))
                .then_some((index, conf_state))
            };
            let candidates = [source.latest_built(), Some(complete.min(cache.last.index))];
            let Some((index, conf_state)) = candidates.into_iter().flatten().find_map(usable)
            else {
                tracing::debug!(
                    group = self.group,
                    to,
                    complete,
                    truncated = cache.truncated.index,
                    request_index,
                    "no snapshot yet: the state is not complete past the truncation point and the member's addition"
                );
                return Err(unavailable());
            };
            SnapshotMetadata {
                index,
                term: self.term_within(&cache, index).map_err(|_| unavailable())?,
                conf_state: Some(conf_state).into(),
                ..SnapshotMetadata::default()
            }
        };
        let data = source.build(metadata.index).map_err(|e| {
            tracing::warn!(group = self.group, to, error = %e, "cannot build a snapshot");
            unavailable()
        })?;
        Ok(Snapshot {
            data: data.into(),
            metadata: Some(metadata).into(),
            ..Snapshot::default()
        })
    }
}

/// Moves the entries an earlier version kept in the sled tree `raft-{group}-entries` into
/// `segments`, then empties the tree. Safe to repeat after a crash part way: appending an
/// entry again replaces it.
fn migrate_sled_entries(
    db: &sled::Db,
    group: u64,
    truncated: LogPoint,
    segments: &mut Segments,
) -> Result<(), RaftLogError> {
    let name = format!("raft-{group}-entries");
    if !db
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == name.as_bytes())
    {
        return Ok(());
    }
    let tree = db.open_tree(&name)?;
    let mut moved = 0u64;
    let mut batch = Vec::new();
    for item in tree.iter() {
        let (_, value) = item?;
        let entry: Entry = decode(&value)?;
        if entry.index <= truncated.index {
            continue;
        }
        batch.push(entry);
        if batch.len() >= 256 {
            moved += batch.len() as u64;
            segments.append(&batch)?;
            batch.clear();
        }
    }
    moved += batch.len() as u64;
    segments.append(&batch)?;
    segments.sync()?;
    drop(tree);
    db.drop_tree(name.as_bytes())?;
    db.flush()?;
    tracing::info!(
        group,
        moved,
        "moved raft log entries from sled to segment files"
    );
    Ok(())
}

fn decode<M: protobuf::Message>(bytes: &[u8]) -> Result<M, RaftLogError> {
    Ok(M::parse_from_bytes(bytes)?)
}

/// The configuration history kept under [`KEY_CONF_AT`].
fn read_conf_history(
    state: &sled::Tree,
    group: u64,
) -> Result<BTreeMap<u64, ConfState>, RaftLogError> {
    let mut history = BTreeMap::new();
    for item in state.scan_prefix(KEY_CONF_AT) {
        let (key, value) = item?;
        let index = key[KEY_CONF_AT.len()..]
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| RaftLogError::Corrupt {
                group,
                reason: format!("configuration history key of {} bytes", key.len()),
            })?;
        history.insert(index, decode(&value)?);
    }
    Ok(history)
}

fn read_message<M: protobuf::Message>(
    tree: &sled::Tree,
    key: &[u8],
) -> Result<Option<M>, RaftLogError> {
    tree.get(key)?.map(|bytes| decode(&bytes)).transpose()
}

#[cfg(test)]
mod tests;
