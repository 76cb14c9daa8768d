use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::AppState;

/// `GET /metrics`: Prometheus text exposition of the node's state.
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let raft = state.node.raft_status();
    let gauges: [(&str, &str, u64); 7] = [
        (
            "meniscus_writable",
            "1 when this node takes writes",
            state.node.is_writable() as u64,
        ),
        ("meniscus_raft_term", "current Raft term", raft.term),
        (
            "meniscus_raft_commit_index",
            "highest committed Raft index",
            raft.commit,
        ),
        (
            "meniscus_raft_applied_index",
            "highest applied Raft index",
            raft.applied,
        ),
        (
            "meniscus_raft_log_first_index",
            "first Raft index still in the log (below: compacted)",
            state.node.log_first_index(),
        ),
        (
            "meniscus_indexing_backlog_bytes",
            "committed event bytes waiting for indexers",
            state.node.indexing_backlog_bytes(),
        ),
        (
            "meniscus_raft_leader",
            "id of the Raft leader, 0 when unknown",
            raft.leader,
        ),
    ];
    let mut body = String::new();
    for (name, help, value) in gauges {
        let _ = writeln!(
            body,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
