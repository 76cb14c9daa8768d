//! `GET /v1/cluster`: membership, leadership and replication progress.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{auth, ApiError, AppState};

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
        json!({
            "id": p.id,
            "raft_addr": p.addr.to_string(),
            "self": false,
            // Every link carries at least a ping a second: reachable means heard lately.
            "reachable": p.reachable(),
            "last_heard_ms": p.last_heard.map(|ago| ago.as_millis() as u64),
            "connected": p.connected,
        })
    }));
    let groups: Vec<Value> = status.groups.iter().map(group_json).collect();
    let shards: serde_json::Map<String, Value> = status
        .shards
        .iter()
        .map(|s| (s.id.to_string(), json!(s.tenants)))
        .collect();
    // Shards placed on some nodes only; the others are on every member.
    let replicas: serde_json::Map<String, Value> = status
        .shards
        .iter()
        .filter_map(|s| Some((s.id.to_string(), json!(s.replicas.as_ref()?))))
        .collect();
    Ok(Json(json!({
        "node_id": status.node_id,
        "nodes": nodes,
        "groups": groups,
        "shards": shards,
        "shard_replicas": replicas,
        "indexes": {
            "follower_indexes": if status.indexes.copy_follower_indexes { "copy" } else { "index" },
            "indexing_here": status.indexes.indexing_here,
            "copies_adopted": status.indexes.copies_adopted,
        },
    })))
}

/// One Raft group as `GET /v1/cluster` shows it. Group 0 holds the metadata (and the events of
/// tenants made before there were shards); every other group is an event shard.
fn group_json(group: &meniscus_actors::GroupStatus) -> Value {
    let raft = &group.raft;
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
    json!({
        "id": group.id,
        "kind": if group.id == 0 { "metadata" } else { "events" },
        "leader": (raft.leader != 0).then_some(raft.leader),
        "term": raft.term,
        "voters": raft.voters,
        "learners": raft.learners,
        "joint": raft.joint,
        "commit_index": raft.commit,
        "applied_index": raft.applied,
        "log_first_index": group.log_first_index,
        "replicas": replicas,
    })
}

/// `POST /v1/cluster/nodes` body.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddNode {
    id: u64,
    raft_addr: String,
    /// A voter this node takes the place of: it leaves in the same (joint) configuration change
    /// that makes the newcomer a voter.
    #[serde(default)]
    replaces: Option<u64>,
}

/// `POST /v1/cluster/nodes` (admin): make a node a member. It is added as a learner and
/// promoted to voter once it has caught up (with `replaces`, in one joint change that also
/// removes that voter). Answers with every member's Raft address, for the newcomer to connect
/// to.
pub(crate) async fn add_node(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth::admin(&state, &headers).await?;
    let AddNode {
        id,
        raft_addr,
        replaces,
    } = crate::body::json(body, crate::body::MAX_ADMIN_BODY_BYTES, false).await?;
    let addr: SocketAddr = raft_addr.parse().map_err(|e| {
        ApiError::bad_request(
            "invalid_parameters",
            format!("raft_addr {raft_addr:?} is not IP:PORT ({e})"),
        )
    })?;
    let members = state.node.add_member(id, addr, replaces).await?;
    let members: Vec<Value> = members
        .into_iter()
        .map(|(id, raft_addr)| json!({"id": id, "raft_addr": raft_addr}))
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "members": members})),
    ))
}

/// `DELETE /v1/cluster/nodes/{id}` (admin): take a node out of the cluster.
pub(crate) async fn remove_node(
    State(state): State<AppState>,
    id: Result<Path<u64>, PathRejection>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth::admin(&state, &headers).await?;
    let Path(id) = id?;
    state.node.remove_member(id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "removed": true})),
    ))
}
