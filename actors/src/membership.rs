//! Membership changes: the metadata says who should be a member; the leader changes the Raft
//! group to match, one step at a time.
//!
//! A node that joins is first added as a learner (it receives the log, or a snapshot, but does
//! not vote), and is promoted to voter once it has caught up, so a slow newcomer never weakens
//! the quorum. A removed node is taken out of the group; a leader that is being removed hands
//! leadership to the most up-to-date voter first. A node that replaces another is a learner
//! until it has caught up, then one joint configuration change makes it a voter and removes
//! the one it replaces: the group never has one voter fewer while the newcomer catches up.

use std::time::Duration;

use meniscus_consensus::{RaftHandle, RaftStatus};
use meniscus_storage::{ApplyOutcome, MemberRecord, Metadata};
use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2};

/// Who should be in a group.
#[derive(Clone)]
pub(crate) enum Wanted {
    /// The cluster's members, as the metadata group records them: the metadata group's own
    /// members, and those of a shard placed on every member.
    Cluster(Metadata),
    /// The cluster's members that hold a replica of shard `id`; the others count as removed.
    Shard {
        /// The metadata group's store.
        metadata: Metadata,
        /// The shard.
        id: u64,
    },
}

impl Wanted {
    /// The metadata group's store.
    pub(crate) fn metadata(&self) -> &Metadata {
        match self {
            Wanted::Cluster(metadata) | Wanted::Shard { metadata, .. } => metadata,
        }
    }

    /// For a shard this node leads after it was removed from the cluster: the voter to hand
    /// leadership to. This node keeps its replica until the shard is placed elsewhere, but it
    /// no longer hears of placements (the metadata group dropped it), so the move must be led
    /// by another node.
    fn hand_over(&self, status: &RaftStatus) -> Option<u64> {
        let Wanted::Shard { metadata, .. } = self else {
            return None;
        };
        if status.leader != status.id {
            return None;
        }
        let removed = metadata
            .members()
            .ok()?
            .iter()
            .any(|m| m.id == status.id && m.removed);
        if !removed {
            return None;
        }
        most_up_to_date_voter_but(status, status.id)
    }

    /// The members the group (now as `status` says) should have, as [`next_step`] reads
    /// them. A shard's replica that moves is replaced, not just removed: each node that should
    /// hold one and is not in the group yet takes the place of a voter that should not, so the
    /// group keeps its voters while the newcomer catches up.
    pub(crate) fn members(
        &self,
        status: &RaftStatus,
    ) -> meniscus_storage::Result<Vec<MemberRecord>> {
        let mut members = self.metadata().members()?;
        if let Wanted::Shard { metadata, id } = self {
            let shard = metadata.shard(*id)?;
            // A shard placed with a factor follows its placement alone: a node removed from
            // the cluster keeps its replica until the metadata leader has placed it elsewhere
            // and the newcomer has caught up (replicas move off before they go).
            let on = |member: &MemberRecord| match &shard {
                Some(s) if s.factor > 0 => s.replicas.contains(&member.id),
                Some(_) => !member.removed,
                None => false,
            };
            let mut leaving: Vec<u64> = members
                .iter()
                .filter(|m| !on(m) && status.voters.contains(&m.id))
                .map(|m| m.id)
                .collect();
            for member in &mut members {
                if !on(member) {
                    member.removed = true;
                    member.replaces = None;
                } else {
                    member.removed = false;
                    member.replaces = if status.voters.contains(&member.id) {
                        None
                    } else {
                        leaving.pop()
                    };
                }
            }
        }
        Ok(members)
    }
}

/// How often the leader compares the group with the metadata.
pub(crate) const RECONCILE_EVERY: Duration = Duration::from_millis(200);
/// A learner within this many entries of the commit index counts as caught up.
const CAUGHT_UP_SLACK: u64 = 100;

/// The next change that brings the group closer to the metadata's members, if any.
pub(crate) enum Step {
    AddLearner(u64),
    Promote(u64),
    Remove(u64),
    /// This leader is to be removed: hand leadership to this voter first.
    HandOver(u64),
    /// In one joint change, promote the learner `new` and remove `old`.
    Replace {
        old: u64,
        new: u64,
    },
    /// The group is still in a joint configuration (its leader changed before it left it).
    LeaveJoint,
}

