//! Counters of one syslog listener, and the log lines that go with them.
//!
//! Each event worth counting is one method call that bumps the counter and writes the log line,
//! so nothing is counted without being explained or logged without being counted. Lines that a
//! hostile or misconfigured sender could repeat at line rate are rate-limited: at most one per
//! [`LOG_INTERVAL`] per kind, saying how many were suppressed since the last.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Least time between two log lines of one kind.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// A listener's counters since it started. Shared by its connections; read with
/// [`SyslogStats::snapshot`].
#[derive(Debug)]
pub struct SyslogStats {
    transport: &'static str,
    received: AtomicU64,
    stored: AtomicU64,
    parse_errors: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
    oversized: AtomicU64,
    retries: AtomicU64,
    protocol_errors: AtomicU64,
    connections: AtomicU64,
    open_connections: AtomicU64,
    idle_closed: AtomicU64,
    limit_reached: AtomicU64,
    rejected_log: RateLimit,
    dropped_log: RateLimit,
    frame_log: RateLimit,
    retry_log: RateLimit,
    protocol_log: RateLimit,
    idle_log: RateLimit,
    limit_log: RateLimit,
}

/// A copy of [`SyslogStats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SyslogCounts {
    /// Messages read (valid syslog or not).
    pub received: u64,
    /// Events committed.
    pub stored: u64,
    /// Messages stored with `fields.parse_error`.
    pub parse_errors: u64,
    /// Messages refused for their tenant credentials (bad token, unknown tenant, none at all).
    pub rejected: u64,
    /// Messages lost because ingest refused them for too long (UDP, or TCP at shutdown).
    pub dropped: u64,
    /// Frames skipped for exceeding the size limit, or cut short by the end of the stream.
    pub oversized: u64,
    /// Publishes retried after ingest refused them.
    pub retries: u64,
    /// Connections closed because the peer broke the protocol (a malformed RELP frame, a
    /// failed TLS handshake or client certificate).
    pub protocol_errors: u64,
    /// Connections accepted (TCP, TLS, RELP).
    pub connections: u64,
    /// Connections open now.
    pub open_connections: u64,
    /// Connections closed because the sender sent nothing for the idle timeout.
    pub idle_closed: u64,
    /// Times the listener reached its connection limit: new senders waited in the backlog.
    pub limit_reached: u64,
}

/// Whether a Prometheus series only grows (`counter`) or goes up and down (`gauge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only grows (until the process restarts).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One of [`SyslogCounts`] as a metric: its name without prefix, its kind, what it counts.
#[derive(Debug, Clone, Copy)]
pub struct CountMetric {
    /// The name after `meniscus_syslog_`, with `_total` for counters (`received_total`).
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Reads the value from a snapshot.
    pub value: fn(&SyslogCounts) -> u64,
}

impl SyslogCounts {
    /// Every count with its metric name and help, in a fixed order: what `/metrics` exports.
    pub const METRICS: [CountMetric; 12] = [
        counter(
            "received_total",
            "syslog messages read (valid syslog or not)",
            |c| c.received,
        ),
        counter("stored_total", "syslog events committed", |c| c.stored),
        counter(
            "parse_errors_total",
            "syslog messages stored with fields.parse_error",
            |c| c.parse_errors,
        ),
        counter(
            "rejected_total",
            "syslog messages refused for their tenant credentials",
            |c| c.rejected,
        ),
        counter(
            "dropped_total",
            "syslog messages lost because ingest refused them too long",
            |c| c.dropped,
        ),
        counter(
            "oversized_total",
            "syslog frames skipped for their size or cut short",
            |c| c.oversized,
        ),
        counter(
            "retries_total",
            "syslog publishes retried after ingest refused them",
            |c| c.retries,
        ),
        counter(
            "protocol_errors_total",
            "syslog connections closed for a protocol error",
            |c| c.protocol_errors,
        ),
        counter("connections_total", "syslog connections accepted", |c| {
            c.connections
        }),
        counter(
            "idle_closed_total",
            "syslog connections closed after the idle timeout",
            |c| c.idle_closed,
        ),
        counter(
            "limit_reached_total",
            "times the syslog connection limit was reached",
            |c| c.limit_reached,
        ),
        CountMetric {
            name: "open_connections",
            kind: MetricKind::Gauge,
            help: "syslog connections open now",
            value: |c| c.open_connections,
        },
    ];
}

const fn counter(
    name: &'static str,
    help: &'static str,
    value: fn(&SyslogCounts) -> u64,
) -> CountMetric {
    CountMetric {
        name,
        kind: MetricKind::Counter,
        help,
        value,
    }
}

impl SyslogStats {
    pub(crate) fn new(transport: &'static str) -> Self {
        SyslogStats {
            transport,
            received: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            parse_errors: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            oversized: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            idle_closed: AtomicU64::new(0),
            limit_reached: AtomicU64::new(0),
            rejected_log: RateLimit::default(),
            dropped_log: RateLimit::default(),
            frame_log: RateLimit::default(),
            retry_log: RateLimit::default(),
            protocol_log: RateLimit::default(),
            idle_log: RateLimit::default(),
            limit_log: RateLimit::default(),
        }
    }

