//! `GET /v1/cluster`: membership, leadership and replication progress.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use crate::{auth, ApiError, AppState};

/// Group 0 is the only Raft group so far: it carries metadata and every tenant's events.
const GROUP: u64 = 0;

/// `GET /v1/cluster` (admin): what this node knows of the cluster. Lag per replica is only
/// known on the leader; other nodes report `replicas: []` and name the leader.
pub(crate) async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::admin(&state, &headers).await?;
    let status = state.node.cluster_status()?;
    let raft = &status.raft;
    let mut nodes = vec![json!({
        "id": status.node_id,
        "raft_addr": status.raft_addr.map(|a| a.to_string()),
        "self": true,
        "reachable": raft.running,
    })];
    nodes.extend(status.peers.iter().map(|p| {
        let active = raft
            .replicas
            .iter()
            .find(|r| r.id == p.id)
            .map(|r| r.recent_active);
        json!({
            "id": p.id,
            "raft_addr": p.addr.to_string(),
            "self": false,
            // The leader knows who answered it lately; elsewhere, whether our link is up.
            "reachable": active.unwrap_or(p.connected),
        })
    }));
    let replicas: Vec<Value> = raft
        .replicas
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "matched_index": r.matched,
                "lag": raft.commit.saturating_sub(r.matched),
                "recent_active": r.recent_active,
            })
        })
        .collect();
    Ok(Json(json!({
        "node_id": status.node_id,
        "nodes": nodes,
        "groups": [{
            "id": GROUP,
            "kind": "metadata+events",
            "leader": (raft.leader != 0).then_some(raft.leader),
            "term": raft.term,
            "voters": raft.voters,
            "learners": raft.learners,
            "commit_index": raft.commit,
            "applied_index": raft.applied,
            "log_first_index": status.log_first_index,
            "replicas": replicas,
        }],
        "shards": { GROUP.to_string(): status.tenants },
    })))
}
