use super::*;

use raft::{Config, RawNode, StateRole};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Entry::default()
    }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|index| entry(index, term)).collect()
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..HardState::default()
    }
}

fn indexes(entries: &[Entry]) -> Vec<(u64, u64)> {
    entries.iter().map(|e| (e.index, e.term)).collect()
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

fn compacted<T>() -> raft::Result<T> {
    Err(raft::Error::Store(StorageError::Compacted))
}

fn unavailable<T>() -> raft::Result<T> {
    Err(raft::Error::Store(StorageError::Unavailable))
}

/// A fresh group 1 in a temporary directory; keep the `TempDir` alive.
fn open_temp() -> (tempfile::TempDir, sled::Db, RaftLog) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let log = RaftLog::open(&db, &dir.path().join("log"), 1).unwrap();
    (dir, db, log)
}

/// Opens the database at `path` again, in this or after another process.
///
/// sled 0.34 releases its file lock from a background flusher thread after the last
/// `Db` handle drops (spacejam/sled#1234, #1289), so an immediate reopen can briefly
/// fail with "could not acquire lock"; retry that for up to two seconds.
fn reopen(path: &std::path::Path) -> sled::Db {
    for _ in 0..100 {
        match sled::open(path) {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.unwrap(),
        }
    }
    panic!("sled never released the lock on {path:?}");
}

/// A log holding entries 3..=5 with terms 3, 4, 5 after compacting to 4 (as raft-rs's
/// MemStorage tests start from a snapshot at 3).
fn log_3_to_5() -> (tempfile::TempDir, sled::Db, RaftLog) {
    let (dir, db, log) = open_temp();
    log.append(&[
        entry(1, 1),
        entry(2, 2),
        entry(3, 3),
        entry(4, 4),
        entry(5, 5),
    ])
    .unwrap();
    log.compact(4).unwrap();
    (dir, db, log)
}

#[test]
fn fresh_log_is_empty_at_index_one() {
    let (_dir, _db, log) = open_temp();
    assert_eq!(log.first_index().unwrap(), 1);
    assert_eq!(log.last_index().unwrap(), 0);
    assert_eq!(log.term(0).unwrap(), 0);
    assert_eq!(log.term(1), unavailable());
    assert_eq!(log.entries(1, 1, None, ctx()).unwrap(), vec![]);
    assert!(!log.initial_state().unwrap().initialized());
}

#[test]
fn term_answers_from_the_truncation_point_to_the_last_index() {
    let (_dir, _db, log) = log_3_to_5();
    let cases = [
        (2, compacted()),
        (3, Ok(3)),
        (4, Ok(4)),
        (5, Ok(5)),
        (6, unavailable()),
    ];
    for (index, want) in cases {
        assert_eq!(log.term(index), want, "term({index})");
    }
}

#[test]
fn entries_cover_the_requested_range() {
    let (_dir, _db, log) = log_3_to_5();
    let cases = [
        (2, 6, compacted()),
        (3, 4, compacted()),
        (4, 5, Ok(vec![(4, 4)])),
        (4, 6, Ok(vec![(4, 4), (5, 5)])),
        (5, 5, Ok(vec![])),
        (4, 7, unavailable()),
    ];
    for (low, high, want) in cases {
        let got = log.entries(low, high, None, ctx()).map(|e| indexes(&e));
        assert_eq!(got, want, "entries({low}, {high})");
    }
}

#[test]
fn entries_honor_max_size_like_mem_storage() {
    let (_dir, _db, log) = open_temp();
    log.append(&entries(1..=5, 1)).unwrap();
    let size = u64::from(entry(3, 1).compute_size());
    let cases = [
        (None, 5),
        (Some(raft::NO_LIMIT), 5),
        (Some(0), 1),
        (Some(size), 1),
        (Some(2 * size), 2),
        (Some(3 * size - 1), 2),
        (Some(3 * size), 3),
        (Some(100 * size), 5),
    ];
    for (max_size, want) in cases {
        let got = log.entries(1, 6, max_size, ctx()).unwrap();
        assert_eq!(got.len(), want, "max_size {max_size:?}");
        assert_eq!(got[0].index, 1);
    }
}

