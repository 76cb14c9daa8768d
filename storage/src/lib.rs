//! Meniscus storage: everything that lives on disk.
//!
//! - [`RaftLog`]: a sled-backed `raft::Storage` (entries, hard state, conf state, snapshot point).
//! - [`Metadata`]: the metadata state machine in sled (tenants, token hashes), applied from the log.
//! - [`TenantIndex`] and [`IndexStore`]: one tantivy index per tenant, the events' store and search
//!   index. Each commit's payload records the last Raft index it contains, so a restarted node
//!   replays the log from there and indexes nothing twice.
//! - [`Command`]: what one Raft entry carries.
//!
//! ```no_run
//! # fn main() -> meniscus_storage::Result<()> {
//! let db = sled::open("/tmp/meniscus-doc")?;
//! let metadata = meniscus_storage::Metadata::open(&db)?;
//! assert_eq!(metadata.tenants()?.len(), 0);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod checkpoint;
mod command;
mod error;
mod index_store;
mod metadata;
pub mod query_limits;
mod query_terms;
pub mod raft_log;
mod scan;
mod schema;
mod search;
mod tail;
mod tenant_index;
pub mod tokens;

pub use checkpoint::{
    adopt_checkpoint, checkpoint_index, commit_payload, missing_files, CheckpointFile,
};
pub use command::{
    AddAdminToken, AddMember, AppendEvents, Command, CommandKind, CompactLog, CreateShard,
    CreateTenant, DeletePipeline, PlaceShard, PutPipeline, RemoveMember, RotateToken,
};
pub use error::{Error, Result};
pub use index_store::IndexStore;
pub use metadata::{
    ApplyOutcome, MemberRecord, Metadata, PipelineRecord, Principal, ShardRecord, TenantRecord,
};
pub use raft_log::{RaftLog, RaftLogError, SnapshotSource};
pub use search::{SearchHit, SearchRequest, SearchResponse, MAX_LIMIT};
pub use tail::SharedBatch;
pub use tenant_index::{TenantIndex, TenantWriter};

/// Checks that a tenant name is safe to use as a directory name and in URLs.
pub fn validate_tenant_name(name: &str) -> Result<()> {
    let ok = (1..=63).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidTenantName(format!(
            "{name:?}: a tenant name is 1 to 63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
        )))
    }
}
