use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::AppState;

/// 200 when this node can take writes, 503 otherwise.
pub(crate) async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let raft = state.node.raft_status();
    let body = json!({
        "writable": state.node.is_writable(),
        "commit_index": raft.commit,
        "applied_index": raft.applied,
        "indexing_backlog_bytes": state.node.indexing_backlog_bytes(),
    });
    let status = if state.node.is_writable() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
