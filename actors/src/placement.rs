//! Where shard replicas live: the policy the metadata leader follows when nodes join or leave.
//!
//! Pure functions over ids, so the rules can be checked exhaustively: every shard has
//! `min(factor, nodes)` replicas on distinct live nodes; no node holds more than one replica
//! more than any other; and a change moves as few replicas as it can, because every move is a
//! snapshot shipped over the network and a joint configuration change.

use std::collections::{BTreeMap, BTreeSet};

/// Event shards a cluster is bootstrapped with unless told otherwise: a few, so that their
/// leaders (and the work of leading) spread over three to five nodes.
pub const DEFAULT_SHARDS: u64 = 4;

/// Replicas of each shard unless told otherwise: three survive one node down, on clusters of
/// any size (fewer members hold one each).
pub const DEFAULT_REPLICATION_FACTOR: u64 = 3;

/// Shard id -> the nodes holding a replica of it.
pub type Assignment = BTreeMap<u64, BTreeSet<u64>>;

/// One replica move: `shard` gains a replica on `add` and loses the one on `remove` (`None`:
/// a replica is only added, as when a shard is short of replicas).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The shard group.
    pub shard: u64,
    /// The node that receives a replica (a learner first, then a voter).
    pub add: u64,
    /// The node that gives its replica up, in the same joint change.
    pub remove: Option<u64>,
}

/// The assignment to aim for, given the live `nodes`, the `shards` and what is placed now.
///
/// Replicas on nodes that are gone are dropped first; shards short of replicas get them on the
/// least loaded nodes; then replicas move from the most to the least loaded node until no two
/// nodes differ by more than one. Ties go to the lower id, so every node computes the same plan.
pub fn plan(
    nodes: &BTreeSet<u64>,
    shards: &[u64],
    factor: usize,
    current: &Assignment,
) -> Assignment {
    let factor = factor.min(nodes.len());
    let mut target: Assignment = shards
        .iter()
        .map(|shard| {
            let kept: BTreeSet<u64> = current
                .get(shard)
                .map(|held| held.intersection(nodes).copied().collect())
                .unwrap_or_default();
            (*shard, kept)
        })
        .collect();
    if factor == 0 {
        return target;
    }
    let mut load = loads(nodes, &target);
    for replicas in target.values_mut() {
        while replicas.len() > factor {
            let busiest = *replicas
                .iter()
                .max_by_key(|n| (load[n], std::cmp::Reverse(**n)))
                .expect("more replicas than the factor, so not empty");
            replicas.remove(&busiest);
            *load.get_mut(&busiest).expect("a live node") -= 1;
        }
        while replicas.len() < factor {
            let idlest = *nodes
                .iter()
                .filter(|n| !replicas.contains(n))
                .min_by_key(|n| (load[n], **n))
                .expect("factor <= nodes, so a node without a replica exists");
            replicas.insert(idlest);
            *load.get_mut(&idlest).expect("a live node") += 1;
        }
    }
    // Even out: each move lowers the spread, so this ends.
    loop {
        let (&busiest, &most) = load
            .iter()
            .max_by_key(|(n, l)| (**l, std::cmp::Reverse(**n)))
            .expect("nodes is not empty");
        let (&idlest, &least) = load
            .iter()
            .min_by_key(|(n, l)| (**l, **n))
            .expect("nodes is not empty");
        if most <= least + 1 {
            return target;
        }
        let Some(replicas) = target
            .values_mut()
            .find(|r| r.contains(&busiest) && !r.contains(&idlest))
        else {
            return target; // every shard on the busiest node is on the idlest one too
        };
        replicas.remove(&busiest);
        replicas.insert(idlest);
        *load.get_mut(&busiest).expect("a live node") -= 1;
        *load.get_mut(&idlest).expect("a live node") += 1;
    }
}

/// The moves that take `current` to `target`, each pairing a new replica with one that goes
/// away (in the same shard) when there is one.
pub fn moves(current: &Assignment, target: &Assignment) -> Vec<Move> {
    let empty = BTreeSet::new();
    let mut out = Vec::new();
    for (shard, wanted) in target {
        let held = current.get(shard).unwrap_or(&empty);
        let mut leaving = held.difference(wanted).copied();
        for add in wanted.difference(held).copied() {
            out.push(Move {
                shard: *shard,
                add,
                remove: leaving.next(),
            });
        }
    }
    out
}

/// The shard a new tenant goes to: the one with the fewest tenants (the lowest id on a tie).
pub fn shard_for_new_tenant(tenants_per_shard: &BTreeMap<u64, usize>) -> Option<u64> {
    tenants_per_shard
        .iter()
        .min_by_key(|(shard, tenants)| (**tenants, **shard))
        .map(|(shard, _)| *shard)
}