/// Decides the next step (at most one: a change must apply before the next is proposed).
pub(crate) fn next_step(status: &RaftStatus, members: &[MemberRecord]) -> Option<Step> {
    if status.leader != status.id || status.pending_conf_index > status.applied {
        return None;
    }
    if status.joint {
        return Some(Step::LeaveJoint);
    }
    let in_group = |id: u64| status.voters.contains(&id) || status.learners.contains(&id);
    let matched = |id: u64| matched(status, id);
    // Nothing matched yet: the learner has not even installed its snapshot, however short
    // the log is.
    let caught_up = |id: u64| matched(id) > 0 && matched(id) + CAUGHT_UP_SLACK >= status.commit;
    // The live member that replaces `id`, if any.
    let replacement_of = |id: u64| {
        members
            .iter()
            .find(|m| !m.removed && m.replaces == Some(id))
            .map(|m| m.id)
    };
    let hand_over = |leaving: u64| most_up_to_date_voter_but(status, leaving).map(Step::HandOver);
    for member in members {
        let id = member.id;
        if member.removed {
            if !in_group(id) {
                continue;
            }
            if let Some(new) = replacement_of(id).filter(|new| !status.voters.contains(new)) {
                if !in_group(new) {
                    return Some(Step::AddLearner(new));
                }
                if !caught_up(new) {
                    continue; // the old member stays until its replacement can take over
                }
                if id == status.id {
                    return hand_over(id);
                }
                return Some(Step::Replace { old: id, new });
            }
            if id == status.id {
                return hand_over(id);
            }
            return Some(Step::Remove(id));
        }
        if !in_group(id) {
            return Some(Step::AddLearner(id));
        }
        let replaces_a_voter = member
            .replaces
            .is_some_and(|old| status.voters.contains(&old));
        if status.learners.contains(&id) && caught_up(id) && !replaces_a_voter {
            return Some(Step::Promote(id));
        }
    }
    None
}

/// The highest index the leader knows member `id` has stored.
fn matched(status: &RaftStatus, id: u64) -> u64 {
    status
        .replicas
        .iter()
        .find(|r| r.id == id)
        .map_or(0, |r| r.matched)
}

/// The voter other than `leaving` that has stored the most: the one to hand leadership to.
fn most_up_to_date_voter_but(status: &RaftStatus, leaving: u64) -> Option<u64> {
    status
        .voters
        .iter()
        .copied()
        .filter(|v| *v != leaving)
        .max_by_key(|v| matched(status, *v))
}

fn single(kind: ConfChangeType, id: u64) -> ConfChangeSingle {
    let mut single = ConfChangeSingle::default();
    single.set_change_type(kind);
    single.node_id = id;
    single
}

/// A configuration change made of `changes`; with more than one, raft-rs goes through a joint
/// configuration and its leader leaves it on its own once it is applied.
fn change(changes: Vec<ConfChangeSingle>) -> ConfChangeV2 {
    let mut change = ConfChangeV2::default();
    change.set_changes(changes.into());
    change
}

/// One reconciliation round on this node (does nothing unless it leads).
pub(crate) async fn reconcile(wanted: &Wanted, raft: &RaftHandle<ApplyOutcome>) {
    let status = raft.status();
    let members = match wanted.members(&status) {
        Ok(members) => members,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the members");
            return;
        }
    };
    if members.is_empty() {
        return;
    }
    if let Some(to) = wanted.hand_over(&status) {
        tracing::info!(
            to,
            "this node left the cluster: handing a shard's leadership over"
        );
        raft.transfer_leader(to);
        return;
    }
    let Some(step) = next_step(&status, &members) else {
        return;
    };
    let proposal = match step {
        Step::AddLearner(id) => {
            tracing::info!(node = id, "membership: adding as a learner");
            change(vec![single(ConfChangeType::AddLearnerNode, id)])
        }
        Step::Promote(id) => {
            tracing::info!(node = id, "membership: promoting to voter");
            change(vec![single(ConfChangeType::AddNode, id)])
        }
        Step::Remove(id) => {
            tracing::info!(node = id, "membership: removing");
            change(vec![single(ConfChangeType::RemoveNode, id)])
        }
        Step::Replace { old, new } => {
            tracing::info!(old, new, "membership: replacing in one joint change");
            change(vec![
                single(ConfChangeType::AddNode, new),
                single(ConfChangeType::RemoveNode, old),
            ])
        }
        Step::LeaveJoint => {
            tracing::info!("membership: leaving the joint configuration");
            ConfChangeV2::default()
        }
        Step::HandOver(to) => {
            tracing::info!(to, "this leader is being removed: handing leadership over");
            raft.transfer_leader(to);
            return;
        }
    };
    if let Err(e) = raft.change_membership(proposal).await {
        tracing::info!(error = %e, "membership change not proposed; will retry");
    }
}

