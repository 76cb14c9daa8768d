//! Syslog over TCP: RFC 6587 framing (octet counting or LF, per frame), one task per connection.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meniscus_actors::Node;
use meniscus_event::framing::Framer;
use time::OffsetDateTime;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

use super::ingest::{Batch, Ingest, Patience, Sink};
use super::{Result, Shutdown, SyslogConfig, SyslogError, SyslogStats};

/// Bytes read from a socket at a time.
const READ_BUFFER: usize = 64 * 1024;
/// Wait after a failed `accept` (for example when out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At shutdown, a connection is drained until it has had nothing to read for this long.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// A bound syslog TCP listener. [`TcpSyslog::run`] serves it.
pub struct TcpSyslog {
    listener: TcpListener,
    addr: SocketAddr,
    ingest: Arc<Ingest>,
}

impl TcpSyslog {
    /// Binds `addr` (port 0 picks a free port; see [`TcpSyslog::local_addr`]).
    pub async fn bind(addr: SocketAddr, node: Arc<Node>, config: SyslogConfig) -> Result<Self> {
        Self::bind_sink(addr, node, config).await
    }

    /// Binds `addr` for events that go to `sink`.
    pub(crate) async fn bind_sink(
        addr: SocketAddr,
        sink: Arc<dyn Sink>,
        config: SyslogConfig,
    ) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SyslogError::Bind {
                transport: "tcp",
                addr,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SyslogError::LocalAddr {
                transport: "tcp",
                source,
            })?;
        let ingest = Arc::new(Ingest {
            node: sink,
            config,
            stats: Arc::new(SyslogStats::new("syslog-tcp")),
            transport: "syslog-tcp",
        });
        Ok(TcpSyslog {
            listener,
            addr,
            ingest,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<SyslogStats> {
        self.ingest.stats.clone()
    }

    /// Accepts connections until `shutdown`, then waits for every connection to publish what it
    /// has read. A connection permit is taken *before* `accept`, so at most
    /// `max_connections` are served and further senders wait in the backlog.
    pub async fn run(self, mut shutdown: Shutdown) {
        let permits = Arc::new(Semaphore::new(self.ingest.config.max_connections.max(1)));
        // Each connection holds a clone of `done`; `recv` returns once all are dropped.
        let (done, mut all_done) = mpsc::channel::<()>(1);
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break, // never closed
                },
                _ = shutdown.requested() => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, addr = %self.addr, "syslog-tcp accept failed; retrying");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
                _ = shutdown.requested() => break,
            };
            let ingest = self.ingest.clone();
            let shutdown = shutdown.clone();
            let done = done.clone();
            tokio::spawn(async move {
                ingest.stats.connection_opened();
                Connection::new(&ingest, stream, peer.to_string(), shutdown)
                    .run()
                    .await;
                ingest.stats.connection_closed();
                drop(permit);
                drop(done);
            });
        }
        drop(self.listener);
        drop(done);
        let _ = all_done.recv().await;
        tracing::info!(addr = %self.addr, counts = ?self.ingest.stats.snapshot(), "syslog-tcp stopped");
    }
}

/// One sender's stream.
struct Connection<'a> {
    ingest: &'a Ingest,
    stream: TcpStream,
    peer: String,
    shutdown: Shutdown,
    framer: Framer,
    batch: Batch,
    buf: Vec<u8>,
}

/// What a read brought.
enum Read {
    Data,
    Eof,
    WouldBlock,
    Failed,
}

impl<'a> Connection<'a> {
    fn new(ingest: &'a Ingest, stream: TcpStream, peer: String, shutdown: Shutdown) -> Self {
        Connection {
            framer: Framer::new(ingest.config.max_frame_bytes),
            ingest,
            stream,
            peer,
            shutdown,
            batch: Batch::default(),
            buf: vec![0; READ_BUFFER],
        }
    }

    /// Reads, frames, and publishes each batch before reading further: while ingest is slow
    /// this connection does not read, and TCP flow control holds the sender.
    async fn run(mut self) {
        tracing::debug!(peer = %self.peer, "syslog-tcp connection opened");
        let shutdown_requested = loop {
            let read = tokio::select! {
                r = self.stream.read(&mut self.buf) => self.take(r),
                _ = self.shutdown.requested() => break true,
            };
            let ended = match read {
                Read::Data => matches!(self.read_ready(), Read::Eof | Read::Failed),
                Read::WouldBlock => false,
                Read::Eof | Read::Failed => true,
            };
            if ended {
                self.finish_stream();
            }
            self.publish().await;
            if ended {
                break false;
            }
        };
        if shutdown_requested {
            self.drain().await;
        }
        tracing::debug!(peer = %self.peer, "syslog-tcp connection closed");
    }

    /// At shutdown: publishes what the sender has already sent — until the socket stays quiet
    /// for [`DRAIN_QUIET`], or for at most the grace period.
    async fn drain(&mut self) {
        let deadline = Instant::now() + self.ingest.config.shutdown_grace;
        loop {
            let read = self.read_ready();
            if matches!(read, Read::Eof) {
                self.finish_stream();
            }
            self.publish().await;
            let more = match read {
                Read::Data => true,
                Read::WouldBlock => tokio::time::timeout(DRAIN_QUIET, self.stream.readable())
                    .await
                    .is_ok_and(|r| r.is_ok()),
                Read::Eof | Read::Failed => false,
            };
            if !more || Instant::now() > deadline {
                return;
            }
        }
    }

    /// Feeds what is already readable without waiting, until the batch is full.
    fn read_ready(&mut self) -> Read {
        loop {
            if self.batch.is_full(&self.ingest.config) {
                return Read::Data;
            }
            let r = self.stream.try_read(&mut self.buf);
            match self.take(r) {
                Read::Data => continue,
                other => return other,
            }
        }
    }

    /// Frames the bytes of a read.
    fn take(&mut self, read: std::io::Result<usize>) -> Read {
        match read {
            Ok(0) => Read::Eof,
            Ok(n) => {
                let now = OffsetDateTime::now_utc();
                let (ingest, batch, peer) = (self.ingest, &mut self.batch, &self.peer);
                self.framer.push(&self.buf[..n], |frame| match frame {
                    Ok(frame) => batch.add(ingest, frame.data, peer, now),
                    Err(e) => ingest.stats.frame_error(peer, &e),
                });
                Read::Data
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Read::WouldBlock,
            Err(e) if e.kind() == ErrorKind::Interrupted => Read::WouldBlock,
            Err(e) => {
                tracing::info!(peer = %self.peer, error = %e, "syslog-tcp read failed; closing the connection");
                Read::Failed
            }
        }
    }

    /// The sender closed: a last line without LF is a message; a cut-short frame is reported.
    fn finish_stream(&mut self) {
        let now = OffsetDateTime::now_utc();
        let (ingest, batch, peer) = (self.ingest, &mut self.batch, &self.peer);
        self.framer.finish(|frame| match frame {
            Ok(frame) => batch.add(ingest, frame.data, peer, now),
            Err(e) => ingest.stats.frame_error(peer, &e),
        });
    }

    async fn publish(&mut self) {
        if !self.batch.is_empty() {
            self.ingest
                .publish(&mut self.batch, &mut self.shutdown, Patience::UntilShutdown)
                .await;
        }
    }
}
