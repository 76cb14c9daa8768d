//! The Raft thread: one raft-rs `RawNode`, its ticks, proposals and Ready loop.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use meniscus_storage::RaftLog;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType};
use raft::{ProgressState, RawNode, StateRole, Storage};
use tokio::sync::oneshot;

use crate::handle::Request;
use crate::logger::raft_logger;
use crate::transport::{Envelope, Forward, ForwardReply, Transport};
use crate::{Committed, Error, RaftHandle, RaftStatus, ReplicaProgress, Result};

/// Ticks a loop that fell behind replays at once; beyond that, time is lost rather than a
/// burst of ticks starting elections in a node that was merely paused.
const MAX_CATCH_UP_TICKS: u32 = 20;

/// How one Raft group runs.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This node's id in the group (non-zero).
    pub id: u64,
    /// Voters to bootstrap a fresh group with; ignored when the log already has a configuration.
    /// Empty for a node joining a running group: it waits for the leader to add it.
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
    type Output: Send + Clone + 'static;

    /// Applies the committed entry at `index`. [`ApplyError::Failed`] stops the node: a replica
    /// that cannot apply must not go on acknowledging writes. [`ApplyError::Unappliable`] says
    /// the entry itself is wrong (it does not decode, or means nothing), which every replica
    /// finds alike: it is skipped, counted and logged, and the group goes on.
    fn apply(&mut self, index: u64, data: &[u8]) -> std::result::Result<Self::Output, ApplyError>;

    /// Checks a proposal another node forwarded before it is proposed: what cannot be applied
    /// is refused here, so it never reaches the log.
    fn validate(&self, data: &[u8]) -> std::result::Result<(), String> {
        let _ = data;
        Ok(())
    }

    /// Records that the entry at `index`, which carries nothing for the state machine (a
    /// configuration change, a new leader's empty entry), is applied.
    fn skip(&mut self, index: u64) -> std::result::Result<(), String> {
        let _ = index;
        Ok(())
    }

    /// Replaces the whole state with the snapshot at `index` whose data the leader built (see
    /// `RaftLog::set_snapshot_source`); entries after `index` are applied next. An error stops
    /// the node, whose durable state is then still the one before the snapshot.
    fn install_snapshot(&mut self, index: u64, data: &[u8]) -> std::result::Result<(), String> {
        let _ = (index, data);
        Err("this state machine cannot install snapshots".into())
    }
}

/// Why [`StateMachine::apply`] did not apply an entry.
#[derive(Debug)]
pub enum ApplyError {
    /// The entry cannot be applied on any replica (it does not decode, or it means nothing): it
    /// is skipped on every replica the same way.
    Unappliable(String),
    /// This replica failed to apply it (storage): the node stops.
    Failed(String),
}

impl From<String> for ApplyError {
    fn from(reason: String) -> Self {
        ApplyError::Failed(reason)
    }
}

/// How an entry someone waits for ended.
enum Settled<O> {
    /// Applied, with this output.
    Applied(O),
    /// A new leader's empty entry took its place.
    Dropped,
    /// Skipped: it cannot be applied.
    Unappliable(String),
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
        // A node joining a running cluster starts with no configuration and waits for the
        // leader's snapshot; every other node bootstraps the group it was given.
        if state.conf_state.voters.is_empty() && !config.initial_voters.is_empty() {
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
        let quiet = Arc::new(AtomicBool::new(false));
        let driver = Driver {
            quiet: quiet.clone(),
            raw,
            group: log.group(),
            transport,
            log,
            machine,
            waiters: BTreeMap::new(),
            forwarded: HashMap::new(),
            next_forward_id: 0,
            awaiting_apply: BTreeMap::new(),
            recent_outputs: BTreeMap::new(),
            unappliable: 0,
            replies: Vec::new(),
            new_reads: Vec::new(),
            reads: HashMap::new(),
            next_read_id: 0,
            reads_awaiting_apply: BTreeMap::new(),
            status: status.clone(),
            snapshots_sent: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("raft-{}", config.id))
            .spawn(move || driver.run(receiver, config.tick_interval))
            .map_err(|e| Error::Storage(format!("cannot start the raft thread: {e}")))?;
        Ok((
            RaftHandle {
                requests,
                status,
                quiet,
            },
            thread,
        ))
    }
}

type Outcome<O> = Result<Committed<O>>;
type Reply<O> = oneshot::Sender<Outcome<O>>;
/// A reply and what to send on it.
type Answer<O> = (Reply<O>, Outcome<O>);

