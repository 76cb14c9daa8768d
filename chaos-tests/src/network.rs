//! Every directed node-to-node link of a cluster, each through its own [`Proxy`], and the
//! partitions built from them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::proxy::{LinkState, Proxy};
use crate::Result;

/// The proxies between N nodes: node `i` reaches node `j` through `link(i, j)`.
pub struct Network {
    ids: Vec<u64>,
    links: BTreeMap<(u64, u64), Proxy>,
    /// Whether partitions refuse connections (a dead peer) or discard bytes (a lost network).
    partition: LinkState,
}

impl Network {
    /// Starts a proxy for every ordered pair of `nodes` (id, real Raft address).
    pub fn start(nodes: &[(u64, SocketAddr)]) -> Result<Network> {
        let mut links = BTreeMap::new();
        for (from, _) in nodes {
            for (to, target) in nodes {
                if from != to {
                    let listen = SocketAddr::new(target.ip(), 0);
                    links.insert((*from, *to), Proxy::start_framed(listen, *target)?);
                }
            }
        }
        Ok(Network {
            ids: nodes.iter().map(|(id, _)| *id).collect(),
            links,
            partition: LinkState::Drop,
        })
    }

    /// The node ids.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// The proxy node `from` dials to reach `to`.
    pub fn link(&self, from: u64, to: u64) -> &Proxy {
        &self.links[&(from, to)]
    }

    /// `--initial-cluster` for node `id`: its own real address, every peer through a proxy.
    pub fn initial_cluster_for(&self, id: u64, own: SocketAddr) -> String {
        self.ids
            .iter()
            .map(|peer| {
                let addr = if *peer == id {
                    own
                } else {
                    self.link(id, *peer).addr()
                };
                format!("{peer}={addr}")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How the next partitions cut links: [`LinkState::Drop`] (bytes vanish, the default) or
    /// [`LinkState::Refuse`] (connections are closed, as by a dead peer).
    pub fn set_partition_style(&mut self, style: LinkState) {
        self.partition = style;
    }

    /// Sets one directed link.
    pub fn set(&self, from: u64, to: u64, state: LinkState) {
        if from != to {
            self.link(from, to).set(state);
        }
    }

    /// Every link passes again.
    pub fn heal(&self) {
        for proxy in self.links.values() {
            proxy.set(LinkState::Pass);
        }
    }

    /// Cuts every link from a node of `from` to a node of `to` (one way only).
    pub fn one_way(&self, from: &[u64], to: &[u64]) {
        for a in from {
            for b in to {
                self.set(*a, *b, self.partition);
            }
        }
    }

    /// Cuts every link between `a` and `b`, both ways.
    pub fn split(&self, a: &[u64], b: &[u64]) {
        self.one_way(a, b);
        self.one_way(b, a);
    }

    /// `node` can neither reach nor be reached by anyone.
    pub fn isolate(&self, node: u64) {
        let others = self.others(&[node]);
        self.split(&[node], &others);
    }

    /// `left` and `right` cannot talk to each other; `bridge`, in neither, talks to both.
    pub fn bridge(&self, left: &[u64], right: &[u64]) {
        self.split(left, right);
    }

    /// Adds `latency` to every link of `node` (both ways), or to every link when `None`, and
    /// loses `loss_percent` of their frames.
    pub fn degrade(&self, node: Option<u64>, latency: Duration, loss_percent: u8) {
        for ((from, to), proxy) in &self.links {
            if node.is_none_or(|n| n == *from || n == *to) {
                proxy.set(LinkState::Degraded {
                    delay: latency,
                    loss_percent,
                });
            }
        }
    }

    /// Frames lost on purpose so far, all links.
    pub fn lost_frames(&self) -> u64 {
        self.links.values().map(Proxy::lost_frames).sum()
    }

    /// The ids not in `these`.
    pub fn others(&self, these: &[u64]) -> Vec<u64> {
        self.ids
            .iter()
            .copied()
            .filter(|id| !these.contains(id))
            .collect()
    }

    /// The links that do not pass, as `i->j:state`, for logs.
    pub fn describe(&self) -> String {
        let faulty: Vec<String> = self
            .links
            .iter()
            .filter(|(_, p)| p.state() != LinkState::Pass)
            .map(|((from, to), p)| format!("{from}->{to}:{:?}", p.state()))
            .collect();
        if faulty.is_empty() {
            "all links pass".into()
        } else {
            faulty.join(" ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(n: u64) -> Network {
        // Targets need not listen for the link bookkeeping.
        let nodes: Vec<(u64, SocketAddr)> = (1..=n)
            .map(|id| (id, format!("127.0.0.1:{}", 1 + id).parse().unwrap()))
            .collect();
        Network::start(&nodes).unwrap()
    }

    fn blocked(net: &Network) -> Vec<(u64, u64)> {
        net.links
            .iter()
            .filter(|(_, p)| p.state() == LinkState::Drop)
            .map(|(k, _)| *k)
            .collect()
    }

    #[test]
    fn partitions_cut_the_right_links() {
        let net = network(5);
        assert_eq!(net.links.len(), 20);
        net.isolate(3);
        assert_eq!(
            blocked(&net),
            vec![
                (1, 3),
                (2, 3),
                (3, 1),
                (3, 2),
                (3, 4),
                (3, 5),
                (4, 3),
                (5, 3)
            ]
        );
        net.heal();
        assert!(blocked(&net).is_empty());

        net.bridge(&[1, 2], &[4, 5]);
        let cut = blocked(&net);
        assert_eq!(cut.len(), 8);
        assert!(cut.iter().all(|(a, b)| *a != 3 && *b != 3));
        net.heal();

        net.one_way(&[1], &[2, 3]);
        assert_eq!(blocked(&net), vec![(1, 2), (1, 3)]);
    }

    #[test]
    fn each_node_dials_its_peers_through_its_own_proxies() {
        let net = network(3);
        let own: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let line = net.initial_cluster_for(2, own);
        let parts: Vec<&str> = line.split(',').collect();
        assert_eq!(parts[1], "2=127.0.0.1:9");
        assert_eq!(parts[0], format!("1={}", net.link(2, 1).addr()));
        assert_eq!(parts[2], format!("3={}", net.link(2, 3).addr()));
    }
}
