//! Hands what the transport receives to the Raft group it is addressed to.
//!
//! Every group on a node (the metadata group, and the event shard groups to come) shares the
//! node's one transport; frames carry their group id, and the router delivers each to that
//! group's thread. A message for a group this node does not run (a replica that was moved
//! away, or one not created yet) is counted and dropped: Raft retransmits what matters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::transport::Inbound;
use crate::RaftHandle;

type Deliver = Arc<dyn Fn(Inbound) + Send + Sync>;

/// Group id -> where its messages go.
#[derive(Default)]
pub struct Router {
    groups: RwLock<HashMap<u64, Deliver>>,
    unrouted: AtomicU64,
}

impl Router {
    /// A router with no groups.
    pub fn new() -> Self {
        Router::default()
    }

    /// Delivers group `group`'s messages to `handle` from now on.
    pub fn add<O: Send + 'static>(&self, group: u64, handle: RaftHandle<O>) {
        let deliver: Deliver = Arc::new(move |inbound| handle.deliver(inbound));
        self.groups
            .write()
            .expect("router lock poisoned")
            .insert(group, deliver);
    }

    /// Stops delivering group `group`'s messages (its replica left this node).
    pub fn remove(&self, group: u64) {
        self.groups
            .write()
            .expect("router lock poisoned")
            .remove(&group);
    }

    /// Delivers a Raft message, forwarded proposal or forward answer to its group. Snapshot
    /// transfers and mirror requests are not Raft's: they are handed back for the caller.
    pub fn route(&self, inbound: Inbound) -> Option<Inbound> {
        let group = match &inbound {
            Inbound::Raft { group, .. }
            | Inbound::Forward { group, .. }
            | Inbound::ForwardReply { group, .. } => *group,
            Inbound::SnapshotPull { .. }
            | Inbound::SnapshotPiece { .. }
            | Inbound::MirrorRequest { .. }
            | Inbound::MirrorOffer { .. }
            | Inbound::ShardRequest { .. }
            | Inbound::ShardReply(_) => return Some(inbound),
        };
        let deliver = self
            .groups
            .read()
            .expect("router lock poisoned")
            .get(&group)
            .cloned();
        match deliver {
            Some(deliver) => deliver(inbound),
            None => {
                let dropped = self.unrouted.fetch_add(1, Ordering::Relaxed) + 1;
                // The first one and then every thousandth: a stray peer must not flood the log.
                if dropped % 1000 == 1 {
                    tracing::debug!(
                        group,
                        dropped,
                        "a message for a group this node does not run"
                    );
                }
            }
        }
        None
    }

    /// How many messages named a group this node does not run.
    pub fn unrouted(&self) -> u64 {
        self.unrouted.load(Ordering::Relaxed)
    }
}
