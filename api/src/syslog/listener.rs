//! What the stream listeners (TCP, TLS, RELP) share: binding, the accept loop with its
//! connection limit and shutdown, and reads that take only what is ready.

use std::future::{poll_fn, Future};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, Semaphore};

use super::ingest::Ingest;
use super::{Result, Shutdown, SyslogError};

/// Most bytes read from a socket at a time.
pub(crate) const READ_BUFFER: usize = 64 * 1024;
/// Wait after a failed `accept` (for example when out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections the kernel may hold ready for `accept` (it caps this at `net.core.somaxconn`).
/// A burst of senders reconnecting at once fits in it instead of waiting for SYN retries.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener on `addr` for `transport` (`tcp`, `tls`, `relp`); returns it with the
/// address it got.
pub(crate) async fn bind(
    addr: SocketAddr,
    transport: &'static str,
) -> Result<(TcpListener, SocketAddr)> {
    let bind_error = |source| SyslogError::Bind {
        transport,
        addr,
        source,
    };
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(bind_error)?;
    // As `TcpListener::bind` does: a restart may bind while old connections are in TIME_WAIT.
    socket.set_reuseaddr(true).map_err(bind_error)?;
    socket.bind(addr).map_err(bind_error)?;
    let listener = socket.listen(LISTEN_BACKLOG).map_err(bind_error)?;
    let local = listener
        .local_addr()
        .map_err(|source| SyslogError::LocalAddr { transport, source })?;
    Ok((listener, local))
}

/// Accepts connections until `shutdown`, each served by `serve(stream, peer, shutdown)` on a
/// task of its own, then waits for every connection to finish. A connection permit is taken
/// *before* `accept`, so at most `max_connections` are served and further senders wait in the
/// backlog.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    addr: SocketAddr,
    ingest: Arc<Ingest>,
    mut shutdown: Shutdown,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr, Shutdown) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let transport = ingest.transport;
    let max_connections = ingest.config.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max_connections));
    // Each connection holds a clone of `done`; `recv` returns once all are dropped.
    let (done, mut all_done) = mpsc::channel::<()>(1);
    loop {
        if permits.available_permits() == 0 {
            ingest.stats.limit_reached(max_connections);
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
            _ = shutdown.requested() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, %addr, transport, "syslog accept failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = shutdown.requested() => break,
        };
        let connection = serve(stream, peer, shutdown.clone());
        let stats = ingest.stats.clone();
        let done = done.clone();
        tokio::spawn(async move {
            stats.connection_opened();
            connection.await;
            stats.connection_closed();
            drop(permit);
            drop(done);
        });
    }
    drop(listener);
    drop(done);
    let _ = all_done.recv().await;
    tracing::info!(%addr, transport, counts = ?ingest.stats.snapshot(), "syslog listener stopped");
}

/// What a read brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// This many bytes.
    Data(usize),
    /// The sender closed its side.
    Eof,
    /// Nothing is ready now.
    WouldBlock,
    /// The connection failed (already logged).
    Failed,
    /// The sender sent nothing for the idle timeout (already counted and logged).
    Idle,
}

/// A connection's read buffer. Reads fill its spare capacity, so it is never zeroed, and it
/// gives its memory back before waiting for a quiet sender: an idle connection holds a few
/// dozen bytes instead of [`READ_BUFFER`].
#[derive(Debug, Default)]
pub(crate) struct ReadBuf(Vec<u8>);

impl ReadBuf {
    /// The bytes of the last read.
    pub fn data(&self) -> &[u8] {
        &self.0
    }

    /// Reads once, waiting for data. What is ready is read at once into the full buffer;
    /// otherwise the buffer is freed while waiting.
    pub async fn read<S: AsyncRead + Unpin>(&mut self, stream: &mut S, peer: &str) -> Read {
        match self.read_now(stream, peer).await {
            Read::WouldBlock => {}
            read => return read,
        }
        self.0 = Vec::new();
        classify(stream.read_buf(&mut self.0).await, peer)
    }

    /// Reads what is ready without waiting: one poll of a read, which tokio's and rustls's
    /// streams allow to be abandoned without losing data.
    pub async fn read_now<S: AsyncRead + Unpin>(&mut self, stream: &mut S, peer: &str) -> Read {
        self.0.clear();
        self.0.reserve(READ_BUFFER);
        let mut reading = std::pin::pin!(stream.read_buf(&mut self.0));
        let polled = poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await;
        match polled {
            Poll::Ready(r) => classify(r, peer),
            Poll::Pending => Read::WouldBlock,
        }
    }
}

/// Reads once into `buf`, waiting for data at most the listener's idle timeout; a connection
/// that stays quiet that long is counted in [`SyslogStats`](super::SyslogStats) and gets
/// [`Read::Idle`].
pub(crate) async fn read_or_idle<S: AsyncRead + Unpin>(
    ingest: &Ingest,
    stream: &mut S,
    buf: &mut ReadBuf,
    peer: &str,
) -> Read {
    let Some(idle) = ingest.config.idle_timeout else {
        return buf.read(stream, peer).await;
    };
    match tokio::time::timeout(idle, buf.read(stream, peer)).await {
        Ok(read) => read,
        Err(_) => {
            ingest.stats.idle_closed(peer, idle);
            Read::Idle
        }
    }
}

fn classify(read: std::io::Result<usize>, peer: &str) -> Read {
    match read {
        Ok(0) => Read::Eof,
        Ok(n) => Read::Data(n),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Read::WouldBlock,
        Err(e) if e.kind() == ErrorKind::Interrupted => Read::WouldBlock,
        Err(e) => {
            tracing::info!(%peer, error = %e, "syslog read failed; closing the connection");
            Read::Failed
        }
    }
}
