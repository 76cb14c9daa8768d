/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// sled failed (I/O, corruption).
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// tantivy failed.
    #[error("index: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// A filesystem operation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The Raft log store failed.
    #[error(transparent)]
    RaftLog(#[from] crate::raft_log::RaftLogError),
    /// A raft-rs storage error.
    #[error("raft storage: {0}")]
    Raft(#[from] raft::Error),
    /// A protobuf (raft-rs message) failed to decode.
    #[error("raft message: {0}")]
    Protobuf(#[from] protobuf::ProtobufError),
    /// A prost record failed to decode.
    #[error("corrupt record: {0}")]
    Decode(#[from] prost::DecodeError),
    /// An event failed to decode.
    #[error("event: {0}")]
    Event(#[from] meniscus_event::Error),
    /// Stored bytes do not make sense.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A search query could not be parsed.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// A pagination cursor is not one this node issued.
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    /// A tenant name is not acceptable.
    #[error("invalid tenant name {0}")]
    InvalidTenantName(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
