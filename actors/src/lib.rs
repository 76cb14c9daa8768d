//! Meniscus actors: the per-tenant supervision trees, and the [`Node`] that wires storage,
//! consensus and actors together.
//!
//! ```text
//! NodeSupervisor
//!  └─ TenantSupervisor (one per tenant, started on first use)
//!      └─ Indexer (adds committed events to the tenant's tantivy index; stops when idle)
//! ```
//!
//! A node runs the metadata Raft group and the event shard groups placed on it; each group
//! (`group::Group`) has its own log, state machine, tree of tenant actors, snapshots and
//! background tasks. Committed entries reach the actors through the [`Applier`], the group's
//! state machine.
//! Everything an actor holds in memory can be rebuilt from the Raft log, so a failed actor is
//! simply restarted: it catches up from its index's last commit. A panic in one tenant's actor
//! restarts that actor only.
#![deny(missing_docs)]

mod answers;
mod applier;
mod context;
mod error;
mod group;
mod indexer;
mod log_events;
mod membership;
mod mirror;
mod node;
mod node_supervisor;
pub mod placement;
mod processing;
mod progress;
mod remote;
mod snapshot;
mod tenant_supervisor;
mod writer_thread;

pub use applier::Applier;
pub use context::{IndexerSettings, NodeContext};
pub use error::{Error, Result};
pub use indexer::{Indexer, IndexerMsg};
pub use meniscus_consensus::peer_tls::{self, CertificateAuthority, PeerTls};
pub use meniscus_consensus::transport::PeerSecurity;
pub use node::{
    ClusterOptions, ClusterStatus, GroupStatus, IndexesStatus, Node, NodeOptions, SearchOptions,
    SearchOutcome, ShardPlacement, DEFAULT_MAX_INDEXING_BACKLOG_BYTES,
};
pub use node_supervisor::{NodeMsg, NodeSupervisor};
pub use processing::{PipelineStats, TestOutcome};
pub use progress::{DispatchProgress, QueuedBatch};
pub use snapshot::SnapshotStore;
pub use tenant_supervisor::{TenantMsg, TenantStatus, TenantSupervisor};
