//! The Indexer: one per tenant, owns the tenant's tantivy writer.

use std::sync::Arc;
use std::time::Instant;

use meniscus_storage::{RaftLog, TenantIndex, TenantWriter};
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::log_events;
use crate::writer_thread::WriterThread;
use crate::{NodeContext, QueuedBatch};

/// Messages an indexer handles.
pub enum IndexerMsg {
    /// Events of the committed entry at `index`.
    Entry {
        /// Raft index.
        index: u64,
        /// The encoded batch.
        batch: QueuedBatch,
    },
    /// Periodic: commit what is pending; stop when idle.
    Tick,
    /// Commit now and reply with the committed Raft index.
    Flush(RpcReplyPort<u64>),
    /// Test hook: fail as a poisoned input would.
    #[doc(hidden)]
    Crash,
}

/// The indexer actor.
pub struct Indexer;

/// An indexer's state.
pub struct IndexerState {
    tenant: String,
    ctx: Arc<NodeContext>,
    index: Arc<TenantIndex>,
    /// `None` only while a call on `thread` holds it.
    writer: Option<TenantWriter>,
    /// Where the writer's calls run.
    thread: WriterThread,
    last_activity: Instant,
    /// When the index was last committed: ticks that queued up behind slow work must not
    /// commit again before the interval has passed.
    last_commit: Instant,
    ticker: Option<JoinHandle<()>>,
}

/// What an indexer starts with.
pub struct IndexerArgs {
    /// Tenant name.
    pub tenant: String,
    /// Shared node handles.
    pub ctx: Arc<NodeContext>,
}

fn err(e: impl std::fmt::Display) -> ActorProcessingErr {
    e.to_string().into()
}

/// Runs `f` on the writer on the indexer's thread: tantivy calls can take milliseconds.
async fn with_writer<T: Send + 'static>(
    state: &mut IndexerState,
    f: impl FnOnce(&mut TenantWriter) -> Result<T, ActorProcessingErr> + Send + 'static,
) -> Result<T, ActorProcessingErr> {
    let mut writer = state
        .writer
        .take()
        .ok_or_else(|| err("writer lost by an earlier failure"))?;
    let (writer, result) = state
        .thread
        .run(move || {
            let result = f(&mut writer);
            (writer, result)
        })
        .await
        .map_err(|e| err(format!("indexing task failed: {e}")))?;
    state.writer = Some(writer);
    result
}

/// Commits the writer and tells waiting searches; returns the committed Raft index.
async fn commit(state: &mut IndexerState) -> Result<u64, ActorProcessingErr> {
    let committed = with_writer(state, |w| w.commit().map_err(err)).await?;
    state.last_commit = Instant::now();
    state.ctx.searchable_changed.notify_waiters();
    Ok(committed)
}

/// Adds every entry of `tenant` in (writer.indexed_up_to(), up_to] from the log.
fn catch_up(
    writer: &mut TenantWriter,
    log: &RaftLog,
    tenant: &str,
    up_to: u64,
) -> Result<usize, ActorProcessingErr> {
    let from = writer.indexed_up_to() + 1;
    let mut added = 0;
    log_events::for_each_append(log, from, up_to, |index, append| {
        if append.tenant == tenant {
            added += writer.add_encoded_entry(index, &append.batch)?;
        }
        Ok(())
    })
    .map_err(|e| {
        err(format!(
            "catching up from the log from {from} to {up_to}: {e}"
        ))
    })?;
    // Every entry up to `up_to` is in now, this tenant's or not: say so at the next commit, or
    // a tenant that was behind at start (an idle one included) holds back log compaction and
    // snapshots (see `node::lagging_index_commit`) until the indexer stops for idleness.
    writer.mark_seen(up_to);
    Ok(added)
}

