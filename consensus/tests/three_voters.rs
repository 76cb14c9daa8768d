//! Three Raft nodes in one process, talking over the real TCP transport on loopback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meniscus_consensus::peer_tls::CertificateAuthority;
use meniscus_consensus::transport::{PeerSecurity, Transport};
use meniscus_consensus::{RaftConfig, RaftHandle, RaftNode, RaftThread};
use meniscus_storage::RaftLog;
use tokio::sync::mpsc;

mod common;

use common::{Applied, Recorder};

struct Member {
    handle: RaftHandle<()>,
    /// While set, everything sent to this member is lost (Raft retransmits).
    deaf: Arc<AtomicBool>,
    thread: Option<RaftThread>,
    applied: Applied,
    _db: sled::Db,
    _dir: tempfile::TempDir,
}

async fn start_cluster(n: u64) -> Vec<Member> {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let ca = CertificateAuthority::generate().unwrap();
    let mut transports = Vec::new();
    let mut inbounds = Vec::new();
    let mut addrs = Vec::new();
    for id in 1..=n {
        let (tx, rx) = mpsc::channel(4096);
        let (t, addr) = Transport::bind(id, any, PeerSecurity::Tls(ca.node_tls(id).unwrap()), tx)
            .await
            .unwrap();
        transports.push(t);
        inbounds.push(rx);
        addrs.push(addr);
    }
    let mut members = Vec::new();
    for (i, (transport, mut inbound)) in transports.into_iter().zip(inbounds).enumerate() {
        let id = i as u64 + 1;
        for (j, addr) in addrs.iter().enumerate() {
            if j != i {
                transport.set_peer(j as u64 + 1, *addr);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let log = RaftLog::open(&db, &dir.path().join("log"), 0).unwrap();
        let mut config = RaftConfig::single(id);
        config.initial_voters = (1..=n).collect();
        config.tick_interval = Duration::from_millis(20);
        let recorder = Recorder::default();
        let applied = recorder.0.clone();
        let (handle, thread) = RaftNode::start(config, log, 0, recorder, Some(transport)).unwrap();
        let stepper = handle.clone();
        let deaf = Arc::new(AtomicBool::new(false));
        let ears = deaf.clone();
        tokio::spawn(async move {
            while let Some(inbound) = inbound.recv().await {
                if !ears.load(Ordering::Relaxed) {
                    stepper.deliver(inbound);
                }
            }
        });
        members.push(Member {
            handle,
            deaf,
            thread: Some(thread),
            applied,
            _db: db,
            _dir: dir,
        });
    }
    members
}

async fn wait_for_leader(members: &[Member], exclude: Option<usize>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for (i, m) in members.iter().enumerate() {
            if Some(i) != exclude && m.handle.is_writable() {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no leader elected within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_applied(members: &[Member], indexes: &[usize], count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while indexes
        .iter()
        .any(|&i| members[i].applied.lock().unwrap().len() < count)
    {
        assert!(
            Instant::now() < deadline,
            "replicas did not apply {count} entries within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_group_replicates_and_survives_its_leader() {
    let mut members = start_cluster(3).await;
    let leader = wait_for_leader(&members, None).await;
    for i in 0..20u32 {
        members[leader]
            .handle
            .propose(i.to_be_bytes().to_vec())
            .await
            .unwrap();
    }
    // A follower forwards to the leader and answers once it has applied the entry itself.
    let follower = (leader + 1) % 3;
    let forwarded = members[follower]
        .handle
        .propose(b"via follower".to_vec())
        .await
        .unwrap();
    assert!(members[follower]
        .applied
        .lock()
        .unwrap()
        .iter()
        .any(|d| d == b"via follower"));
    assert!(forwarded.index > 20);
    wait_applied(&members, &[0, 1, 2], 21).await;
    let first = members[0].applied.lock().unwrap().clone();
    for m in &members[1..] {
        assert_eq!(
            *m.applied.lock().unwrap(),
            first,
            "every replica applies the same entries in order"
        );
    }

    // Stop the leader: the other two elect a new one and keep committing.
    members[leader].handle.shutdown();
    members[leader]
        .thread
        .take()
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    let stopped_at = Instant::now();
    let new_leader = wait_for_leader(&members, Some(leader)).await;
    let failover = stopped_at.elapsed();
    assert_ne!(new_leader, leader);
    members[new_leader]
        .handle
        .propose(b"after failover".to_vec())
        .await
        .unwrap();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    wait_applied(&members, &survivors, 22).await;
    eprintln!("failover took {failover:?}");
    for m in &members {
        m.handle.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_applies_every_acknowledged_write_before_a_read() {
    let members = start_cluster(3).await;
    let leader = wait_for_leader(&members, None).await;
    let lagging = (leader + 1) % 3;
    members[leader]
        .handle
        .propose(b"first".to_vec())
        .await
        .unwrap();
    wait_applied(&members, &[0, 1, 2], 1).await;

    // The follower misses a write that the other two acknowledge.
    members[lagging].deaf.store(true, Ordering::Relaxed);
    let committed = members[leader]
        .handle
        .propose(b"while deaf".to_vec())
        .await
        .unwrap();
    assert_eq!(members[lagging].applied.lock().unwrap().len(), 1);

    // Once it hears again, a read on it waits until it has applied that write.
    members[lagging].deaf.store(false, Ordering::Relaxed);
    let read = members[lagging].handle.read_index().await.unwrap();
    assert!(
        read >= committed.index,
        "read index {read} < {}",
        committed.index
    );
    assert!(members[lagging].handle.status().applied >= committed.index);
    assert_eq!(members[lagging].applied.lock().unwrap().len(), 2);

    // The leader can read too.
    assert!(members[leader].handle.read_index().await.unwrap() >= committed.index);
    for m in &members {
        m.handle.shutdown();
    }
}
