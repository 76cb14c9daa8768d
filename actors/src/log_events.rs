//! Reading the event batches a range of the Raft log carries: what an indexer catches up from,
//! and what a restarted node makes searchable before its indexes have caught up.

use std::collections::HashMap;

use meniscus_storage::{AppendEvents, Command, CommandKind, RaftLog};
use raft::{GetEntriesContext, Storage};

use crate::{NodeContext, Result};

/// Entries read from the log per step.
const CHUNK_BYTES: u64 = 8 * 1024 * 1024;

/// Calls `f` with the Raft index and the events of each entry in `[from, to]` that carries
/// events, in log order. Entries below the log's first index are gone (compacted) and skipped:
/// compaction and snapshots never pass what every index has committed.
pub(crate) fn for_each_append(
    log: &RaftLog,
    from: u64,
    to: u64,
    mut f: impl FnMut(u64, AppendEvents) -> Result<()>,
) -> Result<()> {
    let mut next = from.max(log.first_index().map_err(meniscus_storage::Error::from)?);
    while next <= to {
        let entries = log
            .entries(next, to + 1, CHUNK_BYTES, GetEntriesContext::empty(false))
            .map_err(meniscus_storage::Error::from)?;
        let Some(last) = entries.last() else {
            break;
        };
        next = last.index + 1;
        for entry in entries {
            if entry.data.is_empty() {
                continue;
            }
            // Anything else (a configuration change) carries no events.
            if let Ok(Command {
                kind: Some(CommandKind::AppendEvents(append)),
                ..
            }) = Command::from_bytes(&entry.data)
            {
                f(entry.index, append)?;
            }
        }
    }
    Ok(())
}

/// Makes the events up to `up_to` of tenants whose index is behind the log (`lagging`: each
/// with its index's commit point) searchable now, from the log, rather than once their
/// indexers have caught up: after a crash, or when a node starts leading, events that were
/// searchable before stay searchable. Records each such tenant's last entry, as dispatching it
/// would have.
pub(crate) fn seed_tails(ctx: &NodeContext, lagging: &[(String, u64)], up_to: u64) -> Result<()> {
    let Some(from) = lagging.iter().map(|(_, committed)| committed + 1).min() else {
        return Ok(());
    };
    // Per tenant: its index, and its last entry so far (its commit point to start with: each
    // entry names its predecessor, see `meniscus_storage::tail`).
    let mut tails = HashMap::new();
    for (tenant, committed) in lagging {
        tails.insert(tenant.as_str(), (ctx.indexes.get(tenant)?, *committed));
    }
    let mut entries = 0;
    for_each_append(&ctx.log, from, up_to, |index, append| {
        if let Some((tenant_index, last)) = tails.get_mut(append.tenant.as_str()) {
            if index > *last {
                entries += 1;
                // Counted as queued until indexed, like a dispatched batch.
                let batch = ctx.progress.queue(append.batch);
                tenant_index.push_unindexed(index, *last, batch.shared());
                *last = index;
            }
        }
        Ok(())
    })?;
    for (tenant, (_, last)) in tails {
        ctx.progress.record(tenant, last);
    }
    if entries > 0 {
        tracing::info!(
            entries,
            tenants = lagging.len(),
            "unindexed entries from the log are searchable while their indexes catch up"
        );
    }
    Ok(())
}
