//! The Raft thread: one raft-rs `RawNode`, its ticks, proposals and Ready loop.

use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use meniscus_storage::RaftLog;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeV2, Entry, EntryType, Message};
use raft::{RawNode, StateRole, Storage};
use tokio::sync::oneshot;

use crate::handle::Request;
use crate::logger::raft_logger;
use crate::transport::Transport;
use crate::{Committed, Error, RaftHandle, RaftStatus, Result};

/// How one Raft group runs.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This node's id in the group (non-zero).
    pub id: u64,
    /// Voters to bootstrap a fresh group with; ignored when the log already has a configuration.
    pub initial_voters: Vec<u64>,
    /// Length of one logical clock tick.
    pub tick_interval: Duration,
    /// Ticks without a heartbeat before a follower campaigns.
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Proposals that may wait for the Raft thread before callers get [`Error::Overloaded`].
    pub max_queued_proposals: usize,
}

impl RaftConfig {
    /// Defaults for a node with id `id` that bootstraps alone.
    pub fn single(id: u64) -> Self {
        RaftConfig {
            id,
            initial_voters: vec![id],
            tick_interval: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 3,
            max_queued_proposals: 4096,
        }
    }
}

/// What the Raft thread feeds committed entries to, in log order, exactly once per process run.
///
/// After a restart, entries above the `applied` index passed to [`RaftNode::start`] are applied
/// again, so `apply` must skip what it has already made durable.
pub trait StateMachine: Send + 'static {
    /// What a proposer learns when its entry is applied.
    type Output: Send + 'static;

    /// Applies the committed entry at `index`. An error stops the node: a replica that cannot
    /// apply must not go on acknowledging writes.
    fn apply(&mut self, index: u64, data: &[u8]) -> std::result::Result<Self::Output, String>;
}

/// Starts Raft groups.
pub struct RaftNode;

/// The Raft thread; joining it yields the error that stopped it, if any.
pub type RaftThread = JoinHandle<Result<()>>;

impl RaftNode {
    /// Starts the group stored in `log` on a dedicated thread. `applied` is the highest index the
    /// state machine has made durable.
    pub fn start<M: StateMachine>(
        config: RaftConfig,
        log: RaftLog,
        applied: u64,
        machine: M,
        transport: Option<Arc<Transport>>,
    ) -> Result<(RaftHandle<M::Output>, RaftThread)> {
        let storage_err = |e: meniscus_storage::RaftLogError| Error::Storage(e.to_string());
        let state = log.initial_state()?;
        if state.conf_state.voters.is_empty() {
            log.initialize_with_conf_state(config.initial_voters.clone())
                .map_err(storage_err)?;
        }
        let state = log.initial_state()?;
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied: applied.min(state.hard_state.commit),
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        raft_config.validate()?;
        let logger = raft_logger(log.group());
        let mut raw = RawNode::new(&raft_config, log.clone(), &logger)?;
        if state.conf_state.voters == [config.id] {
            // Alone in the group: no one to wait for, lead at once.
            raw.campaign()?;
        }
        let (requests, receiver) = sync_channel(config.max_queued_proposals);
        let status = Arc::new(Mutex::new(RaftStatus {
            id: config.id,
            running: true,
            ..Default::default()
        }));
        let driver = Driver {
            raw,
            group: log.group(),
            transport,
            log,
            machine,
            waiters: BTreeMap::new(),
            replies: Vec::new(),
            status: status.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("raft-{}", config.id))
            .spawn(move || driver.run(receiver, config.tick_interval))
            .map_err(|e| Error::Storage(format!("cannot start the raft thread: {e}")))?;
        Ok((RaftHandle { requests, status }, thread))
    }
}

type Reply<O> = oneshot::Sender<Result<Committed<O>>>;

struct Driver<M: StateMachine> {
    raw: RawNode<RaftLog>,
    group: u64,
    transport: Option<Arc<Transport>>,
    log: RaftLog,
    machine: M,
    /// Proposals waiting for their entry to apply: index -> (term proposed in, reply).
    waiters: BTreeMap<u64, (u64, Reply<M::Output>)>,
    /// Outcomes of this Ready's applied proposals, sent once the status is published.
    replies: Vec<(Reply<M::Output>, Result<Committed<M::Output>>)>,
    status: Arc<Mutex<RaftStatus>>,
}

impl<M: StateMachine> Driver<M> {
    fn run(mut self, requests: Receiver<Request<M::Output>>, tick: Duration) -> Result<()> {
        let result = self.event_loop(&requests, tick);
        if let Err(e) = &result {
            tracing::error!(error = %e, "raft thread stopped on an error; this node no longer takes writes");
        }
        self.status
            .lock()
            .expect("raft status lock poisoned")
            .running = false;
        // Waiters are dropped here: their callers see `Stopped`, never a false success.
        result
    }