#[test]
fn append_truncates_the_conflicting_suffix() {
    // (appended, resulting entries) on top of 3..=5 with terms 3, 4, 5.
    let cases = [
        (vec![], vec![(4, 4), (5, 5)]),
        (vec![entry(4, 4), entry(5, 5)], vec![(4, 4), (5, 5)]),
        (vec![entry(4, 6), entry(5, 6)], vec![(4, 6), (5, 6)]),
        (
            vec![entry(4, 4), entry(5, 5), entry(6, 5)],
            vec![(4, 4), (5, 5), (6, 5)],
        ),
        (vec![entry(4, 5)], vec![(4, 5)]),
        (vec![entry(5, 6), entry(6, 6)], vec![(4, 4), (5, 6), (6, 6)]),
    ];
    for (appended, want) in cases {
        let (_dir, _db, log) = log_3_to_5();
        log.append(&appended).unwrap();
        let last = log.last_index().unwrap();
        let got = log.entries(4, last + 1, None, ctx()).unwrap();
        assert_eq!(indexes(&got), want, "append {:?}", indexes(&appended));
        assert_eq!(log.term(last).unwrap(), want.last().unwrap().1);
        // The removed suffix is gone from sled too, not only from the cache.
        assert_eq!(log.stored_len(), want.len());
    }
}

#[test]
fn append_rejects_gaps_compacted_indexes_and_holes() {
    let (_dir, _db, log) = log_3_to_5();
    let cases = [
        vec![entry(3, 3)],
        vec![entry(7, 5)],
        vec![entry(5, 5), entry(7, 5)],
    ];
    for appended in cases {
        let err = log.append(&appended).unwrap_err();
        assert!(
            matches!(
                err,
                RaftLogError::AppendCompacted { .. }
                    | RaftLogError::AppendGap { .. }
                    | RaftLogError::NotContiguous { .. }
            ),
            "append {:?}: {err}",
            indexes(&appended)
        );
    }
    assert_eq!(log.last_index().unwrap(), 5);
}

