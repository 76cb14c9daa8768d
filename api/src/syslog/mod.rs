//! Syslog listeners: UDP, TCP (RFC 6587 framing), TLS (RFC 5425) and RELP, feeding a [`Node`].
//!
//! Every message is parsed by [`meniscus_event::syslog::parse`] (a line that is not valid syslog
//! is stored with `fields.parse_error`, never dropped), its tenant is resolved, and the events
//! are published in batches that are acknowledged only once committed.
//!
//! **Tenant.** A listener may be bound to a tenant (`meniscus dev` binds `default`). A TLS
//! listener that authenticates clients binds each connection to the tenant its client
//! certificate names instead. A message may name its own with a structured-data element
//! `meniscus` or `meniscus@<PEN>` carrying `token` (and optionally `tenant`); the token must
//! authenticate to that tenant. The element is removed before storage, and a `token="..."` that
//! a malformed line carries in its text is redacted, so tokens are never stored or searchable.
//! A message whose credentials fail is not stored under any tenant: it is counted in
//! [`SyslogStats`] and logged (rate-limited).
//!
//! **Back-pressure.** A stream connection (TCP, TLS, RELP) publishes what it has read before it
//! reads more, and retries a refused publish with backoff, so while ingest is slow the
//! connection stops reading and the sender's queue holds the data. RELP answers `rsp 200` for a
//! message only once it is committed. UDP cannot push back: its receive loop hands batches
//! to a publisher task through a short queue, and what does not fit, or cannot be published
//! within a short time, is counted as dropped.
//!
//! **Idle and many connections.** A stream connection whose sender sends nothing for
//! [`SyslogConfig::idle_timeout`] is closed and counted; at most
//! [`SyslogConfig::max_connections`] are served at once, the rest wait in the accept backlog.
//! An idle connection holds no read buffer, so thousands of them cost little memory.
//!
//! **Shutdown.** [`Shutdown`] stops accepting and reading; batches already read are published
//! before `run` returns.
//!
//! # Layout
//! - `mod.rs`: [`SyslogConfig`], [`Shutdown`], [`SyslogError`].
//! - `stats`: [`SyslogStats`]: counters, and the rate-limited log lines that go with them.
//! - `ingest`: frames to events, tenant resolution, batches, publishing with retry.
//! - `listener`: what stream listeners share: binding, the accept loop, reads of what is ready.
//! - `tcp`: [`TcpSyslog`], and the octet-counted/LF stream that TLS reuses; `udp`: [`UdpSyslog`].
//! - `tls`: [`TlsSyslog`], [`TlsSettings`]: RFC 5425, optional client-certificate tenants.
//! - `relp`: [`RelpSyslog`]; `relp_frame`: the RELP frame parser.
//!
//! ```no_run
//! # async fn example(node: std::sync::Arc<meniscus_actors::Node>) -> Result<(), meniscus_api::syslog::SyslogError> {
//! use meniscus_api::syslog::{Shutdown, SyslogConfig, TcpSyslog};
//!
//! let (stop, shutdown) = Shutdown::channel();
//! let tcp = TcpSyslog::bind("127.0.0.1:0".parse().unwrap(), node, SyslogConfig::bound_to("default")).await?;
//! println!("syslog-tcp listening on {}", tcp.local_addr());
//! let running = tokio::spawn(tcp.run(shutdown));
//! // ... later:
//! stop.send(true).ok();
//! running.await.ok();
//! # Ok(()) }
//! ```

mod ingest;
mod listener;
mod relp;
mod relp_frame;
mod stats;
mod tcp;
mod tls;
mod udp;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use meniscus_event::syslog::Format;
use tokio::sync::watch;

pub use relp::RelpSyslog;
pub use stats::{CountMetric, MetricKind, SyslogCounts, SyslogStats};
pub use tcp::TcpSyslog;
pub use tls::{TlsSettings, TlsSyslog};
pub use udp::UdpSyslog;

