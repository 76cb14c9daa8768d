use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::AppState;

/// What both probes report of the node.
fn state_json(state: &AppState, ready: &Result<(), String>) -> Value {
    let raft = state.node.raft_status();
    json!({
        "ready": ready.is_ok(),
        "reason": ready.as_ref().err(),
        "node_id": raft.id,
        "leader": raft.leader,
        "writable": state.node.is_writable(),
        "commit_index": raft.commit,
        "applied_index": raft.applied,
        "indexing_backlog_bytes": state.node.indexing_backlog_bytes(),
    })
}

/// `GET /healthz`, `GET /livez`: liveness. 200 whenever the process answers, leader or not;
/// restart the process only when this fails.
pub(crate) async fn livez(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let ready = state.node.readiness();
    (StatusCode::OK, Json(state_json(&state, &ready)))
}

/// `GET /readyz`: readiness. 200 when this node can take writes and searches now (a leader
/// is known, its log is applied, it is a member), on followers too: they forward writes.
/// 503 with the reason otherwise; send traffic elsewhere until it passes.
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let ready = state.node.readiness();
    let status = if ready.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(state_json(&state, &ready)))
}