    fn event_loop(
        &mut self,
        requests: &Receiver<Request<M::Output>>,
        tick: Duration,
    ) -> Result<()> {
        let mut last_tick = Instant::now();
        loop {
            let wait = tick.saturating_sub(last_tick.elapsed());
            match requests.recv_timeout(wait) {
                Ok(request) => {
                    if !self.handle(request) {
                        return Ok(());
                    }
                    // Everything already queued goes into the same Ready: one fsync for all.
                    for request in requests.try_iter().take(8192) {
                        if !self.handle(request) {
                            return Ok(());
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            if last_tick.elapsed() >= tick {
                self.raw.tick();
                last_tick = Instant::now();
            }
            self.on_ready()?;
            self.publish_status();
            // Acknowledge only now, so a caller that sees its ack also sees the new status.
            for (reply, result) in self.replies.drain(..) {
                let _ = reply.send(result);
            }
        }
    }

    /// Returns false on shutdown.
    fn handle(&mut self, request: Request<M::Output>) -> bool {
        match request {
            Request::Shutdown => false,
            Request::Step(message) => {
                if let Err(e) = self.raw.step(*message) {
                    tracing::debug!(error = %e, "raft message ignored");
                }
                true
            }
            Request::Propose { data, reply } => {
                if self.raw.raft.state != StateRole::Leader {
                    let leader = Some(self.raw.raft.leader_id).filter(|id| *id != 0);
                    let _ = reply.send(Err(Error::NotLeader { leader }));
                    return true;
                }
                let before = self.raw.raft.raft_log.last_index();
                match self.raw.propose(Vec::new(), data) {
                    Ok(()) => {
                        let index = self.raw.raft.raft_log.last_index();
                        if index == before {
                            let _ = reply.send(Err(Error::Dropped));
                        } else {
                            self.waiters.insert(index, (self.raw.raft.term, reply));
                        }
                    }
                    Err(e) => {
                        let _ = reply.send(Err(Error::Raft(e)));
                    }
                }
                true
            }
        }
    }

    /// The Ready loop, in the order raft-rs requires: persist before anything depends on it.
    fn on_ready(&mut self) -> Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let storage_err = |e: meniscus_storage::RaftLogError| Error::Storage(e.to_string());
        let mut ready = self.raw.ready();
        // 1. Messages a leader may send before persisting.
        self.send(ready.take_messages());
        // 2. A snapshot from the leader replaces the log.
        if !ready.snapshot().is_empty() {
            self.log
                .apply_snapshot(ready.snapshot().clone())
                .map_err(storage_err)?;
        }
        // 3. Entries already committed (and persisted earlier).
        self.apply_committed(ready.take_committed_entries())?;
        // 4 + 5. New entries and hard state, in one fsync'd write.
        let hard_state = ready.hs().cloned();
        if !ready.entries().is_empty() || hard_state.is_some() {
            self.log
                .append_and_persist(ready.entries(), hard_state.as_ref())
                .map_err(storage_err)?;
        }
        // 6. Messages that must wait for persistence (votes, appends from followers).
        self.send(ready.take_persisted_messages());
        // 7. Advance, then handle what became committed by our own persistence.
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.log.set_commit(commit).map_err(storage_err)?;
        }
        self.send(light.take_messages());
        self.apply_committed(light.take_committed_entries())?;
        self.raw.advance_apply();
        Ok(())
    }

    fn send(&mut self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        match &self.transport {
            Some(transport) => transport.send(self.group, messages),
            None => tracing::warn!(
                count = messages.len(),
                "raft messages for peers dropped: no transport"
            ),
        }
    }

    fn apply_committed(&mut self, entries: Vec<Entry>) -> Result<()> {
        for entry in entries {
            let index = entry.index;
            match entry.get_entry_type() {
                EntryType::EntryNormal if !entry.data.is_empty() => {
                    let output = self
                        .machine
                        .apply(index, &entry.data)
                        .map_err(|e| Error::Storage(format!("applying entry {index}: {e}")))?;
                    if let Some((term, reply)) = self.waiters.remove(&index) {
                        let result = if term == entry.term {
                            Ok(Committed { index, output })
                        } else {
                            Err(Error::Dropped)
                        };
                        self.replies.push((reply, result));
                    }
                }
                EntryType::EntryNormal => {
                    // A new leader's empty entry: whatever was proposed at this index was lost.
                    if let Some((_, reply)) = self.waiters.remove(&index) {
                        let _ = reply.send(Err(Error::Dropped));
                    }
                }
                EntryType::EntryConfChange => {
                    let mut change = ConfChange::default();
                    change
                        .merge_from_bytes(&entry.data)
                        .map_err(raft::Error::from)?;
                    let conf_state = self.raw.apply_conf_change(&change)?;
                    self.log
                        .set_conf_state(&conf_state)
                        .map_err(|e| Error::Storage(e.to_string()))?;
                }
                EntryType::EntryConfChangeV2 => {
                    let mut change = ConfChangeV2::default();
                    change
                        .merge_from_bytes(&entry.data)
                        .map_err(raft::Error::from)?;
                    let conf_state = self.raw.apply_conf_change(&change)?;
                    self.log
                        .set_conf_state(&conf_state)
                        .map_err(|e| Error::Storage(e.to_string()))?;
                }
            }
        }
        Ok(())
    }

    fn publish_status(&self) {
        let raft = &self.raw.raft;
        let mut status = self.status.lock().expect("raft status lock poisoned");
        status.term = raft.term;
        status.leader = raft.leader_id;
        status.commit = raft.raft_log.committed;
        status.applied = raft.raft_log.applied;
    }
}
