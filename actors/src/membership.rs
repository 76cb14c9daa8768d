//! Membership changes: the metadata says who should be a member; the leader changes the Raft
//! group to match, one step at a time.
//!
//! A node that joins is first added as a learner (it receives the log, or a snapshot, but does
//! not vote), and is promoted to voter once it has caught up, so a slow newcomer never weakens
//! the quorum. A removed node is taken out of the group; a leader that is being removed hands
//! leadership to the most up-to-date voter first.

use std::time::Duration;

use meniscus_consensus::{RaftHandle, RaftStatus};
use meniscus_storage::{ApplyOutcome, MemberRecord, Metadata};
use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2};

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
}

/// Decides the next step (at most one: a change must apply before the next is proposed).
pub(crate) fn next_step(status: &RaftStatus, members: &[MemberRecord]) -> Option<Step> {
    if status.leader != status.id || status.pending_conf_index > status.applied {
        return None;
    }
    let in_group = |id: u64| status.voters.contains(&id) || status.learners.contains(&id);
    let matched = |id: u64| {
        status
            .replicas
            .iter()
            .find(|r| r.id == id)
            .map_or(0, |r| r.matched)
    };
    for member in members {
        let id = member.id;
        if member.removed {
            if !in_group(id) {
                continue;
            }
            if id == status.id {
                let successor = status
                    .voters
                    .iter()
                    .copied()
                    .filter(|v| *v != id)
                    .max_by_key(|v| matched(*v))?;
                return Some(Step::HandOver(successor));
            }
            return Some(Step::Remove(id));
        }
        if !in_group(id) {
            return Some(Step::AddLearner(id));
        }
        if status.learners.contains(&id) && matched(id) + CAUGHT_UP_SLACK >= status.commit {
            return Some(Step::Promote(id));
        }
    }
    None
}

fn change(kind: ConfChangeType, id: u64) -> ConfChangeV2 {
    let mut single = ConfChangeSingle::default();
    single.set_change_type(kind);
    single.node_id = id;
    let mut change = ConfChangeV2::default();
    change.set_changes(vec![single].into());
    change
}

/// One reconciliation round on this node (does nothing unless it leads).
pub(crate) async fn reconcile(metadata: &Metadata, raft: &RaftHandle<ApplyOutcome>) {
    let members = match metadata.members() {
        Ok(members) => members,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the members");
            return;
        }
    };
    if members.is_empty() {
        return;
    }
    let Some(step) = next_step(&raft.status(), &members) else {
        return;
    };
    let (what, proposal) = match step {
        Step::AddLearner(id) => (
            "adding as a learner",
            change(ConfChangeType::AddLearnerNode, id),
        ),
        Step::Promote(id) => ("promoting to voter", change(ConfChangeType::AddNode, id)),
        Step::Remove(id) => ("removing", change(ConfChangeType::RemoveNode, id)),
        Step::HandOver(to) => {
            tracing::info!(to, "this leader is being removed: handing leadership over");
            raft.transfer_leader(to);
            return;
        }
    };
    let id = proposal.changes[0].node_id;
    tracing::info!(node = id, "membership: {what}");
    if let Err(e) = raft.change_membership(proposal).await {
        tracing::info!(node = id, error = %e, "membership change not proposed; will retry");
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
        }
    }

    fn step(s: &RaftStatus, members: &[MemberRecord]) -> Option<(&'static str, u64)> {
        next_step(s, members).map(|step| match step {
            Step::AddLearner(id) => ("learner", id),
            Step::Promote(id) => ("promote", id),
            Step::Remove(id) => ("remove", id),
            Step::HandOver(id) => ("handover", id),
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
}
