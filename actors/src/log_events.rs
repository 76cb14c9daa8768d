//! Reading the event batches a range of the Raft log carries: what an indexer catches up from,
//! and what a restarted node makes searchable before its indexes have caught up.

use meniscus_storage::{AppendEvents, Command, CommandKind, RaftLog};
use raft::{GetEntriesContext, Storage};

use crate::Result;

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
