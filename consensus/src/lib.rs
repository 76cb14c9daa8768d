//! Meniscus consensus: the raft-rs driver that orders and persists every write.
//!
//! One [`RaftNode`] runs one Raft group on a dedicated thread: it ticks, takes proposals,
//! persists entries and hard state (fsync) before anything depends on them, and hands committed
//! entries to a [`StateMachine`]. A proposal's future resolves only when its entry is committed
//! *and* applied, so an acknowledgement means "durable on a majority".
//!
//! # Layout
//! - `node`: [`RaftNode`], its thread and the Ready loop.
//! - `handle`: [`RaftHandle`], the cloneable way in for async code.
//! - `router`: [`Router`], which hands each inbound message to its group.
//! - `transport`: node-to-node frames; `peer_tls`: the certificates that authenticate them.
//! - `logger`: raft-rs logs through slog; this bridges it into `tracing`.
#![deny(missing_docs)]

mod error;
mod handle;
mod logger;
mod node;
pub mod peer_tls;
mod router;
pub mod transport;

pub use error::{Error, Result};
pub use handle::{Committed, RaftHandle, RaftStatus, ReplicaProgress};
pub use node::{ApplyError, RaftConfig, RaftNode, RaftThread, StateMachine};
pub use router::Router;
