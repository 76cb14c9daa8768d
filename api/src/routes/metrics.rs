//! `GET /metrics`: the node's gauges, and the counters of each syslog listener.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use meniscus_actors::{GroupStatus, PipelineStats};
use meniscus_pipeline::PipelineCounters;

use crate::syslog::{MetricKind, SyslogCounts, SyslogStats};
use crate::AppState;

/// `GET /metrics`: Prometheus text exposition of the node's state and of the syslog listeners'
/// counters.
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let indexes = state.node.indexes_status();
    let gauges: [(&str, &str, u64); 4] = [
        (
            "meniscus_indexing_here",
            "1 when this node's indexers index applied events (0: it copies the leader's indexes)",
            indexes.indexing_here as u64,
        ),
        (
            "meniscus_index_copies_adopted",
            "index commits copied from leaders since this node started",
            indexes.copies_adopted,
        ),
        (
            "meniscus_writable",
            "1 when this node takes writes",
            state.node.is_writable() as u64,
        ),
        (
            "meniscus_indexing_backlog_bytes",
            "bytes of applied events not yet committed to their index (searchable by scanning)",
            state.node.indexing_backlog_bytes(),
        ),
    ];
    let mut body = String::new();
    for (name, help, value) in gauges {
        let _ = writeln!(
            body,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    if let Some(links) = state.node.peer_link_stats() {
        let counters: [(&str, &str, u64); 3] = [
            (
                "meniscus_peer_connections_refused_total",
                "inbound peer connections refused before any frame was read (no certificate from the cluster's CA, not a member, too many, handshake too slow)",
                links.refused.load(Ordering::Relaxed),
            ),
            (
                "meniscus_peer_bad_frames_total",
                "peer connections closed on a bad frame (oversized, undecodable, or claiming another sender than its certificate names)",
                links.bad_frames.load(Ordering::Relaxed),
            ),
            (
                "meniscus_peer_messages_dropped_total",
                "messages to or from peers dropped (full queue, broken link; Raft retransmits)",
                links.dropped.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                body,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
    }
    write_groups(&mut body, &state.node.group_statuses());
    write_pipelines(&mut body, &state.node.pipeline_stats());
    write_syslog(&mut body, &state.config.syslog);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Each pipeline's counters on this node, labelled by tenant and pipeline (names are
/// restricted to characters that need no escaping in a label).
fn write_pipelines(body: &mut String, stats: &[PipelineStats]) {
    if stats.is_empty() {
        return;
    }
    type Read = fn(&PipelineCounters) -> u64;
    let families: [(&str, &str, Read); 4] = [
        (
            "meniscus_pipeline_events_total",
            "events a pipeline ran on (its `when` held), on this node",
            |c| c.events_in.load(Ordering::Relaxed),
        ),
        (
            "meniscus_pipeline_dropped_total",
            "events a pipeline dropped on purpose (abort)",
            |c| c.dropped.load(Ordering::Relaxed),
        ),
        (
            "meniscus_pipeline_failed_total",
            "events a pipeline failed on, stored as they came with fields.pipeline_error",
            |c| c.failed.load(Ordering::Relaxed),
        ),
        (
            "meniscus_pipeline_nanoseconds_total",
            "time spent in a pipeline's program and `when`",
            |c| c.nanos.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, read) in families {
        let _ = writeln!(body, "# HELP {name} {help}\n# TYPE {name} counter");
        for s in stats {
            let _ = writeln!(
                body,
                "{name}{{tenant=\"{}\",pipeline=\"{}\"}} {}",
                s.tenant,
                s.pipeline,
                read(&s.counters)
            );
        }
    }
}

/// Each Raft group's progress, one series per group labelled `group="ID"` (0 is the metadata
/// group, the others event shards); per-replica lag and liveness as the group's leader sees
/// them (nothing where this node does not lead).
fn write_groups(body: &mut String, groups: &[GroupStatus]) {
    type Read = fn(&GroupStatus) -> u64;
    let families: [(&str, &str, Read); 6] = [
        ("meniscus_raft_term", "current Raft term", |g| g.raft.term),
        (
            "meniscus_raft_commit_index",
            "highest committed Raft index",
            |g| g.raft.commit,
        ),
        (
            "meniscus_raft_applied_index",
            "highest applied Raft index",
            |g| g.raft.applied,
        ),
        (
            "meniscus_raft_log_first_index",
            "first Raft index still in the log (below: compacted)",
            |g| g.log_first_index,
        ),
        (
            "meniscus_raft_leader",
            "id of the Raft leader, 0 when unknown",
            |g| g.raft.leader,
        ),
        (
            "meniscus_raft_unappliable_entries",
            "committed entries skipped on every replica because they cannot be applied, since this node started (logged at ERROR)",
            |g| g.raft.unappliable,
        ),
    ];
    for (name, help, read) in families {
        let _ = writeln!(body, "# HELP {name} {help}\n# TYPE {name} gauge");
        for group in groups {
            let _ = writeln!(body, "{name}{{group=\"{}\"}} {}", group.id, read(group));
        }
    }
    if groups.iter().all(|g| g.raft.replicas.is_empty()) {
        return;
    }
    let _ = writeln!(
        body,
        "# HELP meniscus_raft_replica_lag committed entries a replica has not stored yet (leader only)\n\
         # TYPE meniscus_raft_replica_lag gauge"
    );
    for group in groups {
        for r in &group.raft.replicas {
            let lag = group.raft.commit.saturating_sub(r.matched);
            let _ = writeln!(
                body,
                "meniscus_raft_replica_lag{{group=\"{}\",replica=\"{}\"}} {lag}",
                group.id, r.id
            );
        }
    }
    let _ = writeln!(
        body,
        "# HELP meniscus_raft_replica_active 1 when a replica answered the leader lately (leader only)\n\
         # TYPE meniscus_raft_replica_active gauge"
    );
    for group in groups {
        for r in &group.raft.replicas {
            let _ = writeln!(
                body,
                "meniscus_raft_replica_active{{group=\"{}\",replica=\"{}\"}} {}",
                group.id, r.id, r.recent_active as u8
            );
        }
    }
}

/// Each count of [`SyslogCounts`] as one metric family `meniscus_syslog_*`, with one series per
/// listener labelled `listener="tcp|udp|tls|relp"`.
fn write_syslog(body: &mut String, listeners: &[Arc<SyslogStats>]) {
    if listeners.is_empty() {
        return;
    }
    let counts: Vec<(&str, SyslogCounts)> = listeners
        .iter()
        .map(|stats| (stats.listener(), stats.snapshot()))
        .collect();
    for metric in SyslogCounts::METRICS {
        let name = format!("meniscus_syslog_{}", metric.name);
        let kind = match metric.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        };
        let _ = writeln!(body, "# HELP {name} {}\n# TYPE {name} {kind}", metric.help);
        for (listener, counts) in &counts {
            let value = (metric.value)(counts);
            let _ = writeln!(body, "{name}{{listener=\"{listener}\"}} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_counts_are_one_family_per_count_with_a_series_per_listener() {
        let tcp = Arc::new(SyslogStats::new("syslog-tcp"));
        let udp = Arc::new(SyslogStats::new("syslog-udp"));
        tcp.received(true);
        tcp.connection_opened();
        let mut body = String::new();
        write_syslog(&mut body, &[tcp, udp]);
        for line in [
            "# TYPE meniscus_syslog_received_total counter",
            "meniscus_syslog_received_total{listener=\"tcp\"} 1",
            "meniscus_syslog_received_total{listener=\"udp\"} 0",
            "meniscus_syslog_parse_errors_total{listener=\"tcp\"} 1",
            "meniscus_syslog_connections_total{listener=\"tcp\"} 1",
            "# TYPE meniscus_syslog_open_connections gauge",
            "meniscus_syslog_open_connections{listener=\"tcp\"} 1",
            "meniscus_syslog_idle_closed_total{listener=\"udp\"} 0",
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "{line:?} missing from:\n{body}"
            );
        }
        let families = body.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!(families, SyslogCounts::METRICS.len());
    }

    #[test]
    fn no_syslog_listener_adds_nothing() {
        let mut body = String::new();
        write_syslog(&mut body, &[]);
        assert!(body.is_empty());
    }
}
