//! Every directed node-to-node link of a cluster, through a [`Proxy`] in front of each node,
//! and the partitions built from them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::proxy::{LinkState, Proxy};
use crate::Result;

/// The proxies between N nodes: every node reaches node `j` through `proxy(j)`, which tells
/// senders apart, so each directed link `i->j` has its own state.
pub struct Network {
    ids: Vec<u64>,
    proxies: BTreeMap<u64, Proxy>,
    /// With TLS peer links the proxies cannot read frames: they relay bytes and tell senders
    /// apart by the IP each node listens on (and dials from); links delay but lose no frames.
    tls: bool,
    /// Each node's IP, for `tls`.
    ips: BTreeMap<u64, std::net::IpAddr>,
    /// Whether partitions refuse connections (a dead peer) or discard bytes (a lost network).
    partition: LinkState,
}

impl Network {
    /// Starts a proxy in front of each of `nodes` (id, real Raft address); `tls`: the nodes'
    /// peer links are TLS (each node on an IP of its own).
    pub fn start(nodes: &[(u64, SocketAddr)], tls: bool) -> Result<Network> {
        let mut network = Network {
            ids: Vec::new(),
            proxies: BTreeMap::new(),
            tls,
            ips: BTreeMap::new(),
            partition: LinkState::Drop,
        };
        for (id, target) in nodes {
            network.add(*id, *target)?;
        }
        Ok(network)
    }

    /// Starts a proxy in front of a node that joins (id, real Raft address); returns the
    /// address the others reach it at.
    pub fn add(&mut self, id: u64, target: SocketAddr) -> Result<SocketAddr> {
        let listen = SocketAddr::new(target.ip(), 0);
        let proxy = if self.tls {
            Proxy::start(listen, target)?
        } else {
            Proxy::start_framed(listen, target)?
        };
        let addr = proxy.addr();
        self.ips.insert(id, target.ip());
        self.proxies.insert(id, proxy);
        if self.tls {
            for proxy in self.proxies.values() {
                for (node, ip) in &self.ips {
                    proxy.name_sender(*ip, *node);
                }
            }
        }
        if !self.ids.contains(&id) {
            self.ids.push(id);
        }
        Ok(addr)
    }

    /// Forgets a node that left: partitions no longer name it, and its proxy stops.
    pub fn remove(&mut self, id: u64) {
        self.ids.retain(|other| *other != id);
        self.proxies.remove(&id);
    }

    /// The node ids.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// The proxy every node dials to reach `to`.
    pub fn proxy(&self, to: u64) -> &Proxy {
        &self.proxies[&to]
    }

    /// The state of the link `from -> to`.
    pub fn link(&self, from: u64, to: u64) -> LinkState {
        self.proxy(to).state_from(from)
    }

    /// `--initial-cluster` for every node: each node's proxy (a node listens on its real
    /// address, given with `--raft`). Nodes record these addresses in the cluster metadata and
    /// dial what is recorded, so every node must name the same ones.
    pub fn initial_cluster(&self) -> String {
        self.ids
            .iter()
            .map(|id| format!("{id}={}", self.proxy(*id).addr()))
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
            self.proxy(to).set_from(from, state);
        }
    }

    /// Every link passes again.
    pub fn heal(&self) {
        for proxy in self.proxies.values() {
            proxy.set(LinkState::Pass);
        }
    }

    /// Every directed link between two different nodes.
    fn pairs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ids.iter().flat_map(move |from| {
            self.ids
                .iter()
                .filter(move |to| *to != from)
                .map(move |to| (*from, *to))
        })
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
        for (from, to) in self.pairs() {
            if node.is_none_or(|n| n == from || n == to) {
                self.set(
                    from,
                    to,
                    LinkState::Degraded {
                        delay: latency,
                        loss_percent,
                    },
                );
            }
        }
    }

    /// Frames lost on purpose so far, all links.
    pub fn lost_frames(&self) -> u64 {
        self.proxies.values().map(Proxy::lost_frames).sum()
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
            .pairs()
            .map(|(from, to)| (from, to, self.link(from, to)))
            .filter(|(_, _, state)| *state != LinkState::Pass)
            .map(|(from, to, state)| format!("{from}->{to}:{state:?}"))
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
        Network::start(&nodes, false).unwrap()
    }

    fn blocked(net: &Network) -> Vec<(u64, u64)> {
        let mut cut: Vec<(u64, u64)> = net
            .pairs()
            .filter(|(from, to)| net.link(*from, *to) == LinkState::Drop)
            .collect();
        cut.sort_unstable();
        cut
    }

    #[test]
    fn partitions_cut_the_right_links() {
        let net = network(5);
        assert_eq!(net.pairs().count(), 20);
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
    fn every_node_is_named_by_its_proxy() {
        let net = network(3);
        let line = net.initial_cluster();
        let parts: Vec<String> = line.split(',').map(str::to_owned).collect();
        for (i, id) in [1u64, 2, 3].iter().enumerate() {
            assert_eq!(parts[i], format!("{id}={}", net.proxy(*id).addr()));
        }
    }
}
