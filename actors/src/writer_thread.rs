//! The thread an indexer runs its tantivy calls on, at a lower CPU priority than ingest.
//!
//! Indexing an event costs several times what taking it in does. Events are searchable once
//! applied (the tenant index's tail of unindexed events), so when the CPU is short the index
//! may fall behind and catch up later, while ingest and searches keep the CPU they need; the
//! indexing queue's byte limit still bounds how far behind. tantivy's indexing, merging and
//! compressing threads are started by the writer this thread opens, and inherit its priority.

use std::sync::mpsc;
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

/// A thread running jobs one at a time; it ends when dropped.
pub(crate) struct WriterThread {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl WriterThread {
    /// Starts a thread named `name` whose niceness is raised by `nice` (0 leaves it as is).
    pub fn start(name: String, nice: i32) -> std::io::Result<WriterThread> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            lower_priority(nice);
            for job in queue {
                // A panicking job drops its reply, which its caller sees as a failure.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        })?;
        Ok(WriterThread {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the thread and waits for its result; `Err` if it panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(f());
        });
        self.jobs
            .as_ref()
            .ok_or("the writer thread has stopped")?
            .send(job)
            .map_err(|_| "the writer thread has stopped".to_string())?;
        result
            .await
            .map_err(|_| "an indexing call panicked".to_string())
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        drop(self.jobs.take());
        // Not joined: a job may still be running (an actor stopped mid-call); the thread ends
        // once it has.
        drop(self.thread.take());
    }
}

#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // On Linux each thread has its own nice value, and `who = 0` names the calling thread.
    // SAFETY: setpriority reads no memory of ours.
    let current = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let ok = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, current + nice) } == 0;
    if !ok {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not lower the indexing thread's priority"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_at_lower_priority_and_survives_a_panic() {
        let thread = WriterThread::start("test-writer".into(), 5).unwrap();
        let ours = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let theirs = thread
            .run(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) })
            .await
            .unwrap();
        assert_eq!(theirs, (ours + 5).min(19));
        assert!(thread.run(|| panic!("boom")).await.is_err());
        assert_eq!(thread.run(|| 7).await, Ok(7));
    }
}
