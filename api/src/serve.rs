//! Serving the API: one hyper connection per task, with a cap on connections and a deadline for
//! request headers.
//!
//! A client may hold a connection only while it is busy: one that has not sent a complete
//! request header within [`ServeLimits::header_timeout`] of connecting, or of its last answer,
//! is closed (slowloris, and idle keep-alive connections). At most
//! [`ServeLimits::max_connections`] connections are served at once, so clients never take the
//! file descriptors the Raft log and the indexes need. At the cap, the connection idle the
//! longest (no request in flight) is closed to make room, as nginx drains idle keep-alive
//! connections: thousands of idle clients cannot lock out a busy one. Only when every
//! connection has a request in flight do new clients wait in the listen backlog.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

/// How many clients the API serves at once, and how long they may dawdle.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Connections served at once; past this the longest-idle one is closed, or, when all are
    /// busy, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long a connection may take to send a complete request header, counted from when it
    /// connected or was last answered.
    pub header_timeout: Duration,
    /// How long in-flight requests may take to finish after shutdown is asked for.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The default [`ServeLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 16 * 1024;

/// One open connection, as the eviction sees it.
struct Connection {
    /// Requests being served on it now.
    in_flight: AtomicUsize,
    /// When it last started or finished a request (or connected), in ms since the server began.
    last_active: AtomicU64,
    /// Told to close.
    close: Notify,
}

/// Every open connection, by a number of its own.
struct Connections {
    started: Instant,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next: AtomicU64,
}

impl Connections {
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn add(&self) -> (u64, Arc<Connection>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(self.now()),
            close: Notify::new(),
        });
        self.open
            .lock()
            .expect("connections lock poisoned")
            .insert(id, connection.clone());
        (id, connection)
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .expect("connections lock poisoned")
            .remove(&id);
    }

    /// Tells the connection idle the longest to close (none when every one is busy).
    fn evict_idlest(&self) {
        let open = self.open.lock().expect("connections lock poisoned");
        let idlest = open
            .values()
            .filter(|c| c.in_flight.load(Ordering::Relaxed) == 0)
            .min_by_key(|c| c.last_active.load(Ordering::Relaxed));
        if let Some(connection) = idlest {
            connection.close.notify_one();
        }
    }
}

/// Serves `router` on `listener` (HTTPS with `tls`) until `shutdown` resolves, then gives
/// in-flight requests [`ServeLimits::shutdown_grace`] to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = Arc::new(Connections {
        started: Instant::now(),
        open: Mutex::default(),
        next: AtomicU64::new(0),
    });
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // At the cap: make room by closing the idlest connection, or, when every one
                // is busy, wait for one to end (the rest wait in the backlog meanwhile).
                connections.evict_idlest();
                tokio::select! {
                    permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                    () = &mut shutdown => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let task = ConnectionTask {
            stream,
            remote,
            builder: builder.clone(),
            router: router.clone(),
            connections: connections.clone(),
            tls: tls.clone(),
            header_timeout: limits.header_timeout,
        };
        tokio::spawn(task.run(permit, graceful.watcher()));
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = limits.shutdown_grace.as_secs(),
            "HTTP requests still running after the shutdown grace period were cut off"
        );
    }
    Ok(())
}

/// Everything one connection's task needs.
struct ConnectionTask {
    stream: TcpStream,
    remote: SocketAddr,
    builder: Builder<TokioExecutor>,
    router: Router,
    connections: Arc<Connections>,
    tls: Option<TlsAcceptor>,
    header_timeout: Duration,
}

impl ConnectionTask {
    /// Serves the connection until it ends or is told to close, holding `permit` meanwhile.
    async fn run(self, permit: OwnedSemaphorePermit, watcher: Watcher) {
        let (connections, remote) = (self.connections.clone(), self.remote);
        let (id, state) = connections.add();
        tokio::select! {
            () = self.serve(state.clone(), watcher) => {}
            () = state.close.notified() => {
                tracing::debug!(%remote, "closed an idle HTTP connection to make room");
            }
        }
        connections.remove(id);
        drop(permit);
    }

    async fn serve(self, state: Arc<Connection>, watcher: Watcher) {
        // Telling HTTP/1 from HTTP/2 waits for the first bytes with no deadline of its own: a
        // connection that sends nothing in time is closed here.
        let mut first = [0u8; 1];
        match tokio::time::timeout(self.header_timeout, self.stream.peek(&mut first)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return, // silent, closed, or broken
        }
        let (router, remote, connections) =
            (self.router.clone(), self.remote, self.connections.clone());
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(remote));
            let busy = Busy::start(state.clone(), connections.clone());
            let answer = router.clone().oneshot(request.map(Body::new));
            async move {
                let answer = answer.await;
                drop(busy);
                answer
            }
        });
        let stream = self.stream;
        let result = match &self.tls {
            None => {
                let connection = self
                    .builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service);
                watcher.watch(connection.into_owned()).await
            }
            Some(acceptor) => {
                let handshake =
                    tokio::time::timeout(self.header_timeout, acceptor.accept(stream)).await;
                let Ok(Ok(stream)) = handshake else {
                    tracing::debug!(%remote, "HTTPS handshake failed or took too long");
                    return;
                };
                let connection = self
                    .builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service);
                watcher.watch(connection.into_owned()).await
            }
        };
        if let Err(e) = result {
            tracing::trace!(%remote, error = %e, "HTTP connection ended");
        }
    }
}

/// Marks a connection busy while one of its requests is served.
struct Busy {
    state: Arc<Connection>,
    connections: Arc<Connections>,
}

impl Busy {
    fn start(state: Arc<Connection>, connections: Arc<Connections>) -> Busy {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        state
            .last_active
            .store(connections.now(), Ordering::Relaxed);
        Busy { state, connections }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.state
            .last_active
            .store(self.connections.now(), Ordering::Relaxed);
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
