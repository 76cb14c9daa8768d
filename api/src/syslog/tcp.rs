//! Syslog over TCP: RFC 6587 framing (octet counting or LF, per frame), one task per connection.
//! The same stream handling serves TLS connections once their handshake is done.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesOrdered, StreamExt};
use meniscus_actors::Node;
use meniscus_event::framing::Framer;
use time::OffsetDateTime;
use tokio::io::AsyncRead;
use tokio::net::TcpListener;

use super::ingest::{Batch, Ingest, Origin, Patience, Sink};
use super::listener::{self, Read, ReadBuf};
use super::{Result, Shutdown, SyslogConfig, SyslogStats};

/// At shutdown, a connection is drained until it has had nothing to read for this long.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// Batches of one connection being published at once, besides the one being read.
const MAX_PUBLISHING: usize = 3;

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
        let (listener, addr) = listener::bind(addr, "tcp").await?;
        Ok(TcpSyslog {
            listener,
            addr,
            ingest: Ingest::new(sink, config, "syslog-tcp"),
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
    /// has read. At most `max_connections` are served at once; further senders wait in the
    /// backlog.
    pub async fn run(self, shutdown: Shutdown) {
        let ingest = self.ingest.clone();
        listener::accept_loop(
            self.listener,
            self.addr,
            self.ingest,
            shutdown,
            |stream, peer, shutdown| {
                let ingest = ingest.clone();
                async move {
                    let peer = peer.to_string();
                    serve_stream(&ingest, stream, ingest.origin(&peer), shutdown).await;
                }
            },
        )
        .await;
    }
}

/// Serves one sender's octet-counted or LF-framed stream (plain TCP, or TLS once the handshake
/// is done) until it ends or `shutdown`.
pub(crate) async fn serve_stream<S: AsyncRead + Unpin>(
    ingest: &Ingest,
    stream: S,
    origin: Origin<'_>,
    shutdown: Shutdown,
) {
    Connection {
        framer: Framer::new(ingest.config.max_frame_bytes),
        ingest,
        stream,
        origin,
        shutdown,
        batch: Batch::default(),
        buf: ReadBuf::default(),
    }
    .run()
    .await
}

/// One sender's stream.
struct Connection<'a, S> {
    ingest: &'a Ingest,
    stream: S,
    origin: Origin<'a>,
    shutdown: Shutdown,
    framer: Framer,
    batch: Batch,
    buf: ReadBuf,
}

impl<S: AsyncRead + Unpin> Connection<'_, S> {
    /// Reads and frames the next batch while up to [`MAX_PUBLISHING`] earlier ones are
    /// published, so the Raft log can take several in one write. While ingest is slow this
    /// connection does not read, and TCP flow control holds the sender. Batches are proposed
    /// in the order they were read; one retried after a refusal may land after a later one. A
    /// sender quiet for the idle timeout is closed like one that hung up: a last unterminated
    /// line is kept.
    async fn run(mut self) {
        let (transport, peer) = (self.ingest.transport, self.origin.peer);
        tracing::debug!(%peer, transport, "syslog connection opened");
        let ingest = self.ingest;
        let mut publishing: FuturesOrdered<Pin<Box<dyn Future<Output = ()> + Send + '_>>> =
            FuturesOrdered::new();
        let shutdown_requested = loop {
            let read = {
                let reading = self.read_batch();
                tokio::pin!(reading);
                loop {
                    tokio::select! {
                        read = &mut reading => break read,
                        Some(()) = publishing.next(), if !publishing.is_empty() => {}
                    }
                }
            };
            let Some(read) = read else {
                break true;
            };
            let ended = matches!(read, Read::Eof | Read::Failed | Read::Idle);
            if ended {
                self.finish_stream();
            }
            if !self.batch.is_empty() {
                while publishing.len() >= MAX_PUBLISHING {
                    publishing.next().await;
                }
                let mut batch = std::mem::take(&mut self.batch);
                let mut shutdown = self.shutdown.clone();
                publishing.push_back(Box::pin(async move {
                    ingest
                        .publish(&mut batch, &mut shutdown, Patience::UntilShutdown)
                        .await;
                }));
            }
            if ended {
                break false;
            }
        };
        while publishing.next().await.is_some() {}
        if shutdown_requested {
            self.drain().await;
        }
        tracing::debug!(%peer, transport, "syslog connection closed");
    }

    /// Waits for data, then frames what is readable until the batch is full or nothing more
    /// is ready. `None` when shutdown is requested first.
    async fn read_batch(&mut self) -> Option<Read> {
        let read = tokio::select! {
            r = listener::read_or_idle(self.ingest, &mut self.stream, &mut self.buf, self.origin.peer) => {
                self.take(r)
            }
            _ = self.shutdown.requested() => return None,
        };
        Some(match read {
            Read::Data(_) => match self.read_ready().await {
                end @ (Read::Eof | Read::Failed) => end,
                _ => Read::Data(0),
            },
            other => other,
        })
    }

    /// At shutdown: publishes what the sender has already sent — until the socket stays quiet
    /// for [`DRAIN_QUIET`], or for at most the grace period.
    async fn drain(&mut self) {
        let deadline = Instant::now() + self.ingest.config.shutdown_grace;
        loop {
            let mut read = self.read_ready().await;
            if read == Read::WouldBlock {
                let peer = self.origin.peer;
                let waited =
                    tokio::time::timeout(DRAIN_QUIET, self.buf.read(&mut self.stream, peer)).await;
                read = match waited {
                    Ok(r) => self.take(r),
                    Err(_) => Read::WouldBlock, // quiet: the sender has nothing more
                };
            }
            if read == Read::Eof {
                self.finish_stream();
            }
            self.publish().await;
            if !matches!(read, Read::Data(_)) || Instant::now() > deadline {
                return;
            }
        }
    }

    /// Feeds what is already readable without waiting, until the batch is full.
    async fn read_ready(&mut self) -> Read {
        loop {
            if self.batch.is_full(&self.ingest.config) {
                return Read::Data(0);
            }
            let r = self.buf.read_now(&mut self.stream, self.origin.peer).await;
            match self.take(r) {
                Read::Data(_) => continue,
                other => return other,
            }
        }
    }

    /// Frames the bytes of a read.
    fn take(&mut self, read: Read) -> Read {
        if let Read::Data(n) = read {
            let now = OffsetDateTime::now_utc();
            let (ingest, batch, origin) = (self.ingest, &mut self.batch, self.origin);
            self.framer
                .push(&self.buf.data()[..n], |frame| match frame {
                    Ok(frame) => {
                        batch.add(ingest, frame.data, origin, now);
                    }
                    Err(e) => ingest.stats.frame_error(origin.peer, &e),
                });
        }
        read
    }

    /// The sender closed: a last line without LF is a message; a cut-short frame is reported.
    fn finish_stream(&mut self) {
        let now = OffsetDateTime::now_utc();
        let (ingest, batch, origin) = (self.ingest, &mut self.batch, self.origin);
        self.framer.finish(|frame| match frame {
            Ok(frame) => {
                batch.add(ingest, frame.data, origin, now);
            }
            Err(e) => ingest.stats.frame_error(origin.peer, &e),
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
