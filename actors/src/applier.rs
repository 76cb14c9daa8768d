//! The Raft group's state machine: applies metadata, routes event batches to the actors.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use meniscus_consensus::{ApplyError, StateMachine};
use meniscus_storage::{ApplyOutcome, Command, CommandKind, Metadata};
use ractor::ActorRef;

use meniscus_consensus::transport::Transport;

use crate::{DispatchProgress, NodeMsg, SnapshotStore};

/// Applies committed entries on the Raft thread.
pub struct Applier {
    metadata: Metadata,
    supervisor: ActorRef<NodeMsg>,
    progress: Arc<DispatchProgress>,
    snapshots: Option<Arc<SnapshotStore>>,
    /// This node's id and transport, to reach members added at run time.
    peers: Option<(u64, Arc<Transport>)>,
    /// Whether events go to this node's indexers; a follower that copies the leader's
    /// indexes only records them (see `mirror`).
    dispatch: Arc<AtomicBool>,
}

impl Applier {
    /// An applier writing metadata to `metadata` and sending events to `supervisor`.
    pub fn new(
        metadata: Metadata,
        supervisor: ActorRef<NodeMsg>,
        progress: Arc<DispatchProgress>,
    ) -> Self {
        Applier {
            metadata,
            supervisor,
            progress,
            snapshots: None,
            peers: None,
            dispatch: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether events go to the indexers is read from `dispatch` from now on.
    pub fn with_dispatch(mut self, dispatch: Arc<AtomicBool>) -> Self {
        self.dispatch = dispatch;
        self
    }

    /// Connects to members as they are added (node `id`'s view, through `transport`).
    pub fn with_transport(mut self, id: u64, transport: Arc<Transport>) -> Self {
        self.peers = Some((id, transport));
        self
    }

    /// Installs snapshots from the leader through `snapshots` (a cluster member needs this).
    pub fn with_snapshots(mut self, snapshots: Arc<SnapshotStore>) -> Self {
        self.snapshots = Some(snapshots);
        self
    }
}

impl StateMachine for Applier {
    type Output = ApplyOutcome;

    fn apply(&mut self, index: u64, data: &[u8]) -> Result<ApplyOutcome, ApplyError> {
        let command = decode(data).map_err(ApplyError::Unappliable)?;
        let outcome = self
            .metadata
            .apply(index, &command)
            .map_err(|e| ApplyError::Failed(e.to_string()))?;
        let dispatch = match outcome {
            ApplyOutcome::NotMetadata => true,
            // Replayed after a restart: the tenant's index may not have it yet; it skips it if so.
            ApplyOutcome::AlreadyApplied => true,
            _ => false,
        };
        match command.kind {
            Some(CommandKind::AppendEvents(append))
                if dispatch && !self.dispatch.load(Ordering::SeqCst) =>
            {
                // Copied from the leader later; the log keeps it above the index's commit.
                self.progress.record(&append.tenant, index);
            }
            Some(CommandKind::AppendEvents(append)) if dispatch => {
                let previous = self.progress.record(&append.tenant, index);
                let message = NodeMsg::Entry {
                    tenant: append.tenant,
                    index,
                    previous,
                    batch: self.progress.queue(append.batch),
                };
                self.supervisor
                    .cast(message)
                    .map_err(|_| "the node supervisor has stopped".to_string())?;
            }
            Some(CommandKind::AddMember(member)) => {
                if let Some((me, transport)) = &self.peers {
                    match member.raft_addr.parse() {
                        Ok(addr) if member.id != *me => transport.set_peer(member.id, addr),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(id = member.id, addr = %member.raft_addr, error = %e, "a member's address does not parse")
                        }
                    }
                }
                self.progress.advance(index);
            }
            _ => self.progress.advance(index),
        }
        Ok(outcome)
    }

    fn validate(&self, data: &[u8]) -> Result<(), String> {
        decode(data).map(|_| ())
    }

    fn skip(&mut self, index: u64) -> Result<(), String> {
        self.metadata
            .mark_applied(index)
            .map_err(|e| e.to_string())?;
        self.progress.advance(index);
        Ok(())
    }

    fn install_snapshot(&mut self, index: u64, data: &[u8]) -> Result<(), String> {
        match &self.snapshots {
            Some(snapshots) => snapshots.install(index, data),
            None => Err("a node alone in its cluster never receives snapshots".into()),
        }
    }
}

/// A command that some replica could apply: it decodes, and says what it is.
fn decode(data: &[u8]) -> Result<Command, String> {
    let command = Command::from_bytes(data).map_err(|e| e.to_string())?;
    if command.kind.is_none() {
        return Err("a command without a kind".into());
    }
    Ok(command)
}
