//! How far committed entries have been handed to indexers, shared between the Raft thread and
//! the actors. It is what lets a (re)started indexer catch up from the log without gaps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use meniscus_storage::SharedBatch;

/// Dispatch bookkeeping. All counters only grow except `queued_bytes`.
#[derive(Debug, Default)]
pub struct DispatchProgress {
    /// Highest Raft index handed to the actors (or known committed at start).
    watermark: AtomicU64,
    /// The commit index found at start: entries of any tenant may be at or below it.
    started_at: u64,
    /// Per tenant: the highest Raft index carrying its events.
    last_entry: Mutex<HashMap<String, u64>>,
    /// Bytes of event batches dispatched but not yet indexed (or dropped).
    queued_bytes: Arc<AtomicU64>,
}

impl DispatchProgress {
    /// Progress starting at `watermark` (the commit index found at start).
    pub fn new(watermark: u64) -> Self {
        DispatchProgress {
            watermark: AtomicU64::new(watermark),
            started_at: watermark,
            ..Default::default()
        }
    }

    /// Records that the entry at `index` carrying `tenant`'s events is about to be dispatched.
    /// Called before the message is sent, so anyone who reads the watermark afterwards either
    /// finds the entry in the log below it or receives the message. Returns the tenant's
    /// previous entry, or for a tenant not seen since start the commit index found at start
    /// (its previous entry is at or below that). An entry replayed after a restart may come
    /// below what is recorded already; the record never goes back.
    pub fn record(&self, tenant: &str, index: u64) -> u64 {
        let previous = {
            let mut last_entry = self.last_entry.lock().expect("progress lock poisoned");
            match last_entry.get_mut(tenant) {
                Some(last) => std::mem::replace(last, index.max(*last)),
                None => {
                    last_entry.insert(tenant.to_owned(), index);
                    self.started_at
                }
            }
        };
        self.watermark.fetch_max(index, Ordering::SeqCst);
        previous
    }

    /// Records that a non-event entry was applied.
    pub fn advance(&self, index: u64) {
        self.watermark.fetch_max(index, Ordering::SeqCst);
    }

    /// Highest Raft index dispatched.
    pub fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::SeqCst)
    }

    /// Highest Raft index carrying `tenant`'s events seen in this process (0 if none).
    pub fn last_entry_of(&self, tenant: &str) -> u64 {
        self.last_entry
            .lock()
            .expect("progress lock poisoned")
            .get(tenant)
            .copied()
            .unwrap_or(0)
    }

    /// Bytes of event batches waiting to be indexed.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// Wraps a batch so that its bytes count as queued until every copy is dropped, wherever
    /// that is: indexed and committed, or discarded with a failed actor's mailbox.
    pub fn queue(&self, batch: Vec<u8>) -> QueuedBatch {
        self.queued_bytes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        QueuedBatch(Arc::new(Counted {
            bytes: batch,
            gauge: self.queued_bytes.clone(),
        }))
    }
}

/// An encoded event batch on its way to an indexer; its copies share the bytes (the tenant
/// index's tail of unindexed events holds one).
#[derive(Debug, Clone)]
pub struct QueuedBatch(Arc<Counted>);

#[derive(Debug)]
struct Counted {
    bytes: Vec<u8>,
    gauge: Arc<AtomicU64>,
}

impl QueuedBatch {
    /// The encoded `EventBatch`.
    pub fn bytes(&self) -> &[u8] {
        &self.0.bytes
    }

    /// A copy for the tenant index's tail.
    pub fn shared(&self) -> SharedBatch {
        self.0.clone()
    }
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.gauge
            .fetch_sub(self.bytes.len() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_bytes_follow_batches_until_dropped() {
        let progress = DispatchProgress::new(5);
        let a = progress.queue(vec![0; 10]);
        let b = progress.queue(vec![0; 5]);
        assert_eq!(progress.queued_bytes(), 15);
        let shared = a.shared();
        drop(a);
        assert_eq!(progress.queued_bytes(), 15, "a copy still holds it");
        drop(shared);
        assert_eq!(progress.queued_bytes(), 5);
        drop(b);
        assert_eq!(progress.queued_bytes(), 0);
        assert_eq!(progress.record("acme", 3), 5, "unseen: the start");
        assert_eq!(progress.watermark(), 5, "the watermark never goes back");
        assert_eq!(progress.record("acme", 9), 3);
        assert_eq!(
            (progress.watermark(), progress.last_entry_of("acme")),
            (9, 9)
        );
        assert_eq!(progress.last_entry_of("other"), 0);
        assert_eq!(progress.record("acme", 7), 9, "a replay");
        assert_eq!(progress.last_entry_of("acme"), 9, "never goes back");
    }
}
