//! Events applied from the Raft log but not yet in the tenant's index: the tail.
//!
//! Indexing costs most of the CPU an event takes, and an index commit is what made events
//! searchable. With the tail, an event is searchable as soon as it is applied (searches scan
//! the tail, see `scan`), and the index may fall behind during a burst and catch up after it;
//! the indexing queue's byte limit still bounds how far (the tail holds the same batches).
//!
//! The tail only counts where it continues the index without a gap: each entry names the
//! tenant's previous entry in the log, and a search uses entries from the index's commit
//! upwards as long as each one's predecessor is visible (indexed, or in the tail before it).
//! A node that restarts, or starts leading, reads what its indexes lack from the log into
//! their tails; where the chain breaks anyway (entries applied while a follower copied its
//! leader's indexes), it starts again once the index has caught up to where it broke.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use meniscus_event::wire;
use tantivy::Searcher;

use crate::{Error, Result};

/// An encoded event batch, shared with whoever else holds it (the indexer's queue).
pub type SharedBatch = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// One Raft entry's events for the tenant.
pub(crate) struct TailEntry {
    pub raft_index: u64,
    /// The tenant's previous entry in the log (or a point at or after it).
    previous: u64,
    batch: SharedBatch,
    /// Each event's key, decoded on first use.
    keys: OnceLock<std::result::Result<Vec<EventKey>, String>>,
}

/// What a search needs of an event to sort, count and deduplicate it.
pub(crate) struct EventKey {
    /// The timestamp in microseconds, as the index sorts by it.
    pub ts_us: i64,
    /// The id, when its publisher gave it: a later event with the same id replaces this one.
    pub publisher_id: Option<String>,
}

impl TailEntry {
    /// The encoded batch.
    pub fn batch(&self) -> &[u8] {
        (*self.batch).as_ref()
    }

    /// Each event's key, in batch order.
    pub fn keys(&self) -> Result<&[EventKey]> {
        self.keys
            .get_or_init(|| {
                wire::batch_views(self.batch())
                    .map(|views| {
                        views
                            .iter()
                            .map(|v| EventKey {
                                // As the index's `_ts_us` (see `tenant_index::micros`).
                                ts_us: v.timestamp_nanos / 1_000,
                                publisher_id: v.id_from_publisher.then(|| v.id.to_owned()),
                            })
                            .collect()
                    })
                    .map_err(|e| e.to_string())
            })
            .as_deref()
            .map_err(corrupt)
    }
}

/// The error for a tail batch that does not decode.
pub(crate) fn corrupt(e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("a batch in the tail: {e}"))
}

/// What searches see: the index as last committed, and the tail above it.
pub(crate) struct Visible {
    pub searcher: Searcher,
    /// The Raft index `searcher`'s commit holds events up to.
    pub indexed_up_to: u64,
    /// Entries above `indexed_up_to`, in log order.
    tail: VecDeque<Arc<TailEntry>>,
}

/// A consistent view for one search.
pub(crate) struct View {
    pub searcher: Searcher,
    /// Tail entries continuing the index without a gap, in log order.
    pub tail: Vec<Arc<TailEntry>>,
}

impl Visible {
    pub fn new(searcher: Searcher, indexed_up_to: u64) -> Visible {
        Visible {
            searcher,
            indexed_up_to,
            tail: VecDeque::new(),
        }
    }

    /// A newly committed index state: entries it holds leave the tail.
    pub fn indexed(&mut self, searcher: Searcher, up_to: u64) {
        self.searcher = searcher;
        self.indexed_up_to = self.indexed_up_to.max(up_to);
        while self
            .tail
            .front()
            .is_some_and(|e| e.raft_index <= self.indexed_up_to)
        {
            self.tail.pop_front();
        }
    }

    /// Adds an applied entry of the tenant's. Entries usually come in log order; one read from
    /// the log while later ones arrive (a node that starts leading) goes in its place. One
    /// already indexed or in the tail is a replay and is ignored.
    pub fn push(&mut self, raft_index: u64, previous: u64, batch: SharedBatch) {
        if raft_index <= self.indexed_up_to {
            return;
        }
        let at = match self.tail.back() {
            Some(last) if last.raft_index >= raft_index => {
                match self
                    .tail
                    .binary_search_by_key(&raft_index, |e| e.raft_index)
                {
                    Ok(_) => return,
                    Err(at) => at,
                }
            }
            _ => self.tail.len(),
        };
        let entry = Arc::new(TailEntry {
            raft_index,
            previous,
            batch,
            keys: OnceLock::new(),
        });
        self.tail.insert(at, entry);
    }

    /// The entries that continue the index without a gap.
    fn chain(&self) -> impl Iterator<Item = &Arc<TailEntry>> {
        let mut visible = self.indexed_up_to;
        self.tail.iter().take_while(move |e| {
            let continues = e.previous <= visible;
            visible = e.raft_index;
            continues
        })
    }

    /// The Raft index up to which every event of the tenant is visible to a search that can
    /// scan the tail.
    pub fn visible_up_to(&self) -> u64 {
        self.chain()
            .last()
            .map_or(self.indexed_up_to, |e| e.raft_index)
    }

    pub fn view(&self) -> View {
        View {
            searcher: self.searcher.clone(),
            tail: self.chain().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> SharedBatch {
        Arc::new(Vec::<u8>::new())
    }

    fn visible() -> Visible {
        let index = tantivy::Index::create_in_ram(crate::schema::build().0);
        Visible::new(index.reader().unwrap().searcher(), 10)
    }

    #[test]
    fn the_tail_counts_only_where_it_continues_the_index() {
        let mut v = visible();
        v.push(12, 10, batch());
        v.push(15, 12, batch());
        assert_eq!(v.visible_up_to(), 15);
        // Entry 17 was applied but never reached the tail: 20 does not continue it.
        v.push(20, 17, batch());
        v.push(21, 20, batch());
        assert_eq!(v.visible_up_to(), 15);
        assert_eq!(v.view().tail.len(), 2);
        // The index catches up past the gap: the rest of the tail continues it.
        let searcher = v.searcher.clone();
        v.indexed(searcher, 17);
        assert_eq!(v.visible_up_to(), 21);
        let indexes: Vec<u64> = v.view().tail.iter().map(|e| e.raft_index).collect();
        assert_eq!(indexes, [20, 21]);
    }

    #[test]
    fn replays_and_indexed_entries_are_not_kept() {
        let mut v = visible();
        v.push(9, 5, batch());
        v.push(11, 9, batch());
        v.push(11, 9, batch());
        v.push(13, 11, batch());
        assert_eq!(v.view().tail.len(), 2);
        let searcher = v.searcher.clone();
        v.indexed(searcher, 13);
        assert!(v.view().tail.is_empty());
        assert_eq!(v.visible_up_to(), 13);
    }

    #[test]
    fn entries_read_from_the_log_after_later_ones_go_in_their_place() {
        let mut v = visible();
        // Dispatched live first; 12 and 14, read from the log, come after.
        v.push(16, 14, batch());
        assert_eq!(v.visible_up_to(), 10, "16 does not continue the index yet");
        v.push(12, 10, batch());
        v.push(14, 12, batch());
        v.push(14, 12, batch());
        let indexes: Vec<u64> = v.view().tail.iter().map(|e| e.raft_index).collect();
        assert_eq!(indexes, [12, 14, 16]);
        assert_eq!(v.visible_up_to(), 16);
        v.push(8, 5, batch());
        assert_eq!(v.view().tail.len(), 3, "below the index: already indexed");
    }
}
