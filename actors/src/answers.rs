//! Requests sent to another node over the transport, each waiting for its one answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

/// Outstanding requests by id; an answer is matched to its request by the id it carries.
pub(crate) struct Answers<T> {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<T>>>,
}

impl<T> Answers<T> {
    pub(crate) fn new() -> Self {
        Answers {
            next: AtomicU64::new(0),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Sends a request with `send` (given its id) and waits up to `timeout` for its answer.
    /// `None` when none came in time.
    pub(crate) async fn ask(&self, send: impl FnOnce(u64), timeout: Duration) -> Option<T> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        self.lock().insert(id, sender);
        send(id);
        let answer = tokio::time::timeout(timeout, receiver).await;
        self.lock().remove(&id);
        answer.ok().and_then(Result::ok)
    }

    /// Hands an answer to the request `id` waits on, if it still waits.
    pub(crate) fn answer(&self, id: u64, answer: T) {
        if let Some(waiter) = self.lock().remove(&id) {
            let _ = waiter.send(answer);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<T>>> {
        self.waiting.lock().expect("answers lock poisoned")
    }
}
