//! What the stream listeners (TCP, TLS, RELP) share: binding, the accept loop with its
//! connection limit and shutdown, and reads that take only what is ready.

use std::future::{poll_fn, Future};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

use super::ingest::Ingest;
use super::{Result, Shutdown, SyslogError};

/// Bytes read from a socket at a time.
pub(crate) const READ_BUFFER: usize = 64 * 1024;
/// Wait after a failed `accept` (for example when out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds a TCP listener on `addr` for `transport` (`tcp`, `tls`, `relp`); returns it with the
/// address it got.
pub(crate) async fn bind(
    addr: SocketAddr,
    transport: &'static str,
) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| SyslogError::Bind {
            transport,
            addr,
            source,
        })?;
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
    let permits = Arc::new(Semaphore::new(ingest.config.max_connections.max(1)));
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
}

/// Reads once, waiting for data.
pub(crate) async fn read<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8], peer: &str) -> Read {
    classify(stream.read(buf).await, peer)
}

/// Reads what is ready without waiting: one poll of a read, which tokio's and rustls's streams
/// allow to be abandoned without losing data.
pub(crate) async fn read_now<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    peer: &str,
) -> Read {
    let mut reading = std::pin::pin!(stream.read(buf));
    let polled = poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await;
    match polled {
        Poll::Ready(r) => classify(r, peer),
        Poll::Pending => Read::WouldBlock,
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
