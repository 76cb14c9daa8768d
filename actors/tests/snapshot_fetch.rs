//! A member fetching a snapshot whose source fails stays in its group and gets one later.
//!
//! Fail points are global to a process, so these tests live in a binary of their own, and each
//! holds a `FailScenario` (which runs them one at a time).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{events, free_addr, options, wait_count, wait_leader};
use meniscus_actors::Node;

/// Three nodes in one process, each with its data directory.
struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    members: Vec<(u64, SocketAddr)>,
    nodes: Vec<Option<Node>>,
}

impl Cluster {
    async fn start() -> Cluster {
        let mut cluster = Cluster {
            dirs: (0..3).map(|_| tempfile::tempdir().unwrap()).collect(),
            members: (1..=3).map(|id| (id, free_addr())).collect(),
            nodes: (0..3).map(|_| None).collect(),
        };
        for i in 0..3 {
            cluster.start_node(i).await;
        }
        cluster
    }

    async fn start_node(&mut self, i: usize) {
        let mut options = options(self.dirs[i].path(), i as u64 + 1, &self.members);
        options.max_raft_log_entries = 5;
        self.nodes[i] = Some(Node::start(options).await.unwrap());
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().unwrap()
    }

    fn live(&self) -> Vec<&Node> {
        self.nodes.iter().flatten().collect()
    }

    /// Whether node `i` has begun fetching a snapshot's files.
    fn fetching(&self, i: usize) -> bool {
        std::fs::read_dir(self.dirs[i].path().join("snapshots")).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("incoming-"))
        })
    }

    async fn shutdown(self) {
        for node in self.nodes.into_iter().flatten() {
            node.shutdown().await.unwrap();
        }
    }
}

/// Stops one node, writes 2,000 events without it and compacts the log past it: it can only
/// come back by snapshot. Returns the leader and the stopped node.
async fn leave_a_member_behind(cluster: &mut Cluster) -> (usize, usize) {
    let leader = wait_leader(&cluster.nodes).await;
    let l = cluster.node(leader);
    l.create_tenant("acme").await.unwrap().unwrap();
    l.publish("acme", &events(0, 100)).await.unwrap();
    wait_count(&cluster.live(), 100).await;
    let down = (leader + 1) % 3;
    cluster.nodes[down]
        .take()
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    let l = cluster.node(leader);
    for batch in 1..20 {
        l.publish("acme", &events(batch * 100, 100)).await.unwrap();
    }
    wait_count(&cluster.live(), 2000).await;
    // Long enough for the leader to see it gone, then the log is cut past what it has.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for node in cluster.live() {
        node.compact_log().await.unwrap();
    }
    assert!(cluster.node(leader).log_first_index() > 10);
    (leader, down)
}

async fn wait_fetching(cluster: &Cluster, i: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.fetching(i) {
        assert!(
            Instant::now() < deadline,
            "node {} was sent no snapshot",
            i + 1
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_whose_pieces_fail_is_fetched_again_and_the_member_catches_up() {
    let scenario = fail::FailScenario::setup();
    let mut cluster = Cluster::start().await;
    let (leader, down) = leave_a_member_behind(&mut cluster).await;

    // Every pull is refused: each fetch gives up after its retries (under a second), and
    // the leader sends the snapshot again. Before fetching first, the member's Raft thread
    // took the snapshot and then stopped for good when its files could not be had.
    fail::cfg("snapshot-serve", "return(disk on fire)").unwrap();
    cluster.start_node(down).await;
    wait_fetching(&cluster, down).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    fail::remove("snapshot-serve");

    // The leader sends the snapshot again; this time it is fetched and installed, and the
    // member goes on applying after it.
    wait_count(&cluster.live(), 2000).await;
    cluster
        .node(leader)
        .publish("acme", &events(2000, 100))
        .await
        .unwrap();
    wait_count(&cluster.live(), 2100).await;
    cluster.shutdown().await;
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_fetching_from_a_leader_that_stops_gets_its_snapshot_from_the_next() {
    let scenario = fail::FailScenario::setup();
    let mut cluster = Cluster::start().await;
    let (leader, down) = leave_a_member_behind(&mut cluster).await;

    // Pulls go unanswered, as from a node that died: each would wait 15 s, four times.
    fail::cfg("snapshot-serve", "return").unwrap();
    cluster.start_node(down).await;
    wait_fetching(&cluster, down).await;
    cluster.nodes[leader]
        .take()
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    fail::remove("snapshot-serve");

    // The third node leads with the member's vote, and the member takes its snapshot: the
    // fetch from the stopped leader is given up as soon as the member sees another leader,
    // well within `wait_count`'s 20 s.
    wait_count(&cluster.live(), 2000).await;
    let new_leader = wait_leader(&cluster.nodes).await;
    assert_ne!(new_leader, down);
    cluster
        .node(new_leader)
        .publish("acme", &events(2000, 100))
        .await
        .unwrap();
    wait_count(&cluster.live(), 2100).await;
    cluster.shutdown().await;
    scenario.teardown();
}
