//! A one-voter group over a real sled log: proposals commit, survive a restart, and replay.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use meniscus_consensus::{ApplyError, RaftConfig, RaftNode, StateMachine};
use meniscus_storage::RaftLog;

type Applied = Vec<(u64, Vec<u8>)>;

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Applied>>);

impl StateMachine for Recorder {
    type Output = usize;
    fn apply(&mut self, index: u64, data: &[u8]) -> Result<usize, ApplyError> {
        let mut seen = self.0.lock().unwrap();
        seen.push((index, data.to_vec()));
        Ok(seen.len())
    }
}

fn open_db(path: &std::path::Path) -> sled::Db {
    // sled releases its lock from a background thread after the last handle drops.
    for _ in 0..100 {
        if let Ok(db) = sled::open(path) {
            return db;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    sled::open(path).unwrap()
}

#[tokio::test]
async fn proposals_commit_in_order_and_replay_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::default();
    let last_index;
    {
        let db = open_db(dir.path());
        let log = RaftLog::open(&db, &dir.path().join("log"), 0).unwrap();
        let (handle, thread) =
            RaftNode::start(RaftConfig::single(1), log, 0, recorder.clone(), None).unwrap();
        let mut tasks = Vec::new();
        for i in 0..50u32 {
            let handle = handle.clone();
            tasks.push(tokio::spawn(async move {
                handle.propose(i.to_be_bytes().to_vec()).await
            }));
        }
        let mut indexes = Vec::new();
        for task in tasks {
            indexes.push(task.await.unwrap().unwrap().index);
        }
        indexes.sort();
        indexes.dedup();
        assert_eq!(indexes.len(), 50, "every proposal has its own index");
        assert!(handle.is_writable());
        last_index = *indexes.last().unwrap();
        assert_eq!(handle.status().commit, last_index);
        handle.shutdown();
        thread.join().unwrap().unwrap();
        assert!(
            handle.propose(vec![1]).await.is_err(),
            "a stopped node refuses writes"
        );
    }
    assert_eq!(recorder.0.lock().unwrap().len(), 50);

    // Restart claiming only the first 10 proposals were applied durably: the rest replay.
    let replayed = Recorder::default();
    let db = open_db(dir.path());
    let log = RaftLog::open(&db, &dir.path().join("log"), 0).unwrap();
    let first_applied = recorder.0.lock().unwrap()[9].0;
    let (handle, thread) = RaftNode::start(
        RaftConfig::single(1),
        log,
        first_applied,
        replayed.clone(),
        None,
    )
    .unwrap();
    let next = handle.propose(b"after restart".to_vec()).await.unwrap();
    assert!(next.index > last_index);
    let seen = replayed.0.lock().unwrap().clone();
    let expected: Vec<_> = recorder.0.lock().unwrap()[10..].to_vec();
    assert_eq!(
        &seen[..40],
        &expected[..],
        "entries after the applied index replay in order"
    );
    assert_eq!(seen[40].1, b"after restart");
    handle.shutdown();
    thread.join().unwrap().unwrap();
}
