//! The TenantSupervisor: one per tenant; starts, feeds and restarts the tenant's actors.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::indexer::IndexerArgs;
use crate::{Indexer, IndexerMsg, NodeContext, QueuedBatch};

/// Messages a tenant supervisor handles.
pub enum TenantMsg {
    /// Events of the committed entry at `index`.
    Entry {
        /// Raft index.
        index: u64,
        /// The tenant's previous entry, or a point after it (see `DispatchProgress::record`).
        previous: u64,
        /// The encoded batch.
        batch: QueuedBatch,
    },
    /// Make sure the indexer runs (it catches up from the log when it starts).
    Start,
    /// Commit the tenant's index and reply with the committed Raft index.
    Flush(RpcReplyPort<u64>),
    /// Whether the indexer is running, and how often it was restarted.
    Status(RpcReplyPort<TenantStatus>),
    /// Test hook: make the indexer fail.
    #[doc(hidden)]
    CrashIndexer,
}

/// What a tenant's actors are doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantStatus {
    /// The indexer's actor id, when it runs.
    pub indexer: Option<String>,
    /// Restarts after failures since this supervisor started.
    pub restarts: usize,
    /// Whether restarts are suspended because the indexer keeps failing.
    pub failing: bool,
}

/// The tenant supervisor actor.
pub struct TenantSupervisor;

/// A tenant supervisor's state.
pub struct TenantState {
    tenant: String,
    ctx: Arc<NodeContext>,
    indexer: Option<ActorRef<IndexerMsg>>,
    recent_failures: VecDeque<Instant>,
    restarts: usize,
}

/// What a tenant supervisor starts with.
pub struct TenantArgs {
    /// Tenant name.
    pub tenant: String,
    /// Shared node handles.
    pub ctx: Arc<NodeContext>,
}

impl TenantState {
    /// Whether the indexer failed more often than the settings allow, recently.
    fn failing(&mut self) -> bool {
        let window = self.ctx.settings.restart_window;
        while self
            .recent_failures
            .front()
            .is_some_and(|t| t.elapsed() > window)
        {
            self.recent_failures.pop_front();
        }
        self.recent_failures.len() > self.ctx.settings.max_restarts
    }

    async fn ensure_indexer(
        &mut self,
        myself: &ActorRef<TenantMsg>,
    ) -> Option<ActorRef<IndexerMsg>> {
        if let Some(indexer) = &self.indexer {
            return Some(indexer.clone());
        }
        if self.failing() {
            return None;
        }
        let args = IndexerArgs {
            tenant: self.tenant.clone(),
            ctx: self.ctx.clone(),
        };
        match Actor::spawn_linked(None, Indexer, args, myself.get_cell()).await {
            Ok((indexer, _)) => {
                self.indexer = Some(indexer.clone());
                Some(indexer)
            }
            Err(e) => {
                tracing::error!(tenant = %self.tenant, error = %e, "cannot start the indexer; its events stay in the log until it can");
                self.recent_failures.push_back(Instant::now());
                None
            }
        }
    }
}

impl TenantState {
    /// Commits everything dispatched so far. An indexer that died before we heard of it is
    /// replaced first; the replacement catches up from the log, then commits.
    async fn flush(&mut self, myself: &ActorRef<TenantMsg>) -> Result<u64, ActorProcessingErr> {
        let index = self.ctx.indexes.get(&self.tenant)?;
        for _ in 0..2 {
            let behind =
                index.committed_raft_index()? < self.ctx.progress.last_entry_of(&self.tenant);
            let indexer = match &self.indexer {
                Some(indexer) => indexer.clone(),
                None if behind => match self.ensure_indexer(myself).await {
                    Some(indexer) => indexer,
                    None => break,
                },
                None => break,
            };
            match indexer
                .call(IndexerMsg::Flush, Some(Duration::from_secs(60)))
                .await
            {
                Ok(CallResult::Success(committed)) => return Ok(committed),
                _ => self.indexer = None,
            }
        }
        Ok(index.committed_raft_index()?)
    }
}

impl Actor for TenantSupervisor {
    type Msg = TenantMsg;
    type State = TenantState;
    type Arguments = TenantArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<TenantMsg>,
        args: TenantArgs,
    ) -> Result<TenantState, ActorProcessingErr> {
        Ok(TenantState {
            tenant: args.tenant,
            ctx: args.ctx,
            indexer: None,
            recent_failures: VecDeque::new(),
            restarts: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<TenantMsg>,
        message: TenantMsg,
        state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            TenantMsg::Entry {
                index,
                previous,
                batch,
            } => {
                // Searchable from now on, by scanning, until the indexer has committed it.
                match state.ctx.indexes.get(&state.tenant) {
                    Ok(tenant_index) => {
                        tenant_index.push_unindexed(index, previous, batch.shared());
                        state.ctx.searchable_changed.notify_waiters();
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %state.tenant, error = %e, "opening the index for unindexed events")
                    }
                }
                let Some(indexer) = state.ensure_indexer(&myself).await else {
                    return Ok(()); // the entry is in the log; a later indexer catches up
                };
                if let Err(e) = indexer.cast(IndexerMsg::Entry { index, batch }) {
                    // It stopped (idle) between our last look and now: start a new one, which
                    // reads this entry from the log.
                    drop(e);
                    state.indexer = None;
                    state.ensure_indexer(&myself).await;
                }
            }
            TenantMsg::Start => {
                state.ensure_indexer(&myself).await;
            }
            TenantMsg::Flush(reply) => {
                let _ = reply.send(state.flush(&myself).await?);
            }
            TenantMsg::Status(reply) => {
                let failing = state.failing();
                let _ = reply.send(TenantStatus {
                    indexer: state.indexer.as_ref().map(|i| i.get_id().to_string()),
                    restarts: state.restarts,
                    failing,
                });
            }
            TenantMsg::CrashIndexer => {
                if let Some(indexer) = state.ensure_indexer(&myself).await {
                    let _ = indexer.cast(IndexerMsg::Crash);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<TenantMsg>,
        event: SupervisionEvent,
        state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        let is_current = |cell: &ractor::ActorCell| {
            state
                .indexer
                .as_ref()
                .is_some_and(|i| i.get_id() == cell.get_id())
        };
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                let current = is_current(&cell);
                state.recent_failures.push_back(Instant::now());
                if !current {
                    // Already replaced (a flush found it dead first); just count it.
                    state.restarts += 1;
                    tracing::warn!(tenant = %state.tenant, %error, "indexer failed; already replaced");
                    return Ok(());
                }
                state.indexer = None;
                if state.failing() {
                    tracing::error!(tenant = %state.tenant, %error, "indexer keeps failing; restarts suspended (its events stay in the log)");
                } else {
                    tracing::warn!(tenant = %state.tenant, %error, "indexer failed; restarting it");
                    state.restarts += 1;
                    state.ensure_indexer(&myself).await;
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) if is_current(&cell) => {
                state.indexer = None;
                // An entry may have reached the mailbox after the indexer decided to stop.
                let committed = state
                    .ctx
                    .indexes
                    .get(&state.tenant)?
                    .committed_raft_index()?;
                if committed < state.ctx.progress.last_entry_of(&state.tenant) {
                    state.ensure_indexer(&myself).await;
                }
            }
            _ => {}
        }
        Ok(())
    }
}