#[cfg(doc)]
use meniscus_actors::Node;

/// Default of [`SyslogConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
/// Default of [`SyslogConfig::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Settings of one syslog listener.
#[derive(Debug, Clone)]
pub struct SyslogConfig {
    /// The tenant of messages that carry no `meniscus` credentials; `None` refuses them.
    pub tenant: Option<String>,
    /// The syslog dialect to expect.
    pub format: Format,
    /// Largest message accepted, in bytes; a larger frame is skipped with a log line.
    pub max_frame_bytes: usize,
    /// Most events published in one batch. A stream connection waits for each batch to be
    /// committed before reading on, so larger batches carry more per commit round trip.
    pub max_batch_events: usize,
    /// Most message bytes published in one batch.
    pub max_batch_bytes: usize,
    /// TCP, TLS, RELP: most connections served at once; further senders wait in the accept
    /// backlog. Each takes a file descriptor: see `RLIMIT_NOFILE`.
    pub max_connections: usize,
    /// TCP, TLS, RELP: a connection whose sender sends nothing for this long is closed (and
    /// counted in [`SyslogCounts::idle_closed`]); `None` keeps idle connections open.
    pub idle_timeout: Option<Duration>,
    /// How long in-flight batches may keep retrying once shutdown is requested.
    pub shutdown_grace: Duration,
    /// UDP: how long a batch may keep retrying a refused publish before it is dropped.
    pub udp_publish_patience: Duration,
}

impl SyslogConfig {
    /// Defaults, with messages lacking credentials going to `tenant`.
    pub fn bound_to(tenant: &str) -> Self {
        SyslogConfig {
            tenant: Some(tenant.to_owned()),
            ..SyslogConfig::default()
        }
    }
}

impl Default for SyslogConfig {
    fn default() -> Self {
        SyslogConfig {
            tenant: None,
            format: Format::Auto,
            max_frame_bytes: 64 * 1024,
            max_batch_events: 16_384,
            max_batch_bytes: 4 * 1024 * 1024,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            shutdown_grace: Duration::from_secs(10),
            udp_publish_patience: Duration::from_millis(500),
        }
    }
}

/// Errors starting a listener.
#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    /// The address could not be bound.
    #[error("cannot bind syslog {transport} to {addr}: {source}")]
    Bind {
        /// `tcp`, `udp`, `tls` or `relp`.
        transport: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The bound socket's address could not be read.
    #[error("cannot read the address of the syslog {transport} socket: {source}")]
    LocalAddr {
        /// `tcp`, `udp`, `tls` or `relp`.
        transport: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file of the TLS settings could not be read or holds nothing usable.
    #[error("cannot load the {what} from {path}: {reason}")]
    Pem {
        /// `server certificate`, `server private key` or `client CA certificate`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The client CA certificates cannot verify clients.
    #[error("cannot verify client certificates with the CA in {path}: {reason}")]
    ClientCa {
        /// The CA file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the certificates or key (for example a key that does not match).
    #[error("invalid TLS certificate or key: {0}")]
    Tls(#[from] rustls::Error),
}

/// Result alias for the syslog listeners.
pub type Result<T, E = SyslogError> = std::result::Result<T, E>;

/// Tells listeners and their connections to stop: cheap to clone, one per task.
///
/// Shutdown is requested when `true` is sent on the channel, or when its sender is dropped.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A sender to request shutdown with (`send(true)`), and the signal to hand to listeners.
    pub fn channel() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// Whether shutdown has been requested.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once shutdown is requested.
    pub async fn requested(&mut self) {
        // An error means the sender is gone: nobody can ask any more, so stop too.
        let _ = self.0.wait_for(|&stop| stop).await;
    }
}

impl From<watch::Receiver<bool>> for Shutdown {
    fn from(rx: watch::Receiver<bool>) -> Self {
        Shutdown(rx)
    }
}

#[cfg(test)]
mod tests;
