//! Several Raft groups on the same three nodes, sharing each node's one transport: the
//! router hands every message to its group, and the groups elect, commit and forward on their
//! own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meniscus_consensus::peer_tls::CertificateAuthority;
use meniscus_consensus::transport::{PeerSecurity, Transport};
use meniscus_consensus::{RaftConfig, RaftHandle, RaftNode, Router};
use meniscus_storage::RaftLog;
use raft::prelude::Message;
use tokio::sync::mpsc;

mod common;

use common::{Applied, Recorder};

/// One node: its router, and per group its handle and what it applied.
struct Node {
    router: Arc<Router>,
    transport: Arc<Transport>,
    groups: Vec<(RaftHandle<()>, Applied)>,
    _db: sled::Db,
    _dir: tempfile::TempDir,
}

const GROUPS: u64 = 3;

async fn start_nodes() -> Vec<Node> {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let ca = CertificateAuthority::generate().unwrap();
    let mut bound = Vec::new();
    for id in 1..=3u64 {
        let (tx, rx) = mpsc::channel(4096);
        let (transport, addr) =
            Transport::bind(id, any, PeerSecurity::Tls(ca.node_tls(id).unwrap()), tx)
                .await
                .unwrap();
        bound.push((transport, rx, addr));
    }
    let addrs: Vec<SocketAddr> = bound.iter().map(|(_, _, a)| *a).collect();
    let mut nodes = Vec::new();
    for (i, (transport, mut inbound, _)) in bound.into_iter().enumerate() {
        let id = i as u64 + 1;
        for (j, addr) in addrs.iter().enumerate() {
            if j != i {
                transport.set_peer(j as u64 + 1, *addr);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let router = Arc::new(Router::new());
        let mut groups = Vec::new();
        for group in 0..GROUPS {
            let mut config = RaftConfig::single(id);
            config.initial_voters = vec![1, 2, 3];
            config.tick_interval = Duration::from_millis(20);
            let applied = Applied::default();
            let log = RaftLog::open(&db, &dir.path().join("log"), group).unwrap();
            let (handle, _thread) = RaftNode::start(
                config,
                log,
                0,
                Recorder(applied.clone()),
                Some(transport.clone()),
            )
            .unwrap();
            router.add(group, handle.clone());
            groups.push((handle, applied));
        }
        let routing = router.clone();
        tokio::spawn(async move {
            while let Some(message) = inbound.recv().await {
                routing.route(message);
            }
        });
        nodes.push(Node {
            router,
            transport,
            groups,
            _db: db,
            _dir: dir,
        });
    }
    nodes
}

async fn leader_of(nodes: &[Node], group: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(i) = nodes.iter().position(|n| n.groups[group].0.is_writable()) {
            return i;
        }
        assert!(
            Instant::now() < deadline,
            "group {group}: no leader in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_applied(nodes: &[Node], group: usize, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while nodes
        .iter()
        .any(|n| n.groups[group].1.lock().unwrap().len() < count)
    {
        assert!(
            Instant::now() < deadline,
            "group {group}: not applied everywhere in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_sharing_the_transports_commit_and_move_leaders_on_their_own() {
    let nodes = start_nodes().await;
    // Each group takes proposals through a follower (forwarded to that group's leader).
    for group in 0..GROUPS as usize {
        let leader = leader_of(&nodes, group).await;
        let follower = (leader + 1) % 3;
        for i in 0..5 {
            let data = format!("group {group} entry {i}").into_bytes();
            nodes[follower].groups[group].0.propose(data).await.unwrap();
        }
    }
    for group in 0..GROUPS as usize {
        wait_applied(&nodes, group, 5).await;
        for node in &nodes {
            let applied = node.groups[group].1.lock().unwrap();
            let expected: Vec<Vec<u8>> = (0..5)
                .map(|i| format!("group {group} entry {i}").into_bytes())
                .collect();
            assert_eq!(
                *applied, expected,
                "group {group} applied another group's entries"
            );
        }
    }

    // Group 1's leadership moves to a node that does not lead group 0; group 0 keeps its leader.
    let leader0 = leader_of(&nodes, 0).await;
    let leader1 = leader_of(&nodes, 1).await;
    let target = (0..3).find(|i| *i != leader0 && *i != leader1).unwrap();
    nodes[leader1].groups[1]
        .0
        .transfer_leader(target as u64 + 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes[target].groups[1].0.is_writable() {
        assert!(
            Instant::now() < deadline,
            "group 1 did not move to node {}",
            target + 1
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        nodes[leader0].groups[0].0.is_writable(),
        "group 0 lost its leader"
    );
    nodes[target].groups[1]
        .0
        .propose(b"after the move".to_vec())
        .await
        .unwrap();
    wait_applied(&nodes, 1, 6).await;
    assert_eq!(nodes[leader0].groups[0].1.lock().unwrap().len(), 5);

    // A message for a group the node does not run is dropped and counted, nothing else.
    let before = nodes[0].router.unrouted();
    let stray = Message {
        to: 1,
        from: 2,
        ..Default::default()
    };
    nodes[1].transport.send(GROUPS + 4, vec![stray]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while nodes[0].router.unrouted() == before {
        assert!(
            Instant::now() < deadline,
            "the stray message was not counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for node in &nodes {
        for (handle, _) in &node.groups {
            handle.shutdown();
        }
    }
}