#[cfg(test)]
mod tests {
    use meniscus_consensus::ReplicaProgress;

    use super::*;

    fn status(voters: &[u64], learners: &[u64], matched: &[(u64, u64)]) -> RaftStatus {
        RaftStatus {
            id: 1,
            leader: 1,
            commit: 1_000,
            applied: 1_000,
            running: true,
            voters: voters.to_vec(),
            learners: learners.to_vec(),
            replicas: matched
                .iter()
                .map(|(id, m)| ReplicaProgress {
                    id: *id,
                    matched: *m,
                    recent_active: true,
                    pending_snapshot: 0,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn member(id: u64, removed: bool) -> MemberRecord {
        MemberRecord {
            id,
            raft_addr: format!("127.0.0.1:{}", 7000 + id),
            removed,
            replaces: None,
        }
    }

    fn step(s: &RaftStatus, members: &[MemberRecord]) -> Option<(&'static str, u64)> {
        next_step(s, members).map(|step| match step {
            Step::AddLearner(id) => ("learner", id),
            Step::Promote(id) => ("promote", id),
            Step::Remove(id) => ("remove", id),
            Step::HandOver(id) => ("handover", id),
            Step::Replace { old, new } => ("replace", old * 10 + new),
            Step::LeaveJoint => ("leave joint", 0),
        })
    }

    #[test]
    fn steps_toward_the_wanted_membership() {
        let all = [(1, 1_000), (2, 1_000), (3, 1_000)];
        let s = status(&[1, 2, 3], &[], &all);
        assert_eq!(step(&s, &[]), None);
        assert_eq!(step(&s, &[member(4, false)]), Some(("learner", 4)));
        let behind = status(&[1, 2, 3], &[4], &[(1, 1_000), (4, 10)]);
        assert_eq!(
            step(&behind, &[member(4, false)]),
            None,
            "still catching up"
        );
        let caught_up = status(&[1, 2, 3], &[4], &[(1, 1_000), (4, 990)]);
        assert_eq!(step(&caught_up, &[member(4, false)]), Some(("promote", 4)));
        let voter = status(&[1, 2, 3, 4], &[], &all);
        assert_eq!(step(&voter, &[member(4, false)]), None);
        assert_eq!(step(&voter, &[member(2, true)]), Some(("remove", 2)));
        assert_eq!(step(&s, &[member(5, true)]), None, "already gone");
        let two_ahead = status(&[1, 2, 3], &[], &[(1, 1_000), (2, 1_000), (3, 900)]);
        assert_eq!(
            step(&two_ahead, &[member(1, true)]),
            Some(("handover", 2)),
            "the leader hands over before it is removed"
        );
        let mut pending = status(&[1, 2, 3], &[], &all);
        pending.pending_conf_index = 1_001;
        assert_eq!(
            step(&pending, &[member(4, false)]),
            None,
            "one change at a time"
        );
        let mut follower = status(&[1, 2, 3], &[], &all);
        follower.leader = 2;
        assert_eq!(
            step(&follower, &[member(4, false)]),
            None,
            "only the leader changes it"
        );
    }

    #[test]
    fn a_replacement_catches_up_as_a_learner_then_swaps_in_one_joint_change() {
        let mut new = member(4, false);
        new.replaces = Some(2);
        let members = [member(2, true), new];
        let all = [(1, 1_000), (2, 1_000), (3, 1_000)];
        let s = status(&[1, 2, 3], &[], &all);
        assert_eq!(step(&s, &members), Some(("learner", 4)));
        let behind = status(&[1, 2, 3], &[4], &[(1, 1_000), (2, 1_000), (4, 10)]);
        assert_eq!(
            step(&behind, &members),
            None,
            "node 2 is neither removed nor node 4 promoted while 4 catches up"
        );
        let mut short_log = status(&[1, 2, 3], &[4], &[(1, 20), (2, 20), (4, 0)]);
        (short_log.commit, short_log.applied) = (20, 20);
        assert_eq!(
            step(&short_log, &members),
            None,
            "however short the log, a learner that stored nothing has not caught up"
        );
        let caught_up = status(&[1, 2, 3], &[4], &[(1, 1_000), (2, 1_000), (4, 995)]);
        assert_eq!(step(&caught_up, &members), Some(("replace", 24)));
        let mut joint = status(&[1, 2, 3, 4], &[], &all);
        joint.joint = true;
        assert_eq!(step(&joint, &members), Some(("leave joint", 0)));
        let done = status(&[1, 3, 4], &[], &all);
        assert_eq!(step(&done, &members), None);
        // A replacement that became a voter on its own (say, an older leader promoted it): the
        // replaced member is simply removed.
        let both = status(&[1, 2, 3, 4], &[], &all);
        assert_eq!(step(&both, &members), Some(("remove", 2)));
        // The leader being replaced hands over first.
        let mut leader_replaced = members.clone();
        leader_replaced[0] = member(1, true);
        leader_replaced[1].replaces = Some(1);
        assert_eq!(step(&caught_up, &leader_replaced), Some(("handover", 2)));
    }

    #[test]
    fn a_moved_shard_replica_is_swapped_in_once_caught_up() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let metadata = Metadata::open(&db).unwrap();
        let mut index = 0;
        let mut apply = |kind: meniscus_storage::CommandKind| {
            index += 1;
            metadata
                .apply(index, &meniscus_storage::Command::new(kind))
                .unwrap();
        };
        for id in 1..=4 {
            apply(meniscus_storage::CommandKind::AddMember(
                meniscus_storage::AddMember {
                    id,
                    raft_addr: format!("127.0.0.1:{}", 7000 + id),
                    replaces: 0,
                },
            ));
        }
        apply(meniscus_storage::CommandKind::CreateShard(
            meniscus_storage::CreateShard {
                id: 1,
                replicas: vec![1, 2, 3],
                factor: 3,
            },
        ));
        // Node 3 leaves the cluster: its replica stays until the shard is placed elsewhere.
        apply(meniscus_storage::CommandKind::RemoveMember(
            meniscus_storage::RemoveMember { id: 3 },
        ));
        let placed = Wanted::Shard {
            metadata: metadata.clone(),
            id: 1,
        };
        let full = status(&[1, 2, 3], &[], &[(1, 1_000), (2, 1_000), (3, 1_000)]);
        let members = placed.members(&full).unwrap();
        assert_eq!(
            step(&full, &members),
            None,
            "not removed before it is replaced"
        );
        // The metadata leader places it on node 4 instead.
        apply(meniscus_storage::CommandKind::PlaceShard(
            meniscus_storage::PlaceShard {
                id: 1,
                replicas: vec![1, 2, 4],
            },
        ));
        let members = placed.members(&full).unwrap();
        assert_eq!(step(&full, &members), Some(("learner", 4)));
        let behind = status(&[1, 2, 3], &[4], &[(1, 1_000), (3, 1_000), (4, 10)]);
        let members = placed.members(&behind).unwrap();
        assert_eq!(
            step(&behind, &members),
            None,
            "node 3 stays until 4 caught up"
        );
        let caught_up = status(&[1, 2, 3], &[4], &[(1, 1_000), (3, 1_000), (4, 995)]);
        let members = placed.members(&caught_up).unwrap();
        assert_eq!(step(&caught_up, &members), Some(("replace", 34)));
        let after = status(&[1, 2, 4], &[], &[(1, 1_000), (2, 1_000), (4, 1_000)]);
        let members = placed.members(&after).unwrap();
        assert_eq!(step(&after, &members), None);
        // The metadata group (and a shard on every member) drops a removed member at once.
        let everywhere = Wanted::Cluster(metadata.clone());
        let members = everywhere.members(&full).unwrap();
        assert_eq!(step(&full, &members), Some(("remove", 3)));
    }
}
