//! The node(s) a benchmark run publishes to: one, or an in-process cluster replicating every
//! event to every member, each with its HTTP API on an ephemeral port.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use meniscus_actors::{
    placement, CertificateAuthority, ClusterOptions, IndexerSettings, Node, NodeOptions,
    PeerSecurity,
};
use meniscus_api::ApiConfig;
use tokio::net::TcpListener;

/// The node publishers talk to (the leader, in a cluster), and the others.
pub(super) struct BenchNode {
    /// The node that takes the writes.
    pub node: Arc<Node>,
    /// Its HTTP API.
    pub base: String,
    others: Vec<Arc<Node>>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The cluster a run measures.
#[derive(Debug, Clone, Copy)]
pub struct ClusterShape {
    /// How many nodes (1: a single node, no peer links).
    pub nodes: usize,
    /// Whether followers copy the leader's indexes.
    pub copy_follower_indexes: bool,
    /// Event shards.
    pub shards: u64,
    /// Plain-text peer links instead of mutually authenticated TLS.
    pub plain_links: bool,
}

impl BenchNode {
    /// Starts `nodes` nodes storing under `data_dir` and serves the leader's API.
    pub async fn start(
        data_dir: &Path,
        settings: &IndexerSettings,
        cluster: &ClusterShape,
    ) -> anyhow::Result<BenchNode> {
        let ClusterShape {
            nodes,
            copy_follower_indexes,
            shards,
            plain_links,
        } = *cluster;
        let ca = CertificateAuthority::generate()?;
        let mut started = Vec::new();
        if nodes <= 1 {
            let mut options = NodeOptions::new(data_dir);
            options.indexer = settings.clone();
            started.push(Arc::new(
                Node::start(options).await.context("starting the node")?,
            ));
        } else {
            let members = (1..=nodes as u64)
                .map(|id| Ok((id, free_addr()?)))
                .collect::<anyhow::Result<Vec<(u64, SocketAddr)>>>()?;
            for (id, addr) in &members {
                let mut options = NodeOptions::new(data_dir.join(format!("node-{id}")));
                options.node_id = *id;
                options.indexer = settings.clone();
                options.copy_follower_indexes = copy_follower_indexes;
                options.cluster = Some(ClusterOptions {
                    raft_addr: *addr,
                    members: members.clone(),
                    tick_interval: Duration::from_millis(100),
                    join: false,
                    security: if plain_links {
                        PeerSecurity::Insecure
                    } else {
                        PeerSecurity::Tls(ca.node_tls(*id)?)
                    },
                });
                let node = Node::start(options)
                    .await
                    .with_context(|| format!("starting node {id}"))?;
                started.push(Arc::new(node));
            }
        }
        let mut leader = wait_for_leader(&started, 0).await?;
        if nodes > 1 && shards > 0 {
            let ids: Vec<u64> = (1..=nodes as u64).collect();
            started[leader]
                .ensure_shards(shards, &ids, placement::DEFAULT_REPLICATION_FACTOR)
                .await
                .context("making the event shards")?;
            // The bench tenant, the first, goes to shard 1: publish to its leader, as the
            // single-node runs publish to theirs.
            leader = wait_for_leader(&started, 1).await?;
        }
        let node = started.remove(leader);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(meniscus_api::serve(
            listener,
            meniscus_api::router(node.clone(), ApiConfig::default()),
            meniscus_api::ServeLimits::default(),
            None,
            async {
                let _ = stopped.await;
            },
        ));
        Ok(BenchNode {
            node,
            base,
            others: started,
            stop,
            server,
        })
    }

    /// Stops the API and every node.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let _ = self.server.await;
        self.node.shutdown().await.context("stopping the node")?;
        for other in self.others {
            other.shutdown().await.context("stopping a node")?;
        }
        Ok(())
    }
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The index in `nodes` of the one leading Raft group `group`.
async fn wait_for_leader(nodes: &[Arc<Node>], group: u64) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leads = |node: &Arc<Node>| {
            node.group_statuses()
                .iter()
                .any(|g| g.id == group && g.raft.leader == g.raft.id)
        };
        if let Some(i) = nodes.iter().position(leads) {
            return Ok(i);
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "no leader of group {group} among the benchmark's {} nodes",
                nodes.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
