/// Errors from the actor layer and the node facade.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] meniscus_storage::Error),
    /// Consensus failed or refused.
    #[error(transparent)]
    Consensus(#[from] meniscus_consensus::Error),
    /// An actor could not be started or reached.
    #[error("actor: {0}")]
    Actor(String),
    /// Indexing is behind; the caller should retry later.
    #[error("{0}")]
    Overloaded(String),
    /// A membership change that cannot be made (unknown node, id in use, last voter).
    #[error("{0}")]
    InvalidMember(String),
    /// A request's argument is out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// A pipeline's program does not compile.
    #[error(transparent)]
    InvalidPipeline(#[from] meniscus_pipeline::CompileError),
    /// No such pipeline.
    #[error("{0}")]
    NotFound(String),
    /// The tenant does not exist.
    #[error("unknown tenant {0:?}")]
    UnknownTenant(String),
    /// This node cannot serve the request now (a shard it will run is not started yet).
    #[error("{0}")]
    Unavailable(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
