/// Errors from the consensus layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Too many proposals are waiting; the caller should retry later.
    #[error("the node has too many writes in flight; retry shortly")]
    Overloaded,
    /// This node is not the leader and cannot take proposals.
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader's id, if known.
        leader: Option<u64>,
    },
    /// The entry was replaced by another leader's entry before it committed; retry it.
    #[error("the write was dropped by a leader change; retry it")]
    Dropped,
    /// The leader refused a proposal this node forwarded to it.
    #[error("the leader refused the forwarded write: {0}")]
    Forwarded(String),
    /// The write cannot be applied (it does not decode, or means nothing); nothing was stored.
    #[error("the write cannot be applied: {0}")]
    Unappliable(String),
    /// The Raft thread has stopped (shutdown or a fatal storage error).
    #[error("the consensus thread has stopped")]
    Stopped,
    /// raft-rs refused an operation.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The log store failed.
    #[error("storage: {0}")]
    Storage(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
