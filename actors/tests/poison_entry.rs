//! An entry no replica can apply (a bug, a version skew, a forged proposal) is skipped the same
//! way on every replica and counted; the group keeps committing, and a forwarded proposal that
//! cannot be applied never reaches the log.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{events, free_addr, options, wait_count, wait_leader};
use meniscus_actors::{Error, Node};

/// Waits until every node has applied `index` in the metadata group; returns how many
/// unappliable entries each skipped.
async fn skipped_after(nodes: &[&Node], index: u64) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let statuses: Vec<_> = nodes
            .iter()
            .map(|n| n.cluster_status().unwrap().raft)
            .collect();
        if statuses.iter().all(|s| s.applied >= index) {
            return statuses.iter().map(|s| s.unappliable).collect();
        }
        assert!(
            Instant::now() < deadline,
            "not applied everywhere: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unappliable_entry_is_skipped_everywhere_and_the_group_goes_on() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let members: Vec<(u64, SocketAddr)> = (1..=3).map(|id| (id, free_addr())).collect();
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        nodes.push(Some(
            Node::start(options(dir.path(), i as u64 + 1, &members))
                .await
                .unwrap(),
        ));
    }
    let leader = wait_leader(&nodes).await;
    let l = nodes[leader].as_ref().unwrap();
    l.create_tenant("acme").await.unwrap().unwrap();

    // Proposed on the leader as it is (the test hook skips validation): committed, then
    // skipped by every replica, and its proposer is told.
    let poison = vec![0xff; 20];
    let refused = l.propose_unchecked(poison.clone()).await;
    assert!(
        matches!(
            refused,
            Err(Error::Consensus(meniscus_consensus::Error::Unappliable(_)))
        ),
        "{refused:?}"
    );
    let index = l.cluster_status().unwrap().raft.commit;
    let all: Vec<&Node> = nodes.iter().flatten().collect();
    assert_eq!(skipped_after(&all, index).await, vec![1, 1, 1]);

    // Forwarded by a follower: the leader validates it and refuses it before proposing.
    let follower = nodes[(leader + 1) % 3].as_ref().unwrap();
    let forwarded = follower.propose_unchecked(poison).await;
    let message = format!("{:?}", forwarded.unwrap_err());
    assert!(message.contains("cannot be applied"), "{message}");

    // The group goes on: writes through the leader and a follower commit and apply everywhere.
    l.publish("acme", &events(0, 100)).await.unwrap();
    follower.publish("acme", &events(100, 100)).await.unwrap();
    wait_count(&all, 200).await;
    let index = l.cluster_status().unwrap().raft.commit;
    assert_eq!(
        skipped_after(&all, index).await,
        vec![1, 1, 1],
        "the forwarded one never reached the log"
    );

    // A replica restarted after the skip starts and serves (it does not stop on the entry).
    let restart = (leader + 2) % 3;
    nodes[restart].take().unwrap().shutdown().await.unwrap();
    // The stopped node's last tasks let go of its store a moment after shutdown.
    let deadline = Instant::now() + Duration::from_secs(20);
    let again = loop {
        match Node::start(options(dirs[restart].path(), restart as u64 + 1, &members)).await {
            Ok(node) => break node,
            Err(e) if Instant::now() < deadline => {
                eprintln!("restart: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the node does not start again: {e}"),
        }
    };
    nodes[restart] = Some(again);
    let leader = wait_leader(&nodes).await;
    nodes[leader]
        .as_ref()
        .unwrap()
        .publish("acme", &events(200, 100))
        .await
        .unwrap();
    let all: Vec<&Node> = nodes.iter().flatten().collect();
    wait_count(&all, 300).await;
    for node in all {
        node.shutdown().await.unwrap();
    }
}
