//! Three nodes in one process, replicating over the real TCP transport: every replica stores and
//! indexes every committed event, and the group survives losing its leader.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{events, free_addr, options, wait_count, wait_leader};
use meniscus_actors::Node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_indexes_every_event_and_the_group_survives_its_leader() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let members: Vec<(u64, SocketAddr)> = (1..=3).map(|id| (id, free_addr())).collect();
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let options = options(dir.path(), i as u64 + 1, &members);
        nodes.push(Some(Node::start(options).await.unwrap()));
    }
    let leader = wait_leader(&nodes).await;
    let l = nodes[leader].as_ref().unwrap();
    let token = l.create_tenant("acme").await.unwrap().unwrap();
    for batch in 0..10 {
        l.publish("acme", &events(batch * 100, 100)).await.unwrap();
    }
    let follower = (leader + 1) % 3;
    let f = nodes[follower].as_ref().unwrap();
    // A follower forwards writes to the leader; resending ids replaces, never duplicates.
    f.publish("acme", &events(900, 100)).await.unwrap();
    let all: Vec<&Node> = nodes.iter().flatten().collect();
    wait_count(&all, 1000).await;
    for node in &all {
        assert!(
            node.authenticate(&token).unwrap().is_some(),
            "metadata reaches every replica"
        );
    }

    // Lose the leader: the others elect a new one, take writes, and converge.
    nodes[leader].take().unwrap().shutdown().await.unwrap();
    let stopped = Instant::now();
    let new_leader = wait_leader(&nodes).await;
    eprintln!(
        "new leader {:?} after the leader stopped",
        stopped.elapsed()
    );
    assert_ne!(new_leader, leader);
    nodes[new_leader]
        .as_ref()
        .unwrap()
        .publish("acme", &events(1000, 50))
        .await
        .unwrap();
    let survivors: Vec<&Node> = nodes.iter().flatten().collect();
    wait_count(&survivors, 1050).await;
    for node in survivors {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_what_a_stopped_member_needs_and_it_catches_up() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let members: Vec<(u64, SocketAddr)> = (1..=3).map(|id| (id, free_addr())).collect();
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let node = Node::start(options(dir.path(), i as u64 + 1, &members)).await;
        nodes.push(Some(node.unwrap()));
    }
    let leader = wait_leader(&nodes).await;
    let l = nodes[leader].as_ref().unwrap();
    l.create_tenant("acme").await.unwrap().unwrap();
    for batch in 0..5 {
        l.publish("acme", &events(batch * 100, 100)).await.unwrap();
    }
    let all: Vec<&Node> = nodes.iter().flatten().collect();
    wait_count(&all, 500).await;

    // Stop a follower, write more, and compact everywhere.
    let down = (leader + 1) % 3;
    nodes[down].take().unwrap().shutdown().await.unwrap();
    let l = nodes[leader].as_ref().unwrap();
    let stored_on_down = l
        .cluster_status()
        .unwrap()
        .raft
        .replicas
        .iter()
        .find(|r| r.id == down as u64 + 1)
        .unwrap()
        .matched;
    for batch in 5..10 {
        l.publish("acme", &events(batch * 100, 100)).await.unwrap();
    }
    let live: Vec<&Node> = nodes.iter().flatten().collect();
    wait_count(&live, 1000).await;
    for node in &live {
        let first = node.compact_log().await.unwrap();
        assert!(
            first <= stored_on_down + 1,
            "a log was compacted to {first}, past what the stopped member stored ({stored_on_down})"
        );
    }

    // It returns, catches up from the log, and compaction moves on once it has.
    let node = Node::start(options(dirs[down].path(), down as u64 + 1, &members)).await;
    nodes[down] = Some(node.unwrap());
    let all: Vec<&Node> = nodes.iter().flatten().collect();
    wait_count(&all, 1000).await;
    let l = nodes[leader].as_ref().unwrap();
    // Generous: on a loaded machine the returning member's index commits come late.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let first = l.compact_log().await.unwrap();
        if first > stored_on_down + 1 {
            break;
        }
        assert!(Instant::now() < deadline, "compaction stuck at {first}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for node in nodes.into_iter().flatten() {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_behind_the_compacted_log_gets_a_snapshot() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let members: Vec<(u64, SocketAddr)> = (1..=3).map(|id| (id, free_addr())).collect();
    let options = |i: usize| {
        let mut o = options(dirs[i].path(), i as u64 + 1, &members);
        o.max_raft_log_entries = 5;
        o
    };
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(Some(Node::start(options(i)).await.unwrap()));
    }
    let leader = wait_leader(&nodes).await;
    let l = nodes[leader].as_ref().unwrap();
    let token = l.create_tenant("acme").await.unwrap().unwrap();
    l.publish("acme", &events(0, 100)).await.unwrap();
    let all: Vec<&Node> = nodes.iter().flatten().collect();
    wait_count(&all, 100).await;

    let down = (leader + 1) % 3;
    nodes[down].take().unwrap().shutdown().await.unwrap();
    let l = nodes[leader].as_ref().unwrap();
    // Tenants and tokens made while it is away must reach it through the snapshot too.
    let later_token = l.create_tenant("globex").await.unwrap().unwrap();
    for batch in 1..20 {
        l.publish("acme", &events(batch * 100, 100)).await.unwrap();
    }
    let live: Vec<&Node> = nodes.iter().flatten().collect();
    wait_count(&live, 2000).await;
    // Long enough for the leader to see it gone, then the log is cut past what it has.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut first = 0;
    for node in &live {
        first = first.max(node.compact_log().await.unwrap());
    }
    let leader_first = nodes[leader].as_ref().unwrap().log_first_index();
    assert!(
        leader_first > 10,
        "the leader kept its log from {leader_first} ({first})"
    );

    let node = Node::start(options(down)).await.unwrap();
    nodes[down] = Some(node);
    let all: Vec<&Node> = nodes.iter().flatten().collect();
    wait_count(&all, 2000).await;
    let back = nodes[down].as_ref().unwrap();
    assert!(
        back.log_first_index() > 10,
        "it caught up from a log, not a snapshot"
    );
    assert!(back.authenticate(&token).unwrap().is_some());
    assert!(back.authenticate(&later_token).unwrap().is_some());
    // It goes on applying after the snapshot.
    nodes[leader]
        .as_ref()
        .unwrap()
        .publish("acme", &events(2000, 100))
        .await
        .unwrap();
    let all: Vec<&Node> = nodes.iter().flatten().collect();
    wait_count(&all, 2100).await;
    for node in nodes.into_iter().flatten() {
        node.shutdown().await.unwrap();
    }
}