    /// The transport these counters are for: `syslog-tcp`, `syslog-udp`, `syslog-tls` or
    /// `syslog-relp`.
    pub fn transport(&self) -> &'static str {
        self.transport
    }

    /// The listener's short name, as in the `listener` label of `/metrics`: `tcp`, `udp`,
    /// `tls` or `relp`.
    pub fn listener(&self) -> &'static str {
        self.transport
            .strip_prefix("syslog-")
            .unwrap_or(self.transport)
    }

    /// The counters now.
    pub fn snapshot(&self) -> SyslogCounts {
        SyslogCounts {
            received: self.received.load(Relaxed),
            stored: self.stored.load(Relaxed),
            parse_errors: self.parse_errors.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            oversized: self.oversized.load(Relaxed),
            retries: self.retries.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
            connections: self.connections.load(Relaxed),
            open_connections: self.open_connections.load(Relaxed),
            idle_closed: self.idle_closed.load(Relaxed),
            limit_reached: self.limit_reached.load(Relaxed),
        }
    }

    pub(crate) fn received(&self, parse_error: bool) {
        self.received.fetch_add(1, Relaxed);
        if parse_error {
            self.parse_errors.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn stored(&self, n: usize) {
        self.stored.fetch_add(n as u64, Relaxed);
    }

    /// A message refused for its credentials: never stored under any tenant.
    pub(crate) fn rejected(&self, n: usize, peer: &str, reason: &str) {
        let total = self.rejected.fetch_add(n as u64, Relaxed) + n as u64;
        if let Some(suppressed) = self.rejected_log.allow() {
            tracing::warn!(
                transport = self.transport,
                %peer,
                reason,
                rejected_total = total,
                suppressed_log_lines = suppressed,
                "syslog message refused: its tenant credentials failed; it is not stored"
            );
        }
    }

    /// Messages lost because ingest kept refusing them.
    pub(crate) fn dropped(&self, n: usize, reason: &str) {
        let total = self.dropped.fetch_add(n as u64, Relaxed) + n as u64;
        if let Some(suppressed) = self.dropped_log.allow() {
            tracing::error!(
                transport = self.transport,
                dropped = n,
                dropped_total = total,
                reason,
                suppressed_log_lines = suppressed,
                "syslog messages dropped: ingest could not take them"
            );
        }
    }

    /// A frame the framer skipped.
    pub(crate) fn frame_error(&self, peer: &str, error: &dyn std::fmt::Display) {
        let total = self.oversized.fetch_add(1, Relaxed) + 1;
        if let Some(suppressed) = self.frame_log.allow() {
            tracing::warn!(
                transport = self.transport,
                %peer,
                oversized_total = total,
                suppressed_log_lines = suppressed,
                "syslog frame skipped: {error}; continuing with the next frame"
            );
        }
    }

    /// A publish refused by ingest, about to be retried.
    pub(crate) fn retry(&self, error: &dyn std::fmt::Display, backoff: Duration) {
        self.retries.fetch_add(1, Relaxed);
        if let Some(suppressed) = self.retry_log.allow() {
            tracing::warn!(
                transport = self.transport,
                error = %error,
                backoff_ms = backoff.as_millis() as u64,
                suppressed_log_lines = suppressed,
                "syslog publish refused; holding the batch and retrying (TCP stops reading meanwhile)"
            );
        }
    }

    /// A connection closed because its peer broke the protocol.
    pub(crate) fn protocol_error(&self, peer: &str, error: &dyn std::fmt::Display) {
        let total = self.protocol_errors.fetch_add(1, Relaxed) + 1;
        if let Some(suppressed) = self.protocol_log.allow() {
            tracing::warn!(
                transport = self.transport,
                %peer,
                protocol_errors_total = total,
                suppressed_log_lines = suppressed,
                "syslog connection closed: {error}"
            );
        }
    }

    /// A connection closed because its sender sent nothing for `idle`.
    pub(crate) fn idle_closed(&self, peer: &str, idle: Duration) {
        let total = self.idle_closed.fetch_add(1, Relaxed) + 1;
        if let Some(suppressed) = self.idle_log.allow() {
            tracing::info!(
                transport = self.transport,
                %peer,
                idle_secs = idle.as_secs_f64(),
                idle_closed_total = total,
                suppressed_log_lines = suppressed,
                "syslog connection closed: idle for the idle timeout"
            );
        }
    }

    /// Every connection permit is taken: new senders wait in the accept backlog.
    pub(crate) fn limit_reached(&self, max_connections: usize) {
        let total = self.limit_reached.fetch_add(1, Relaxed) + 1;
        if let Some(suppressed) = self.limit_log.allow() {
            tracing::warn!(
                transport = self.transport,
                max_connections,
                limit_reached_total = total,
                suppressed_log_lines = suppressed,
                "syslog connection limit reached; new senders wait in the backlog until one closes"
            );
        }
    }

    pub(crate) fn connection_opened(&self) {
        self.connections.fetch_add(1, Relaxed);
        self.open_connections.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Relaxed);
    }
}

/// Allows one log line per [`LOG_INTERVAL`] and counts the rest.
#[derive(Debug, Default)]
struct RateLimit {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl RateLimit {
    /// `Some(lines suppressed since the last allowed one)` when a line may be written now.
    fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        // A poisoned lock only means another thread panicked while logging: keep counting.
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(t) if now.duration_since(t) < LOG_INTERVAL => {
                self.suppressed.fetch_add(1, Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Relaxed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_the_first_line_and_counts_the_suppressed_ones() {
        let limit = RateLimit::default();
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        *limit.last.lock().unwrap() = Some(Instant::now() - LOG_INTERVAL);
        assert_eq!(limit.allow(), Some(2));
    }

    #[test]
    fn every_refusal_is_counted_even_when_its_log_line_is_suppressed() {
        let stats = SyslogStats::new("syslog-tcp");
        for _ in 0..3 {
            stats.rejected(2, "127.0.0.1:1", "bad token");
        }
        stats.received(true);
        stats.received(false);
        let counts = stats.snapshot();
        assert_eq!(counts.rejected, 6);
        assert_eq!(counts.received, 2);
        assert_eq!(counts.parse_errors, 1);
    }
}
