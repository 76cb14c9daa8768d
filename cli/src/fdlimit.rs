//! The open-file limit (`RLIMIT_NOFILE`) against the connection limits of the HTTP API and the
//! syslog stream listeners.
//!
//! Every client connection holds a file descriptor, and so do the stores and the Raft
//! transport. Many systems start processes with a soft limit of 1024 and a much higher hard
//! limit, so `meniscus dev` raises the soft limit as far as its listeners need (at most to the
//! hard limit), and when even that is too low it lowers the connection limits to what fits, with
//! a warning, rather than run out of descriptors with a store file to open.

/// Descriptors kept for everything but client connections: store files, the Raft transport
/// (at most 256 inbound peer connections), the runtime.
pub const RESERVED: u64 = 1024;

/// What [`fit_connections`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// The soft open-file limit now in force (`None` when it cannot be read).
    pub limit: Option<u64>,
    /// Connections each syslog stream listener may serve at once.
    pub per_listener: usize,
    /// Connections the HTTP API may serve at once.
    pub http: usize,
}

/// The fewest connections the HTTP API gets, even when syslog listeners take the rest.
const MIN_HTTP: usize = 256;

/// Raises the soft `RLIMIT_NOFILE` so that `listeners` syslog stream listeners can each serve
/// `max_connections` connections and the HTTP API `http_max`, and returns what fits within the
/// limit it got: the syslog listeners first (they are what a site points its devices at), the
/// HTTP API the rest (at least [`MIN_HTTP`]).
pub fn fit_connections(listeners: usize, max_connections: usize, http_max: usize) -> Fit {
    let syslog = (listeners as u64).saturating_mul(max_connections as u64);
    let needed = RESERVED
        .saturating_add(syslog)
        .saturating_add(http_max as u64);
    let limit = match rlimit::increase_nofile_limit(needed) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, needed, "cannot read or raise the open-file limit (RLIMIT_NOFILE); keeping the connection limits");
            return Fit {
                limit: None,
                per_listener: max_connections,
                http: http_max,
            };
        }
    };
    let per_listener = per_listener(limit, listeners, max_connections);
    let taken = RESERVED.saturating_add((listeners * per_listener) as u64);
    let http = usize::try_from(limit.saturating_sub(taken))
        .unwrap_or(usize::MAX)
        .clamp(MIN_HTTP.min(http_max), http_max.max(1));
    if per_listener < max_connections || http < http_max {
        tracing::warn!(
            open_file_limit = limit,
            needed,
            syslog_asked = max_connections,
            per_listener,
            http_asked = http_max,
            http,
            "the open-file limit (RLIMIT_NOFILE, hard limit included) is too low for the \
             connection limits; serving fewer connections (raise it with ulimit -n or \
             LimitNOFILE=)"
        );
    } else {
        tracing::debug!(
            open_file_limit = limit,
            needed,
            "open-file limit fits the connection limits"
        );
    }
    Fit {
        limit: Some(limit),
        per_listener,
        http,
    }
}

/// Connections per listener that fit in `limit` descriptors beside [`RESERVED`].
fn per_listener(limit: u64, listeners: usize, max_connections: usize) -> usize {
    let spare = limit.saturating_sub(RESERVED) / listeners.max(1) as u64;
    usize::try_from(spare)
        .unwrap_or(usize::MAX)
        .clamp(1, max_connections.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_per_listener_fit_beside_the_reserve() {
        let cases = [
            // (limit, listeners, asked, expected)
            (1024 + 30_000, 1, 16_384, 16_384),
            (20_000, 1, 16_384, 16_384),
            (20_000, 2, 16_384, 9_488),
            (1024, 1, 16_384, 1),
            (0, 3, 100, 1),
            (u64::MAX, 3, 100, 100),
        ];
        for (limit, listeners, asked, expected) in cases {
            assert_eq!(
                per_listener(limit, listeners, asked),
                expected,
                "{limit} {listeners} {asked}"
            );
        }
    }

    #[test]
    fn without_stream_listeners_http_gets_what_it_asks_within_the_limit() {
        let fit = fit_connections(0, 10, 100);
        assert_eq!((fit.per_listener, fit.http), (10, 100));
    }
}