/// Opens the tenant's writer on `thread` (tantivy's threads inherit its priority). A failed
/// predecessor's writer may still be dropping (releasing tantivy's lock) when its supervisor
/// starts us, so a busy lock is retried for a while.
async fn open_writer(
    index: &Arc<TenantIndex>,
    settings: &crate::IndexerSettings,
    thread: &WriterThread,
) -> Result<TenantWriter, ActorProcessingErr> {
    let mut attempts = 0;
    loop {
        let (index, budget, threads) = (
            index.clone(),
            settings.memory_budget_bytes,
            settings.threads,
        );
        match thread
            .run(move || index.writer(budget, threads))
            .await
            .map_err(err)?
        {
            Ok(writer) => return Ok(writer),
            Err(meniscus_storage::Error::Index(tantivy::TantivyError::LockFailure(..)))
                if attempts < 250 =>
            {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => return Err(err(e)),
        }
    }
}

impl Actor for Indexer {
    type Msg = IndexerMsg;
    type State = IndexerState;
    type Arguments = IndexerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<IndexerMsg>,
        args: IndexerArgs,
    ) -> Result<IndexerState, ActorProcessingErr> {
        let IndexerArgs { tenant, ctx } = args;
        let index = ctx.indexes.get(&tenant).map_err(err)?;
        let settings = ctx.settings.clone();
        // Thread names are cut to 15 bytes.
        let thread = WriterThread::start(format!("index-{tenant}"), settings.nice).map_err(err)?;
        let writer = open_writer(&index, &settings, &thread).await?;
        let mut state = IndexerState {
            tenant: tenant.clone(),
            ctx: ctx.clone(),
            index,
            writer: Some(writer),
            thread,
            last_activity: Instant::now(),
            last_commit: Instant::now(),
            ticker: None,
        };
        // Read the watermark before the log: any entry above it reaches us as a message.
        let up_to = ctx.progress.watermark();
        let log = ctx.log.clone();
        let added = with_writer(&mut state, move |w| catch_up(w, &log, &tenant, up_to)).await?;
        if added > 0 {
            tracing::info!(tenant = %state.tenant, events = added, up_to, "indexer caught up from the log");
        }
        state.ticker = Some(myself.send_interval(settings.commit_interval, || IndexerMsg::Tick));
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<IndexerMsg>,
        message: IndexerMsg,
        state: &mut IndexerState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            IndexerMsg::Entry { index, batch } => {
                state.last_activity = Instant::now();
                with_writer(state, move |w| {
                    w.add_encoded_entry(index, batch.bytes()).map_err(err)?;
                    Ok(())
                })
                .await?;
            }
            IndexerMsg::Tick => {
                let pending = state.writer.as_ref().is_some_and(TenantWriter::has_pending);
                if pending {
                    // Ticks keep arriving while entries and commits are slow, and they queue
                    // between the entries: committing on each would commit after every entry
                    // just when the indexer is behind, and it would never catch up. (Half the
                    // interval: a tick on time always commits, whatever the last one took.)
                    if state.last_commit.elapsed() >= state.ctx.settings.commit_interval / 2 {
                        commit(state).await?;
                    }
                } else if state.last_activity.elapsed() >= state.ctx.settings.idle_timeout {
                    self.stop_idle(&myself, state).await?;
                }
            }
            IndexerMsg::Flush(reply) => {
                let committed = commit(state).await?;
                let _ = reply.send(committed);
            }
            IndexerMsg::Crash => panic!("injected indexer failure for tenant {}", state.tenant),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<IndexerMsg>,
        state: &mut IndexerState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(ticker) = state.ticker.take() {
            ticker.abort();
        }
        if state.writer.as_ref().is_some_and(TenantWriter::has_pending) {
            commit(state).await?;
        }
        Ok(())
    }
}

impl Indexer {
    /// Commits, moving the payload past other tenants' entries when nothing of ours is in
    /// flight (so the log can later be compacted below it), and stops.
    async fn stop_idle(
        &self,
        myself: &ActorRef<IndexerMsg>,
        state: &mut IndexerState,
    ) -> Result<(), ActorProcessingErr> {
        // Watermark first, then our last entry: see `DispatchProgress::record`.
        let watermark = state.ctx.progress.watermark();
        let ours = state.ctx.progress.last_entry_of(&state.tenant);
        with_writer(state, move |w| {
            if w.indexed_up_to() >= ours {
                w.mark_seen(watermark);
            }
            w.commit().map_err(err)
        })
        .await?;
        state.ctx.searchable_changed.notify_waiters();
        tracing::debug!(tenant = %state.tenant, committed = ?state.index.committed_raft_index().ok(), "indexer idle, stopping");
        myself.stop(Some("idle".into()));
        Ok(())
    }
}
