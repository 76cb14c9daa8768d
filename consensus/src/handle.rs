//! The cloneable, async way into a running Raft group.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::transport::{Forward, ForwardReply, Inbound};
use crate::{Error, Result};

/// A proposal whose entry is committed and applied.
#[derive(Debug, Clone)]
pub struct Committed<O> {
    /// The entry's Raft index: the `commit_index` a publisher gets back.
    pub index: u64,
    /// What the state machine said when it applied the entry.
    pub output: O,
}

/// A snapshot of the group's state, for health checks and status pages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftStatus {
    /// This node's id.
    pub id: u64,
    /// Current term.
    pub term: u64,
    /// The leader's id, 0 when unknown.
    pub leader: u64,
    /// Highest committed index.
    pub commit: u64,
    /// Highest applied index.
    pub applied: u64,
    /// Whether the Raft thread is running.
    pub running: bool,
    /// Voting members.
    pub voters: Vec<u64>,
    /// Non-voting members (catching up before they vote).
    pub learners: Vec<u64>,
    /// Whether the group is in a joint configuration (old and new voters must both agree until
    /// the leader proposes leaving it).
    pub joint: bool,
    /// Every member's replication progress, as the leader sees it; empty on other nodes.
    pub replicas: Vec<ReplicaProgress>,
    /// Index of the last configuration change proposed by this leader (0 if none): another
    /// may be proposed once `applied` reaches it.
    pub pending_conf_index: u64,
    /// Committed entries this node skipped because they cannot be applied (every replica
    /// skips the same ones), since its Raft thread started.
    pub unappliable: u64,
}

/// How far the leader has replicated its log to one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaProgress {
    /// The member's id.
    pub id: u64,
    /// Highest log index known to be stored on it.
    pub matched: u64,
    /// Whether it answered within the last election timeout.
    pub recent_active: bool,
    /// The index of the last snapshot sent to it, until it has installed it (0 otherwise): it
    /// will need the log from there on.
    pub pending_snapshot: u64,
}

pub(crate) enum Request<O> {
    Propose {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Committed<O>>>,
    },
    Step(Box<raft::prelude::Message>),
    /// A proposal another node forwarded to us (we should be the leader).
    Forwarded {
        from: u64,
        forward: Forward,
    },
    /// The leader's answer to a proposal we forwarded.
    ForwardReply(ForwardReply),
    /// A linearizable read: answered once this node has applied everything committed when
    /// the read was asked.
    ReadIndex(oneshot::Sender<Result<u64>>),
    /// A membership change (leader only).
    ChangeMembership {
        change: raft::prelude::ConfChangeV2,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Hand leadership to another voter (leader only).
    TransferLeader(u64),
    Shutdown,
}

/// Sends proposals to a Raft group's thread. Cheap to clone.
pub struct RaftHandle<O> {
    pub(crate) requests: SyncSender<Request<O>>,
    pub(crate) status: Arc<Mutex<RaftStatus>>,
    pub(crate) quiet: Arc<AtomicBool>,
}

impl<O> Clone for RaftHandle<O> {
    fn clone(&self) -> Self {
        RaftHandle {
            requests: self.requests.clone(),
            status: self.status.clone(),
            quiet: self.quiet.clone(),
        }
    }
}

impl<O: Send + 'static> RaftHandle<O> {
    /// While quiet, this member answers neither the leader's heartbeats nor its appends; it
    /// still takes them in (so it knows who leads and does not campaign) and votes. To the
    /// leader it looks unreachable, so it sends it no more entries until it answers again.
    /// A member fetching a snapshot is quiet: the entries the leader would probe it with follow
    /// the snapshot, so it cannot use them, and on a slow link they crowd out the snapshot.
    pub fn set_quiet(&self, quiet: bool) {
        self.quiet.store(quiet, Ordering::Relaxed);
    }

    /// Proposes `data` and waits until its entry is committed and applied.
    ///
    /// Fails fast with [`Error::Overloaded`] when the proposal queue is full, so callers can push
    /// back on their clients instead of buffering without bound.
    pub async fn propose(&self, data: Vec<u8>) -> Result<Committed<O>> {
        self.ask(|reply| Request::Propose { data, reply }).await
    }

    /// Waits until this node has applied every entry committed (cluster-wide) when it was
    /// called, and returns that index: a read of local state after this sees every write
    /// acknowledged before the call, on any node (Raft's ReadIndex).
    pub async fn read_index(&self) -> Result<u64> {
        self.ask(Request::ReadIndex).await
    }

    /// Proposes a membership change. Only the leader can; the change takes effect when its
    /// entry is applied (see [`RaftStatus::voters`]). Returns once it is proposed.
    pub async fn change_membership(&self, change: raft::prelude::ConfChangeV2) -> Result<()> {
        self.ask(|reply| Request::ChangeMembership { change, reply })
            .await
    }

    /// Queues a request that carries a reply channel and waits for the answer. Fails fast with
    /// [`Error::Overloaded`] when the queue is full.
    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T>>) -> Request<O>,
    ) -> Result<T> {
        let (reply, response) = oneshot::channel();
        match self.requests.try_send(request(reply)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(Error::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(Error::Stopped),
        }
        response.await.map_err(|_| Error::Stopped)?
    }

    /// Asks the leader to hand leadership to voter `to` (before removing itself, say).
    pub fn transfer_leader(&self, to: u64) {
        let _ = self.requests.try_send(Request::TransferLeader(to));
    }

    /// The group's current state.
    pub fn status(&self) -> RaftStatus {
        self.status
            .lock()
            .expect("raft status lock poisoned")
            .clone()
    }

    /// Whether this node can take writes now (it is running and is the leader).
    pub fn is_writable(&self) -> bool {
        let s = self.status();
        s.running && s.leader == s.id
    }

    /// Delivers a message from a peer (snapshot file transfers are not for Raft and are
    /// ignored here). Dropped when the queue is full: Raft retransmits, and a
    /// forwarded proposal whose answer is lost times out at its sender.
    pub fn deliver(&self, inbound: Inbound) {
        let request = match inbound {
            Inbound::Raft { message, .. } => Request::Step(Box::new(message)),
            Inbound::Forward { from, forward, .. } => Request::Forwarded { from, forward },
            Inbound::ForwardReply { reply, .. } => Request::ForwardReply(reply),
            // Snapshot files and index copies travel beside Raft, not through it: see the
            // node's snapshot store.
            Inbound::SnapshotPull { .. }
            | Inbound::SnapshotPiece { .. }
            | Inbound::MirrorRequest { .. }
            | Inbound::MirrorOffer { .. }
            | Inbound::ShardRequest { .. }
            | Inbound::ShardReply(_) => return,
        };
        let _ = self.requests.try_send(request);
    }

    /// Asks the Raft thread to stop after the current Ready.
    pub fn shutdown(&self) {
        let _ = self.requests.try_send(Request::Shutdown);
    }
}
