//! What every actor of a node shares.

use std::sync::Arc;
use std::time::Duration;

use meniscus_storage::{IndexStore, RaftLog};

use crate::DispatchProgress;

/// How indexers behave.
#[derive(Debug, Clone)]
pub struct IndexerSettings {
    /// How often an indexer commits (the near-real-time delay between ack and searchable).
    pub commit_interval: Duration,
    /// An indexer with nothing to do for this long commits and stops; it restarts on demand.
    pub idle_timeout: Duration,
    /// tantivy writer memory budget per tenant.
    pub memory_budget_bytes: usize,
    /// tantivy indexing threads per tenant.
    pub threads: usize,
    /// How much nicer than the rest of the process indexing runs (0: as nice): ingest and
    /// searches come first, and the index catches up when the CPU is free (see `writer_thread`).
    pub nice: i32,
    /// Restarts allowed within `restart_window` before a tenant's indexer is left stopped.
    pub max_restarts: usize,
    /// See `max_restarts`.
    pub restart_window: Duration,
}

impl Default for IndexerSettings {
    fn default() -> Self {
        IndexerSettings {
            commit_interval: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(300),
            memory_budget_bytes: 128 * 1024 * 1024,
            threads: 2,
            nice: 10,
            max_restarts: 5,
            restart_window: Duration::from_secs(60),
        }
    }
}

/// Shared handles for the actors of one node.
pub struct NodeContext {
    /// The tenant indexes.
    pub indexes: IndexStore,
    /// The Raft log, read by indexers to catch up.
    pub log: RaftLog,
    /// Dispatch bookkeeping.
    pub progress: Arc<DispatchProgress>,
    /// Indexer behaviour.
    pub settings: IndexerSettings,
    /// Woken when more events are searchable (an index commit, an entry in a tail of
    /// unindexed events), for searches that wait to read their writes.
    pub searchable_changed: tokio::sync::Notify,
}