#[test]
fn compact_discards_the_prefix_and_keeps_the_boundary_term() {
    // (compact_index, first_index after, term of first_index - 1 or an error)
    let cases = [
        (2, Ok((4, 3))),
        (4, Ok((4, 3))),
        (5, Ok((5, 4))),
        (6, Ok((6, 5))),
        (7, Err(())),
    ];
    for (compact_index, want) in cases {
        let (_dir, _db, log) = log_3_to_5();
        match (log.compact(compact_index), want) {
            (Ok(()), Ok((first, boundary_term))) => {
                assert_eq!(log.first_index().unwrap(), first);
                assert_eq!(log.last_index().unwrap(), 5);
                assert_eq!(log.term(first - 1).unwrap(), boundary_term);
                assert_eq!(log.term(first - 2), compacted());
                assert_eq!(log.entries(first - 1, 6, None, ctx()), compacted());
                assert_eq!(log.stored_len() as u64, 6 - first);
            }
            (Err(RaftLogError::BeyondLastIndex { .. }), Err(())) => {}
            (got, want) => panic!("compact({compact_index}): {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn state_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let conf_state = ConfState {
        voters: vec![1, 2, 3],
        learners: vec![4],
        ..ConfState::default()
    };
    {
        let db = sled::open(dir.path()).unwrap();
        let log = RaftLog::open(&db, &dir.path().join("log"), 1).unwrap();
        log.append(&entries(1..=10, 2)).unwrap();
        log.set_hard_state(&hard_state(2, 3, 7)).unwrap();
        log.set_conf_state(6, &conf_state).unwrap();
        log.set_commit(8).unwrap();
        log.compact(5).unwrap();
        log.flush().unwrap();
    }
    let db = reopen(dir.path());
    let log = RaftLog::open(&db, &dir.path().join("log"), 1).unwrap();
    let state = log.initial_state().unwrap();
    assert_eq!(state.hard_state, hard_state(2, 3, 8));
    assert_eq!(state.conf_state, conf_state);
    assert_eq!(log.first_index().unwrap(), 5);
    assert_eq!(log.last_index().unwrap(), 10);
    assert_eq!(log.term(4).unwrap(), 2);
    assert_eq!(log.entries(5, 11, None, ctx()).unwrap().len(), 6);
}

/// A state machine whose state is complete up to what the test says, with the last snapshot
/// it built (0: none).
#[derive(Default)]
struct TestSource {
    complete: std::sync::atomic::AtomicU64,
    built: std::sync::atomic::AtomicU64,
}

impl TestSource {
    fn complete(&self, index: u64) {
        self.complete
            .store(index, std::sync::atomic::Ordering::SeqCst);
    }
}

impl SnapshotSource for TestSource {
    fn complete_up_to(&self) -> Result<u64, String> {
        Ok(self.complete.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn build(&self, index: u64) -> Result<Vec<u8>, String> {
        self.built.store(index, std::sync::atomic::Ordering::SeqCst);
        Ok(index.to_be_bytes().to_vec())
    }

    fn latest_built(&self) -> Option<u64> {
        Some(self.built.load(std::sync::atomic::Ordering::SeqCst)).filter(|i| *i > 0)
    }
}

/// Found by `cli/tests/cluster_join.rs`: a snapshot at the truncation point carried the
/// current configuration, so a member that installed it and then applied the configuration
/// changes after the point (a learner added, then a joint change) stopped its Raft thread
/// with "can't apply simple config change in joint config". A snapshot now carries the
/// configuration of its own index, which is as recent as the state allows, and a member
/// added later waits for one that includes it.
#[test]
fn a_snapshot_carries_the_configuration_of_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let conf = |voters: Vec<u64>, learners: Vec<u64>, outgoing: Vec<u64>| ConfState {
        voters,
        learners,
        voters_outgoing: outgoing,
        ..ConfState::default()
    };
    let initial = conf(vec![1, 2, 3], vec![], vec![]);
    let learner = conf(vec![1, 2, 3], vec![4], vec![]);
    let joint = conf(vec![1, 3, 4], vec![], vec![1, 2, 3]);
    let source = Arc::new(TestSource::default());
    let snapshot_for = |log: &RaftLog, to: u64| {
        log.snapshot(0, to).map(|mut s| {
            assert_eq!(s.data.as_ref(), s.get_metadata().index.to_be_bytes());
            s.take_metadata()
        })
    };
    {
        let db = sled::open(dir.path()).unwrap();
        let log = RaftLog::open(&db, &dir.path().join("log"), 0).unwrap();
        log.initialize_with_conf_state(vec![1, 2, 3]).unwrap();
        log.set_snapshot_source(source.clone());
        log.append(&entries(2..=10, 1)).unwrap();
        log.set_conf_state(4, &learner).unwrap();
        log.set_conf_state(6, &joint).unwrap();
        assert!(log.has_conf_state_from(6) && !log.has_conf_state_from(5));
        // (state complete up to, member, snapshot index and configuration)
        let cases = [
            (3, 2, Some((3, &initial))),
            (3, 4, None), // node 4 joined at 4
            (5, 4, Some((5, &learner))),
            (8, 4, Some((8, &joint))),
            (8, 2, Some((8, &joint))),   // still in the outgoing half
            (12, 4, Some((10, &joint))), // never past the last entry
        ];
        for (complete, to, expected) in cases {
            source.built.store(0, std::sync::atomic::Ordering::SeqCst);
            source.complete(complete);
            let got = snapshot_for(&log, to).ok();
            let got = got.as_ref().map(|m| (m.index, m.get_conf_state()));
            assert_eq!(got, expected, "complete up to {complete}, for {to}");
        }
        // The last one built is sent again while it will do: it may be the one a member is
        // fetching, and building another costs.
        source.built.store(0, std::sync::atomic::Ordering::SeqCst);
        source.complete(5);
        assert_eq!(snapshot_for(&log, 4).unwrap().index, 5);
        source.complete(8);
        assert_eq!(snapshot_for(&log, 4).unwrap().index, 5, "reused");
        source.built.store(3, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            snapshot_for(&log, 4).unwrap().index,
            8,
            "not one from before the member joined"
        );
        log.compact(6).unwrap();
        source.built.store(0, std::sync::atomic::Ordering::SeqCst);
        source.complete(3);
        assert!(snapshot_for(&log, 2).is_err(), "below the truncation point");
        log.flush().unwrap();
    }
    // The history survives a restart; what no snapshot can need any more is gone.
    let db = reopen(dir.path());
    let log = RaftLog::open(&db, &dir.path().join("log"), 0).unwrap();
    log.set_snapshot_source(source.clone());
    source.complete(5);
    source.built.store(0, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(snapshot_for(&log, 4).unwrap().get_conf_state(), &learner);
    assert_eq!(log.initial_state().unwrap().conf_state, joint);
    log.compact(8).unwrap();
    let kept: Vec<_> = log
        .state
        .scan_prefix(KEY_CONF_AT)
        .keys()
        .map(|k| k.unwrap().to_vec())
        .collect();
    assert_eq!(kept, vec![conf_at_key(6)]);
    source.complete(7);
    source.built.store(0, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(snapshot_for(&log, 4).unwrap().get_conf_state(), &joint);
}

#[test]
fn groups_sharing_a_db_are_independent() {
    let (dir, db, one) = open_temp();
    let two = RaftLog::open(&db, &dir.path().join("log"), 2).unwrap();
    one.append(&entries(1..=3, 1)).unwrap();
    two.append(&entries(1..=5, 7)).unwrap();
    one.compact(3).unwrap();
    assert_eq!(
        (one.first_index().unwrap(), one.last_index().unwrap()),
        (3, 3)
    );
    assert_eq!(
        (two.first_index().unwrap(), two.last_index().unwrap()),
        (1, 5)
    );
    assert_eq!(two.term(2).unwrap(), 7);
}

#[test]
fn clones_share_one_view() {
    let (_dir, _db, log) = open_temp();
    let handle = log.clone();
    handle.append(&entries(1..=2, 1)).unwrap();
    handle.set_commit(2).unwrap();
    assert_eq!(log.last_index().unwrap(), 2);
    assert_eq!(log.initial_state().unwrap().hard_state.commit, 2);
}

#[test]
fn set_commit_beyond_last_index_is_rejected() {
    let (_dir, _db, log) = log_3_to_5();
    assert!(matches!(
        log.set_commit(6),
        Err(RaftLogError::BeyondLastIndex { index: 6, .. })
    ));
}

#[test]
fn initialize_with_conf_state_only_on_a_fresh_group() {
    let (_dir, _db, log) = open_temp();
    assert!(matches!(
        log.initialize_with_conf_state(vec![]),
        Err(RaftLogError::NoVoters { group: 1 })
    ));
    log.initialize_with_conf_state(vec![1, 2, 3]).unwrap();
    let state = log.initial_state().unwrap();
    assert!(state.initialized());
    assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
    // As if from a snapshot at (1, 1): a member joining later must start from a snapshot.
    assert_eq!(log.first_index().unwrap(), 2);
    assert_eq!(log.last_index().unwrap(), 1);
    assert_eq!(log.term(1).unwrap(), 1);
    assert_eq!(state.hard_state.commit, 1);
    assert!(matches!(
        log.initialize_with_conf_state(vec![1]),
        Err(RaftLogError::AlreadyInitialized { group: 1 })
    ));
}

fn snapshot(index: u64, term: u64, voters: Vec<u64>) -> Snapshot {
    let mut snapshot = Snapshot::default();
    let meta = snapshot.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.mut_conf_state().voters = voters;
    snapshot
}

#[test]
fn apply_snapshot_resets_the_log_to_its_point() {
    let (_dir, _db, log) = log_3_to_5();
    log.set_hard_state(&hard_state(5, 1, 5)).unwrap();
    log.apply_snapshot(snapshot(8, 6, vec![1, 2])).unwrap();
    assert_eq!(log.first_index().unwrap(), 9);
    assert_eq!(log.last_index().unwrap(), 8);
    assert_eq!(log.term(8).unwrap(), 6);
    assert_eq!(log.term(7), compacted());
    assert_eq!(log.stored_len(), 0);
    let state = log.initial_state().unwrap();
    assert_eq!(state.hard_state, hard_state(6, 1, 8));
    assert_eq!(state.conf_state.voters, vec![1, 2]);
    assert_eq!(log.snapshot(0, 2).unwrap().get_metadata().index, 8);
    log.append(&[entry(9, 6)]).unwrap();
    assert_eq!(log.last_index().unwrap(), 9);

    for stale in [3, 8] {
        assert!(matches!(
            log.apply_snapshot(snapshot(stale, 6, vec![1])),
            Err(RaftLogError::SnapshotOutOfDate { .. })
        ));
    }
}

#[test]
fn snapshot_returns_the_stored_metadata() {
    let (_dir, _db, log) = log_3_to_5();
    let unavailable = Err(raft::Error::Store(
        StorageError::SnapshotTemporarilyUnavailable,
    ));
    assert_eq!(log.snapshot(0, 2), unavailable);
    let meta = snapshot(4, 4, vec![1, 2, 3]).take_metadata();
    log.store_snapshot_meta(&meta).unwrap();
    assert_eq!(log.snapshot(0, 2).unwrap().get_metadata(), &meta);
    assert_eq!(log.snapshot(4, 2).unwrap().get_metadata(), &meta);
    assert_eq!(log.snapshot(5, 2), unavailable);
    assert!(log
        .store_snapshot_meta(&snapshot(3, 3, vec![1]).take_metadata())
        .is_err());
    assert!(log
        .store_snapshot_meta(&snapshot(6, 5, vec![1]).take_metadata())
        .is_err());
}

const CRASH_DIR_ENV: &str = "MENISCUS_RAFT_LOG_CRASH_DIR";
const CRASH_EXIT_CODE: i32 = 42;
const CRASH_DURABLE: u64 = 20;

/// Run by `crash_mid_append_leaves_old_or_new_state` in a child process: persists a
/// prefix, then keeps appending on another thread and exits abruptly mid-write.
#[test]
#[ignore = "helper: runs only in the child process of the crash test"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
        return;
    };
    let db = sled::open(&dir).unwrap();
    let log = RaftLog::open(&db, &std::path::Path::new(&dir).join("log"), 1).unwrap();
    for index in 1..=CRASH_DURABLE {
        let mut e = entry(index, 1);
        e.data = index.to_be_bytes().to_vec().into();
        log.append_and_persist(&[e], Some(&hard_state(1, 1, index)))
            .unwrap();
    }
    let writer = log.clone();
    std::thread::spawn(move || {
        for index in CRASH_DURABLE + 1..1_000_000 {
            let mut e = entry(index, 1);
            e.data = vec![index as u8; 512].into();
            writer
                .append_and_persist(&[e], Some(&hard_state(1, 1, index)))
                .unwrap();
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    // No destructors, no final flush: as close to a power cut as a test gets.
    std::process::exit(CRASH_EXIT_CODE);
}

#[test]
fn crash_mid_append_leaves_old_or_new_state() {
    let dir = tempfile::tempdir().unwrap();
    let module = module_path!().split_once("::").unwrap().1;
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &format!("{module}::crash_child"), "--ignored"])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(CRASH_EXIT_CODE), "child did not crash");

    let db = reopen(dir.path());
    let log = RaftLog::open(&db, &dir.path().join("log"), 1).unwrap();
    let last = log.last_index().unwrap();
    assert!(last >= CRASH_DURABLE, "lost flushed entries: last {last}");
    // Entries are made durable before the hard state saved with them: the commit index is
    // the last entry's, or the one before when the crash fell between the two writes.
    let commit = log.initial_state().unwrap().hard_state.commit;
    assert!(
        commit == last || commit + 1 == last,
        "commit {commit}, last entry {last}"
    );
    let all = log.entries(1, last + 1, None, ctx()).unwrap();
    assert_eq!(all.len() as u64, last);
    for e in &all[..CRASH_DURABLE as usize] {
        assert_eq!(e.data.as_ref(), e.index.to_be_bytes());
    }
}

/// One Ready loop, steps in raft-rs's order, for a single voter (no messages to send).
fn drive(node: &mut RawNode<RaftLog>, log: &RaftLog, applied: &mut Vec<Vec<u8>>) {
    let mut apply = |entries: Vec<Entry>| {
        applied.extend(
            entries
                .into_iter()
                .filter(|e| !e.data.is_empty())
                .map(|e| e.data.to_vec()),
        );
    };
    while node.has_ready() {
        let mut ready = node.ready();
        assert!(ready.messages().is_empty());
        if !ready.snapshot().is_empty() {
            log.apply_snapshot(ready.snapshot().clone()).unwrap();
        }
        apply(ready.take_committed_entries());
        log.append_and_persist(ready.entries(), ready.hs()).unwrap();
        assert!(ready.persisted_messages().is_empty());
        let mut light = node.advance(ready);
        if let Some(commit) = light.commit_index() {
            log.set_commit(commit).unwrap();
        }
        apply(light.take_committed_entries());
        node.advance_apply();
    }
    log.flush().unwrap();
}

#[test]
fn raw_node_single_voter_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let config = Config {
        id: 1,
        ..Config::default()
    };
    let proposals: Vec<Vec<u8>> = vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];

    let commit = {
        let db = sled::open(dir.path()).unwrap();
        let log = RaftLog::open(&db, &dir.path().join("log"), 1).unwrap();
        log.initialize_with_conf_state(vec![1]).unwrap();
        let mut node = RawNode::new(&config, log.clone(), &logger).unwrap();
        let mut applied = Vec::new();
        node.campaign().unwrap();
        drive(&mut node, &log, &mut applied);
        assert_eq!(node.raft.state, StateRole::Leader);
        for data in &proposals {
            node.propose(vec![], data.clone()).unwrap();
        }
        drive(&mut node, &log, &mut applied);
        assert_eq!(applied, proposals);
        let commit = log.initial_state().unwrap().hard_state.commit;
        // The initial point, the leader's empty entry, then the three proposals.
        assert_eq!(commit, 5);
        assert_eq!(log.last_index().unwrap(), commit);
        commit
    };

    let db = reopen(dir.path());
    let log = RaftLog::open(&db, &dir.path().join("log"), 1).unwrap();
    let mut node = RawNode::new(&config, log.clone(), &logger).unwrap();
    assert_eq!(node.raft.raft_log.committed, commit);
    assert_eq!(node.raft.raft_log.last_index(), commit);
    let mut replayed = Vec::new();
    drive(&mut node, &log, &mut replayed);
    assert_eq!(
        replayed, proposals,
        "committed entries replay after restart"
    );
}

fn segment_files(dir: &std::path::Path, group: u64) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("log").join(format!("group-{group}")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn with_data(index: u64, term: u64, len: usize) -> Entry {
    let mut e = entry(index, term);
    e.data = vec![index as u8; len].into();
    e
}

#[test]
fn a_torn_record_at_the_end_of_a_segment_is_dropped_on_open() {
    let (dir, db, log) = open_temp();
    log.append_and_persist(&entries(1..=5, 1), Some(&hard_state(1, 1, 4)))
        .unwrap();
    drop((log, db));
    // Half of a sixth record, as a crash mid-write leaves it.
    let file = segment_files(dir.path(), 1).pop().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let record = bytes[segments::MAGIC.len()..].to_vec();
    let one = record.len() / 5;
    bytes.extend_from_slice(&record[..one / 2]);
    std::fs::write(&file, bytes).unwrap();

    let db = reopen(dir.path());
    let log = RaftLog::open(&db, &dir.path().join("log"), 1).unwrap();
    assert_eq!(log.last_index().unwrap(), 5);
    log.append_and_persist(&[entry(6, 1)], None).unwrap();
    assert_eq!(
        indexes(&log.entries(1, 7, None, ctx()).unwrap()),
        vec![(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1)]
    );
}

#[test]
fn a_corrupt_record_ends_its_segment_but_not_the_log_before_it() {
    let (dir, db, log) = open_temp();
    log.append_and_persist(&entries(1..=3, 1), Some(&hard_state(1, 1, 2)))
        .unwrap();
    drop((log, db));
    let file = segment_files(dir.path(), 1).pop().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // the third record's payload
    std::fs::write(&file, bytes).unwrap();
    let db = reopen(dir.path());
    let log = RaftLog::open(&db, &dir.path().join("log"), 1).unwrap();
    assert_eq!(log.last_index().unwrap(), 2);
}

#[test]
fn an_overwritten_suffix_stays_overwritten_after_reopen() {
    let (dir, db, log) = open_temp();
    log.append(&entries(1..=6, 1)).unwrap();
    log.append(&entries(4..=5, 2)).unwrap();
    log.flush().unwrap();
    drop((log, db));
    let db = reopen(dir.path());
    let log = RaftLog::open(&db, &dir.path().join("log"), 1).unwrap();
    assert_eq!(
        indexes(&log.entries(1, 6, None, ctx()).unwrap()),
        vec![(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)]
    );
    assert_eq!(log.last_index().unwrap(), 5);
}

#[test]
fn entries_before_a_snapshot_never_come_back() {
    let (dir, db, log) = open_temp();
    log.append(&entries(1..=10, 1)).unwrap();
    log.flush().unwrap();
    let mut snapshot = Snapshot::default();
    snapshot.mut_metadata().index = 5;
    snapshot.mut_metadata().term = 3;
    log.apply_snapshot(snapshot).unwrap();
    log.append(&entries(6..=7, 3)).unwrap();
    log.flush().unwrap();
    drop((log, db));
    let db = reopen(dir.path());
    let log = RaftLog::open(&db, &dir.path().join("log"), 1).unwrap();
    assert_eq!(log.first_index().unwrap(), 6);
    assert_eq!(log.last_index().unwrap(), 7);
    assert_eq!(
        indexes(&log.entries(6, 8, None, ctx()).unwrap()),
        vec![(6, 3), (7, 3)]
    );
    assert_eq!(
        segment_files(dir.path(), 1).len(),
        1,
        "old segments removed"
    );
}

#[test]
fn compaction_removes_segments_once_the_truncation_point_is_durable() {
    let (dir, _db, log) = open_temp();
    // Three segments of 64 MiB would make a slow test; entries of 24 MiB fill one segment
    // in three entries.
    for index in 1..=9 {
        log.append(&[with_data(index, 1, 24 << 20)]).unwrap();
    }
    log.flush().unwrap();
    assert_eq!(segment_files(dir.path(), 1).len(), 3);
    log.compact(7).unwrap();
    assert_eq!(
        segment_files(dir.path(), 1).len(),
        3,
        "not before the flush"
    );
    log.flush().unwrap();
    assert_eq!(segment_files(dir.path(), 1).len(), 1);
    assert_eq!(log.entries(7, 10, None, ctx()).unwrap().len(), 3);
    assert_eq!(log.term(6).unwrap(), 1);
}

#[test]
fn entries_an_earlier_version_kept_in_sled_move_to_segments() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("raft-1-entries").unwrap();
        for index in 3..=6 {
            let e = with_data(index, 2, 10);
            tree.insert(index.to_be_bytes(), e.write_to_bytes().unwrap())
                .unwrap();
        }
        let state = db.open_tree("raft-1-state").unwrap();
        let truncated = LogPoint { index: 2, term: 1 };
        state
            .insert(KEY_TRUNCATED, truncated.encode().as_slice())
            .unwrap();
        state
            .insert(
                KEY_HARD_STATE,
                hard_state(2, 1, 5).write_to_bytes().unwrap(),
            )
            .unwrap();
        db.flush().unwrap();
    }
    let db = reopen(dir.path());
    let log = RaftLog::open(&db, &dir.path().join("log"), 1).unwrap();
    assert_eq!(log.first_index().unwrap(), 3);
    assert_eq!(log.last_index().unwrap(), 6);
    let moved = log.entries(3, 7, None, ctx()).unwrap();
    assert_eq!(moved[3].data.as_ref(), [6u8; 10]);
    assert!(!db
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == b"raft-1-entries"));
    assert_eq!(log.initial_state().unwrap().hard_state.commit, 5);
}
