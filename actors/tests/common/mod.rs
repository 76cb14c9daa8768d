//! Helpers for tests that run several nodes in one process.

#![allow(dead_code)] // each test binary uses some of them

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meniscus_actors::{CertificateAuthority, ClusterOptions, Node, NodeOptions, PeerSecurity};
use meniscus_event::{Event, Source};
use meniscus_storage::SearchRequest;
use time::OffsetDateTime;

pub fn events(from: usize, n: usize) -> Vec<Event> {
    (from..from + n)
        .map(|i| Event {
            id: format!("e{i}"),
            tenant: "acme".into(),
            received_at: OffsetDateTime::now_utc(),
            timestamp: OffsetDateTime::now_utc(),
            host: Some(format!("web-{}", i % 4)),
            app: None,
            procid: None,
            msgid: None,
            facility: None,
            severity: None,
            message: format!("replicated event {i}"),
            structured_data: Default::default(),
            fields: Default::default(),
            source: Source::default(),
            id_from_publisher: true,
        })
        .collect()
}

/// A free loopback address whose port is below the ephemeral range: a node restarted on it
/// never finds it taken by another node's outgoing connection.
pub fn free_addr() -> SocketAddr {
    chaos_tests::node::fixed_addr("127.0.0.1").unwrap()
}

pub async fn local_count(node: &Node) -> u64 {
    node.flush().await.unwrap();
    let request = SearchRequest {
        query: "*".into(),
        limit: 1,
        ..Default::default()
    };
    node.search("acme", request).await.unwrap().total
}

pub async fn wait_count(nodes: &[&Node], expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in nodes {
        loop {
            let count = local_count(node).await;
            if count == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a replica has {count} events, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn leader_of(nodes: &[Option<Node>]) -> usize {
    nodes
        .iter()
        .position(|n| n.as_ref().is_some_and(Node::is_writable))
        .expect("a leader")
}

pub async fn wait_leader(nodes: &[Option<Node>]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes
        .iter()
        .any(|n| n.as_ref().is_some_and(Node::is_writable))
    {
        assert!(Instant::now() < deadline, "no leader within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    leader_of(nodes)
}

/// Options for node `id` of `members`, storing in `dir`, with short commit intervals.
pub fn options(dir: &std::path::Path, id: u64, members: &[(u64, SocketAddr)]) -> NodeOptions {
    let mut options = NodeOptions::new(dir);
    options.node_id = id;
    options.indexer.commit_interval = Duration::from_millis(50);
    options.indexer.memory_budget_bytes = 20_000_000;
    options.indexer.threads = 1;
    options.compact_interval = Duration::from_secs(3600); // compacted by hand below
    options.cluster = Some(ClusterOptions {
        raft_addr: members[id as usize - 1].1,
        members: members.to_vec(),
        tick_interval: Duration::from_millis(20),
        join: false,
        security: PeerSecurity::Tls(test_ca().node_tls(id).expect("a node certificate")),
    });
    options
}

/// One certificate authority for every node a test process starts.
pub fn test_ca() -> &'static CertificateAuthority {
    static CA: std::sync::OnceLock<CertificateAuthority> = std::sync::OnceLock::new();
    CA.get_or_init(|| CertificateAuthority::generate().expect("a CA"))
}