fn loads(nodes: &BTreeSet<u64>, assignment: &Assignment) -> BTreeMap<u64, usize> {
    let mut load: BTreeMap<u64, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    for replicas in assignment.values() {
        for node in replicas {
            if let Some(l) = load.get_mut(node) {
                *l += 1;
            }
        }
    }
    load
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    fn check(nodes: &BTreeSet<u64>, shards: &[u64], factor: usize, target: &Assignment) {
        let factor = factor.min(nodes.len());
        assert_eq!(target.len(), shards.len());
        for (shard, replicas) in target {
            assert_eq!(replicas.len(), factor, "shard {shard}: {replicas:?}");
            assert!(replicas.is_subset(nodes), "shard {shard} on a gone node");
        }
        let load = loads(nodes, target);
        let (most, least) = (load.values().max(), load.values().min());
        if let (Some(most), Some(least)) = (most, least) {
            assert!(most - least <= 1, "unbalanced: {load:?}");
        }
    }

    #[test]
    fn a_new_cluster_spreads_replicas_evenly() {
        let nodes = set(&[1, 2, 3, 4, 5]);
        let shards: Vec<u64> = (1..=5).collect();
        let target = plan(&nodes, &shards, 3, &Assignment::new());
        check(&nodes, &shards, 3, &target);
        assert_eq!(loads(&nodes, &target).values().sum::<usize>(), 15);
    }

    #[test]
    fn a_joining_node_takes_replicas_and_each_move_swaps_one() {
        let shards: Vec<u64> = (1..=6).collect();
        let before = plan(&set(&[1, 2, 3]), &shards, 3, &Assignment::new());
        let nodes = set(&[1, 2, 3, 4]);
        let after = plan(&nodes, &shards, 3, &before);
        check(&nodes, &shards, 3, &after);
        let moved = moves(&before, &after);
        // 18 replicas over 4 nodes: node 4 takes 4 or 5, each taken from another node.
        assert!((4..=5).contains(&moved.len()), "{moved:?}");
        assert!(moved.iter().all(|m| m.add == 4 && m.remove.is_some()));
    }

    #[test]
    fn a_removed_node_has_its_replicas_placed_elsewhere() {
        let shards: Vec<u64> = (1..=4).collect();
        let nodes = set(&[1, 2, 3, 4, 5]);
        let before = plan(&nodes, &shards, 3, &Assignment::new());
        let fewer = set(&[1, 2, 3, 5]);
        let after = plan(&fewer, &shards, 3, &before);
        check(&fewer, &shards, 3, &after);
        for m in moves(&before, &after) {
            assert_ne!(m.add, 4);
        }
        assert!(after.values().all(|r| !r.contains(&4)));
    }

    #[test]
    fn new_tenants_go_to_the_emptiest_shard() {
        let counts: BTreeMap<u64, usize> = [(1, 3), (2, 1), (3, 1)].into_iter().collect();
        assert_eq!(shard_for_new_tenant(&counts), Some(2));
        assert_eq!(shard_for_new_tenant(&BTreeMap::new()), None);
    }

    proptest! {
        #[test]
        fn any_change_yields_a_valid_plan_that_keeps_what_it_can(
            before in proptest::collection::btree_set(1u64..12, 1..8),
            after in proptest::collection::btree_set(1u64..12, 1..8),
            shard_count in 1u64..10,
            factor in 1usize..6,
        ) {
            let shards: Vec<u64> = (1..=shard_count).collect();
            let first = plan(&before, &shards, factor, &Assignment::new());
            check(&before, &shards, factor, &first);
            let second = plan(&after, &shards, factor, &first);
            check(&after, &shards, factor, &second);
            // Planning again changes nothing.
            prop_assert_eq!(&plan(&after, &shards, factor, &second), &second);
            // Nodes that only joined: replicas move to them and nowhere else.
            if before.is_subset(&after) {
                for m in moves(&first, &second) {
                    prop_assert!(!before.contains(&m.add), "{:?} moved between old nodes", m);
                }
            }
            // Moves pair additions with removals in the same shard, so applying them yields
            // the plan.
            let mut applied = first.clone();
            for m in moves(&first, &second) {
                let replicas = applied.entry(m.shard).or_default();
                replicas.insert(m.add);
                if let Some(gone) = m.remove {
                    replicas.remove(&gone);
                }
            }
            for (shard, replicas) in applied.iter_mut() {
                replicas.retain(|n| second[shard].contains(n));
            }
            prop_assert_eq!(applied, second);
        }
    }
}