/// Who waits for a proposal's entry to apply.
enum Waiter<O> {
    /// A caller on this node.
    Local(Reply<O>),
    /// A follower that forwarded the proposal; it gets a [`ForwardReply`].
    Remote { from: u64, id: u64 },
}

/// A proposal this node forwarded, waiting for the leader's answer.
struct ForwardedProposal<O> {
    reply: Reply<O>,
    sent: Instant,
    /// The leader it went to: if another node leads before it answers, the answer may never
    /// come, and the caller is told at once so it can retry.
    leader: u64,
}

/// Linearizable reads asked together: they share one ReadIndex round.
struct PendingRead {
    replies: Vec<ReadReply>,
    sent: Instant,
    /// The leader when it was asked: a new leader may never answer it.
    leader: u64,
}

type ReadReply = oneshot::Sender<Result<u64>>;

/// How long a read may wait for the leader to confirm it still leads (raft-rs drops reads it
/// cannot serve, e.g. while there is no leader, without answering).
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a forwarded proposal may wait for the leader's answer.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How many applied outputs are kept for late forward answers.
const RECENT_OUTPUTS: usize = 4096;

struct Driver<M: StateMachine> {
    raw: RawNode<RaftLog>,
    group: u64,
    transport: Option<Arc<Transport>>,
    log: RaftLog,
    machine: M,
    /// Proposals waiting for their entry to apply: index -> (term proposed in, who waits).
    waiters: BTreeMap<u64, (u64, Waiter<M::Output>)>,
    /// Our proposals forwarded to the leader, waiting for its answer.
    forwarded: HashMap<u64, ForwardedProposal<M::Output>>,
    next_forward_id: u64,
    /// Forwarded proposals the leader committed, waiting for us to apply them too.
    awaiting_apply: BTreeMap<u64, Vec<Reply<M::Output>>>,
    /// Outputs of the last applied entries, for answers that arrive after the apply.
    recent_outputs: BTreeMap<u64, M::Output>,
    /// Committed entries skipped because they cannot be applied, since the thread started.
    unappliable: u64,
    /// Outcomes of this Ready's applied proposals, sent once the status is published.
    replies: Vec<Answer<M::Output>>,
    /// Reads asked since the last ReadIndex round.
    new_reads: Vec<ReadReply>,
    /// Reads waiting for the leader to confirm the read index, by request context.
    reads: HashMap<u64, PendingRead>,
    next_read_id: u64,
    /// Reads whose index is known, waiting for this node to apply up to it.
    reads_awaiting_apply: BTreeMap<u64, Vec<ReadReply>>,
    status: Arc<Mutex<RaftStatus>>,
    /// The last snapshot sent to each member (by index). raft-rs forgets it once we report the
    /// message sent, but the member needs the log from there on until it has installed it.
    snapshots_sent: HashMap<u64, u64>,
    /// See [`RaftHandle::set_quiet`].
    quiet: Arc<AtomicBool>,
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
            self.start_reads();
            // One tick per interval that has passed, not one per loop: a slow Ready (a long
            // fsync under load) must not stretch the election timeout in wall-clock time.
            let behind = (last_tick.elapsed().as_nanos() / tick.as_nanos().max(1)) as u32;
            if behind > 0 {
                for _ in 0..behind.min(MAX_CATCH_UP_TICKS) {
                    self.raw.tick();
                }
                last_tick += tick * behind;
            }
            self.on_ready()?;
            self.expire_forwards();
            self.expire_reads();
            self.publish_status();
            // Acknowledge only now, so a caller that sees its ack also sees the new status.
            for (reply, result) in self.replies.drain(..) {
                let _ = reply.send(result);
            }
            self.finish_reads();
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
                if self.raw.raft.state == StateRole::Leader {
                    match self.propose(data) {
                        Ok(index) => {
                            self.waiters
                                .insert(index, (self.raw.raft.term, Waiter::Local(reply)));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                } else {
                    self.forward(data, reply);
                }
                true
            }
            Request::Forwarded { from, forward } => {
                let result = if let Err(reason) = self.machine.validate(&forward.data) {
                    tracing::warn!(group = self.group, from, %reason, "refused a forwarded proposal that cannot be applied");
                    Err(Error::Unappliable(reason))
                } else if self.raw.raft.state == StateRole::Leader {
                    self.propose(forward.data)
                } else {
                    Err(Error::NotLeader {
                        leader: self.leader(),
                    })
                };
                match result {
                    Ok(index) => {
                        let waiter = Waiter::Remote {
                            from,
                            id: forward.id,
                        };
                        self.waiters.insert(index, (self.raw.raft.term, waiter));
                    }
                    Err(e) => self.answer_forward(from, forward.id, 0, e.to_string()),
                }
                true
            }
            Request::ReadIndex(reply) => {
                self.new_reads.push(reply);
                true
            }
            Request::ChangeMembership { change, reply } => {
                let result = if self.raw.raft.state != StateRole::Leader {
                    Err(Error::NotLeader {
                        leader: self.leader(),
                    })
                } else {
                    self.raw
                        .propose_conf_change(Vec::new(), change)
                        .map_err(Error::from)
                };
                let _ = reply.send(result);
                true
            }
            Request::TransferLeader(to) => {
                if self.raw.raft.state == StateRole::Leader {
                    self.raw.transfer_leader(to);
                }
                true
            }
            Request::ForwardReply(answer) => {
                if let Some(ForwardedProposal { reply, .. }) = self.forwarded.remove(&answer.id) {
                    if !answer.error.is_empty() {
                        let _ = reply.send(Err(Error::Forwarded(answer.error)));
                    } else if answer.index <= self.raw.raft.raft_log.applied {
                        let result = match self.recent_outputs.get(&answer.index) {
                            Some(output) => Ok(Committed {
                                index: answer.index,
                                output: output.clone(),
                            }),
                            None => Err(Error::Dropped),
                        };
                        let _ = reply.send(result);
                    } else {
                        self.awaiting_apply
                            .entry(answer.index)
                            .or_default()
                            .push(reply);
                    }
                }
                true
            }
        }
    }

    fn leader(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|id| *id != 0)
    }

    /// Proposes as the leader; returns the entry's index.
    fn propose(&mut self, data: Vec<u8>) -> Result<u64> {
        let before = self.raw.raft.raft_log.last_index();
        self.raw.propose(Vec::new(), data)?;
        let index = self.raw.raft.raft_log.last_index();
        if index == before {
            return Err(Error::Dropped);
        }
        Ok(index)
    }

    /// Sends a proposal to the leader; its answer arrives as a `ForwardReply`.
    fn forward(&mut self, data: Vec<u8>, reply: Reply<M::Output>) {
        let (Some(leader), Some(transport)) = (self.leader(), &self.transport) else {
            let _ = reply.send(Err(Error::NotLeader {
                leader: self.leader(),
            }));
            return;
        };
        self.next_forward_id += 1;
        let id = self.next_forward_id;
        let envelope = Envelope {
            group: self.group,
            forward: Some(Forward { id, data }),
            ..Default::default()
        };
        if transport.send_envelope(leader, envelope) {
            let forwarded = ForwardedProposal {
                reply,
                sent: Instant::now(),
                leader,
            };
            self.forwarded.insert(id, forwarded);
        } else {
            let _ = reply.send(Err(Error::NotLeader {
                leader: Some(leader),
            }));
        }
    }

    fn answer_forward(&self, to: u64, id: u64, index: u64, error: String) {
        if let Some(transport) = &self.transport {
            let envelope = Envelope {
                group: self.group,
                forward_reply: Some(ForwardReply { id, index, error }),
                ..Default::default()
            };
            transport.send_envelope(to, envelope);
        }
    }

    /// Fails forwarded proposals whose answer will not come: too old (lost message), or sent
    /// to a node that no longer leads. The entry may still commit; callers retry with
    /// idempotency keys.
    fn expire_forwards(&mut self) {
        if self.forwarded.is_empty() {
            return;
        }
        let leader = self.raw.raft.leader_id;
        let expired: Vec<u64> = self
            .forwarded
            .iter()
            .filter(|(_, f)| f.leader != leader || f.sent.elapsed() > FORWARD_TIMEOUT)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(f) = self.forwarded.remove(&id) {
                let error = if f.leader != leader {
                    Error::NotLeader {
                        leader: self.leader(),
                    }
                } else {
                    Error::Dropped
                };
                let _ = f.reply.send(Err(error));
            }
        }
    }

    /// Starts one ReadIndex round for every read asked since the last one.
    fn start_reads(&mut self) {
        if self.new_reads.is_empty() {
            return;
        }
        if self.raw.raft.leader_id == 0 {
            // raft-rs would drop it unanswered: no one can confirm a read index now.
            for reply in self.new_reads.drain(..) {
                let _ = reply.send(Err(Error::NotLeader { leader: None }));
            }
            return;
        }
        self.next_read_id += 1;
        let id = self.next_read_id;
        self.raw.read_index(id.to_be_bytes().to_vec());
        let read = PendingRead {
            replies: std::mem::take(&mut self.new_reads),
            sent: Instant::now(),
            leader: self.raw.raft.leader_id,
        };
        self.reads.insert(id, read);
    }

    /// Fails reads that will not be answered: asked of a leader that no longer leads, or too
    /// long ago. Callers may retry.
    fn expire_reads(&mut self) {
        if self.reads.is_empty() {
            return;
        }
        let leader = self.raw.raft.leader_id;
        let expired: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| r.leader != leader || r.sent.elapsed() > READ_TIMEOUT)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(read) = self.reads.remove(&id) {
                for reply in read.replies {
                    let _ = reply.send(Err(Error::NotLeader {
                        leader: self.leader(),
                    }));
                }
            }
        }
    }

    /// Answers reads whose index this node has applied.
    fn finish_reads(&mut self) {
        let applied = self.raw.raft.raft_log.applied;
        while let Some(entry) = self.reads_awaiting_apply.first_entry() {
            if *entry.key() > applied {
                break;
            }
            let (index, replies) = entry.remove_entry();
            for reply in replies {
                let _ = reply.send(Ok(index));
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
        for state in ready.take_read_states() {
            let id = state
                .request_ctx
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if let Some(read) = self.reads.remove(&id) {
                self.reads_awaiting_apply
                    .entry(state.index)
                    .or_default()
                    .extend(read.replies);
            }
        }
        // 2. A snapshot from the leader replaces the state machine, then the log.
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            let index = snapshot.get_metadata().index;
            tracing::info!(
                group = self.group,
                index,
                "installing a snapshot from the leader"
            );
            self.machine
                .install_snapshot(index, &snapshot.data)
                .map_err(|e| Error::Storage(format!("installing the snapshot at {index}: {e}")))?;
            self.log.apply_snapshot(snapshot).map_err(storage_err)?;
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

    fn send(&mut self, mut messages: Vec<Message>) {
        if self.quiet.load(Ordering::Relaxed) {
            messages.retain(|m| {
                !matches!(
                    m.get_msg_type(),
                    MessageType::MsgHeartbeatResponse | MessageType::MsgAppendResponse
                )
            });
        }
        if messages.is_empty() {
            return;
        }
        // A snapshot message carries only a description; the member pulls the files itself and
        // answers once installed. Reporting it sent lets the leader go on probing that member.
        let snapshots: Vec<u64> = messages
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
            .map(|m| m.to)
            .collect();
        for m in &messages {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                let index = m.get_snapshot().get_metadata().index;
                self.snapshots_sent.insert(m.to, index);
            }
        }
        match &self.transport {
            Some(transport) => transport.send(self.group, messages),
            None => tracing::warn!(
                count = messages.len(),
                "raft messages for peers dropped: no transport"
            ),
        }
        for to in snapshots {
            self.raw.report_snapshot(to, raft::SnapshotStatus::Finish);
        }
    }

    fn apply_committed(&mut self, entries: Vec<Entry>) -> Result<()> {
        for entry in entries {
            let index = entry.index;
            match entry.get_entry_type() {
                EntryType::EntryNormal if !entry.data.is_empty() => {
                    match self.machine.apply(index, &entry.data) {
                        Ok(output) => self.settle(index, entry.term, Settled::Applied(output)),
                        Err(ApplyError::Unappliable(reason)) => {
                            self.unappliable += 1;
                            tracing::error!(
                                group = self.group,
                                index,
                                %reason,
                                skipped = self.unappliable,
                                "skipped a committed entry that cannot be applied (every replica skips it)"
                            );
                            self.settle(index, entry.term, Settled::Unappliable(reason));
                            self.skip(index)?;
                        }
                        Err(ApplyError::Failed(e)) => {
                            return Err(Error::Storage(format!("applying entry {index}: {e}")))
                        }
                    }
                }
                EntryType::EntryNormal => {
                    // A new leader's empty entry: whatever was proposed at this index was lost.
                    self.settle(index, entry.term, Settled::Dropped);
                    self.skip(index)?;
                }
                EntryType::EntryConfChange => {
                    let mut change = ConfChange::default();
                    change
                        .merge_from_bytes(&entry.data)
                        .map_err(raft::Error::from)?;
                    self.apply_conf_change(index, |raw| raw.apply_conf_change(&change))?;
                }
                EntryType::EntryConfChangeV2 => {
                    let mut change = ConfChangeV2::default();
                    change
                        .merge_from_bytes(&entry.data)
                        .map_err(raft::Error::from)?;
                    self.apply_conf_change(index, |raw| raw.apply_conf_change(&change))?;
                }
            }
        }
        Ok(())
    }

    fn skip(&mut self, index: u64) -> Result<()> {
        self.machine
            .skip(index)
            .map_err(|e| Error::Storage(format!("applying entry {index}: {e}")))
    }

    /// Applies the configuration change at `index`, unless the stored configuration has it
    /// already: after a restart, entries above the state machine's applied index come again,
    /// and raft-rs refuses to enter a joint configuration twice, or to leave one it is not in.
    fn apply_conf_change(
        &mut self,
        index: u64,
        apply: impl FnOnce(&mut RawNode<RaftLog>) -> raft::Result<ConfState>,
    ) -> Result<()> {
        if !self.log.has_conf_state_from(index) {
            let conf_state = apply(&mut self.raw)?;
            self.log
                .set_conf_state(index, &conf_state)
                .map_err(|e| Error::Storage(e.to_string()))?;
        }
        self.skip(index)
    }

    /// Answers whoever waits for the entry at `index`, applied with `output` (`None`: the entry
    /// is a leader's empty entry, so a proposal made at this index was lost).
    fn settle(&mut self, index: u64, term: u64, settled: Settled<M::Output>) {
        if let Some((proposed_in, waiter)) = self.waiters.remove(&index) {
            // Another leader's entry at the index we proposed at: ours was lost.
            let ours = proposed_in == term;
            let result = match &settled {
                Settled::Applied(output) if ours => Ok(output.clone()),
                Settled::Unappliable(reason) if ours => Err(Error::Unappliable(reason.clone())),
                _ => Err(Error::Dropped),
            };
            match waiter {
                Waiter::Local(reply) => {
                    let result = result.map(|output| Committed { index, output });
                    self.replies.push((reply, result));
                }
                Waiter::Remote { from, id } => match result {
                    Ok(_) => self.answer_forward(from, id, index, String::new()),
                    Err(e) => self.answer_forward(from, id, 0, e.to_string()),
                },
            }
        }
        let awaiting = self.awaiting_apply.remove(&index).unwrap_or_default();
        match settled {
            Settled::Applied(output) => {
                for reply in awaiting {
                    let output = output.clone();
                    self.replies.push((reply, Ok(Committed { index, output })));
                }
                self.recent_outputs.insert(index, output);
                while self.recent_outputs.len() > RECENT_OUTPUTS {
                    self.recent_outputs.pop_first();
                }
            }
            Settled::Unappliable(reason) => {
                for reply in awaiting {
                    self.replies
                        .push((reply, Err(Error::Unappliable(reason.clone()))));
                }
            }
            // Cannot happen to them (the leader said their entry committed at this index), but
            // an answer beats a wait that never ends.
            Settled::Dropped => {
                for reply in awaiting {
                    self.replies.push((reply, Err(Error::Dropped)));
                }
            }
        }
    }

    fn publish_status(&self) {
        let raft = &self.raw.raft;
        let mut status = self.status.lock().expect("raft status lock poisoned");
        status.term = raft.term;
        status.leader = raft.leader_id;
        status.commit = raft.raft_log.committed;
        status.applied = raft.raft_log.applied;
        let conf = raft.prs().conf();
        status.voters = conf.voters().ids().iter().collect();
        status.voters.sort_unstable();
        status.learners = conf.learners().iter().copied().collect();
        status.learners.sort_unstable();
        status.joint = !conf.to_conf_state().voters_outgoing.is_empty();
        status.pending_conf_index = raft.pending_conf_index;
        status.unappliable = self.unappliable;
        status.replicas.clear();
        if raft.state == StateRole::Leader {
            status.replicas.extend(raft.prs().iter().map(|(id, p)| {
                ReplicaProgress {
                    id: *id,
                    matched: if *id == raft.id {
                        raft.raft_log.last_index()
                    } else {
                        p.matched
                    },
                    recent_active: *id == raft.id || p.recent_active,
                    pending_snapshot: match p.state {
                        ProgressState::Snapshot => p.pending_snapshot,
                        _ => self
                            .snapshots_sent
                            .get(id)
                            .copied()
                            .filter(|sent| p.matched < *sent)
                            .unwrap_or(0),
                    },
                }
            }));
            status.replicas.sort_unstable_by_key(|r| r.id);
        }
    }
}
