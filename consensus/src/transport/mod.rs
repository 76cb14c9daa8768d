//! Node-to-node transport for Raft messages: length-prefixed prost frames over mutually
//! authenticated TLS (or plain TCP with `--insecure`), one outbound connection per peer that
//! batches whatever is queued, reconnecting with backoff.
//!
//! Raft tolerates lost messages (it retransmits), so the transport never blocks the Raft thread:
//! a full peer queue or a broken connection drops messages, and they are counted. What arrives
//! is refused as cheaply as possible (see `inbound`): a connection without a certificate from
//! the cluster's CA never has a frame decoded, a frame that claims another node than its
//! certificate names closes its connection, and only members may talk at all.

mod frames;
mod inbound;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::Message;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;

pub use frames::{
    Envelope, Forward, ForwardReply, Frame, Inbound, MirrorOffer, MirrorRequest, ShardReply,
    ShardRequest, SnapshotPiece, SnapshotPull,
};
pub use inbound::{
    HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_ADDRESS, READ_TIMEOUT,
};

use crate::peer_tls::PeerTls;

/// Largest frame accepted or sent (snapshot chunks included).
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// Messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;
/// Messages put in one frame at most.
const MAX_BATCH: usize = 512;
/// How long dialling a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A link with nothing to send sends an empty frame this often, so every node hears from
/// every other (followers send Raft little but to the leader) and idle links stay open.
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// A peer heard from within this long is reachable.
pub const REACHABLE_WITHIN: Duration = Duration::from_secs(3);

/// How peer links are secured.
#[derive(Debug, Clone)]
pub enum PeerSecurity {
    /// Mutually authenticated TLS with certificates from the cluster's CA; a peer is the node
    /// its certificate names.
    Tls(PeerTls),
    /// Plain TCP, and the node id a frame claims is believed (`--insecure`: tests, demos).
    Insecure,
}

/// Counters for what the transport could not deliver or would not take.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Messages dropped because a peer's queue was full or its connection broke.
    pub dropped: AtomicU64,
    /// Inbound connections closed for a bad or oversized frame, or a frame that claimed to
    /// come from another node than the connection's certificate names.
    pub bad_frames: AtomicU64,
    /// Inbound connections refused before any frame was read: no valid certificate, a node
    /// that is not a member, too many connections, or a handshake that took too long.
    pub refused: AtomicU64,
}

/// Sends Raft messages to peers and receives theirs.
pub struct Transport {
    node_id: u64,
    /// The address peer links leave from: the listen IP when it is a specific one, so a peer
    /// (or a proxy in between) sees this node come from the address it listens on.
    source_ip: Option<std::net::IpAddr>,
    /// The members this node talks to, by id; no other node's frames are taken.
    peers: Peers,
    stats: Arc<TransportStats>,
    security: PeerSecurity,
    /// The listener and its connections; aborted by [`Transport::shutdown`].
    accept_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Where peer tasks run: peers may be added from the Raft thread, outside the runtime.
    runtime: tokio::runtime::Handle,
}

/// The peers, shared with the tasks that serve inbound connections.
type Peers = Arc<Mutex<HashMap<u64, Peer>>>;

/// One peer's outbound queue and connection state.
struct Peer {
    queue: mpsc::Sender<Envelope>,
    addr: SocketAddr,
    connected: Arc<AtomicBool>,
    /// When a frame from it last arrived, in milliseconds since [`epoch`] (0: never).
    heard: Arc<AtomicU64>,
}

/// The instant peer times are counted from.
fn epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

/// Milliseconds since [`epoch`], at least 1.
fn now_millis() -> u64 {
    (epoch().elapsed().as_millis() as u64).max(1)
}

/// What [`Transport::peers`] reports of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's node id.
    pub id: u64,
    /// Its Raft address.
    pub addr: SocketAddr,
    /// Whether our connection to it is up.
    pub connected: bool,
    /// How long ago a frame from it arrived (`None`: never since this node started).
    pub last_heard: Option<Duration>,
}

impl PeerStatus {
    /// Whether it was heard from within [`REACHABLE_WITHIN`] (every link carries at least a
    /// ping a second).
    pub fn reachable(&self) -> bool {
        self.last_heard.is_some_and(|ago| ago < REACHABLE_WITHIN)
    }
}

impl Transport {
    /// Listens on `addr` and delivers inbound messages to `inbound`. Returns the transport and
    /// the bound address (`addr` may use port 0).
    pub async fn bind(
        node_id: u64,
        addr: SocketAddr,
        security: PeerSecurity,
        inbound: mpsc::Sender<Inbound>,
    ) -> std::io::Result<(Arc<Transport>, SocketAddr)> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let stats = Arc::new(TransportStats::default());
        let peers: Peers = Arc::default();
        let listening = inbound::Listening {
            inbound,
            stats: stats.clone(),
            peers: peers.clone(),
            security: security.clone(),
        };
        let accept_task = tokio::spawn(inbound::accept_loop(listener, Arc::new(listening)));
        let transport = Arc::new(Transport {
            node_id,
            source_ip: Some(local.ip()).filter(|ip| !ip.is_unspecified()),
            peers,
            stats,
            security,
            accept_task: Mutex::new(Some(accept_task)),
            runtime: tokio::runtime::Handle::current(),
        });
        Ok((transport, local))
    }

    /// Adds (or re-points) a peer: messages to it are sent, and its frames are taken. Messages
    /// to unknown peers are dropped. Callable from any thread.
    pub fn set_peer(&self, id: u64, addr: SocketAddr) {
        let (queue, receiver) = mpsc::channel(PEER_QUEUE);
        let connected = Arc::new(AtomicBool::new(false));
        self.runtime.spawn(peer_loop(
            PeerLink {
                from: self.node_id,
                to: id,
                addr,
                source_ip: self.source_ip.filter(|ip| ip.is_ipv4() == addr.is_ipv4()),
                connected: connected.clone(),
                tls: match &self.security {
                    PeerSecurity::Tls(tls) => Some(tls.clone()),
                    PeerSecurity::Insecure => None,
                },
            },
            receiver,
            self.stats.clone(),
        ));
        // Replacing the sender ends the previous peer task when its queue drains.
        let mut peers = self.peers.lock().expect("peers lock poisoned");
        let heard = peers.get(&id).map(|p| p.heard.clone()).unwrap_or_default();
        peers.insert(
            id,
            Peer {
                queue,
                addr,
                connected,
                heard,
            },
        );
    }

    /// Closes the listener and every connection, and drops queued messages: the address can be
    /// bound again (a node restarting in the same process).
    pub fn shutdown(&self) {
        if let Some(task) = self
            .accept_task
            .lock()
            .expect("accept lock poisoned")
            .take()
        {
            task.abort();
        }
        // Dropping a peer's queue ends its task.
        self.peers.lock().expect("peers lock poisoned").clear();
    }

    /// Every known peer, by id.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let peers = self.peers.lock().expect("peers lock poisoned");
        let mut out: Vec<PeerStatus> = peers
            .iter()
            .map(|(id, p)| {
                let heard = p.heard.load(Ordering::Relaxed);
                PeerStatus {
                    id: *id,
                    addr: p.addr,
                    connected: p.connected.load(Ordering::Relaxed),
                    last_heard: (heard > 0)
                        .then(|| Duration::from_millis(now_millis().saturating_sub(heard))),
                }
            })
            .collect();
        out.sort_unstable_by_key(|p| p.id);
        out
    }

    /// Removes a peer: nothing is sent to it, and its frames are refused from now on.
    pub fn remove_peer(&self, id: u64) {
        self.peers.lock().expect("peers lock poisoned").remove(&id);
    }

    /// Queues messages for their recipients without blocking (callable from the Raft thread).
    pub fn send(&self, group: u64, messages: Vec<Message>) {
        let peers = self.peers.lock().expect("peers lock poisoned");
        for message in messages {
            let Some(peer) = peers.get(&message.to) else {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let envelope = match message.write_to_bytes() {
                Ok(bytes) => Envelope {
                    group,
                    message: bytes,
                    ..Default::default()
                },
                Err(_) => continue,
            };
            if peer.queue.try_send(envelope).is_err() {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends a forwarded proposal or its answer to node `to`. Returns false when it could not
    /// be queued (unknown peer, full queue): the caller fails the request rather than waiting.
    pub fn send_envelope(&self, to: u64, envelope: Envelope) -> bool {
        let peers = self.peers.lock().expect("peers lock poisoned");
        let queued = peers
            .get(&to)
            .is_some_and(|p| p.queue.try_send(envelope).is_ok());
        if !queued {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    /// What could not be delivered.
    pub fn stats(&self) -> &TransportStats {
        &self.stats
    }
}

/// Who a peer task sends for and to.
struct PeerLink {
    from: u64,
    to: u64,
    addr: SocketAddr,
    source_ip: Option<std::net::IpAddr>,
    connected: Arc<AtomicBool>,
    tls: Option<PeerTls>,
}

/// A connection to a peer, plain or TLS.
type Outbound = Box<dyn AsyncWrite + Unpin + Send>;

impl PeerLink {
    /// Dials the peer; with TLS, its certificate must name the node this link is for.
    async fn connect(&self) -> std::io::Result<Outbound> {
        let timed_out = |what: &str| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{what} took longer than allowed"),
            )
        };
        let socket = match self.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(ip) = self.source_ip {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(self.addr))
            .await
            .map_err(|_| timed_out("connecting"))??;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let handshake = tls.connector().connect(PeerTls::server_name(self.to), tcp);
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| timed_out("the TLS handshake"))??;
        Ok(Box::new(stream))
    }
}

async fn peer_loop(
    link: PeerLink,
    mut queue: mpsc::Receiver<Envelope>,
    stats: Arc<TransportStats>,
) {
    let mut backoff = Duration::from_millis(50);
    let mut stream: Option<Outbound> = None;
    let mut buf = Vec::new();
    loop {
        let mut envelopes = match tokio::time::timeout(PING_INTERVAL, queue.recv()).await {
            Ok(Some(first)) => vec![first],
            Ok(None) => break,    // the peer was removed or re-pointed
            Err(_) => Vec::new(), // nothing to send: a ping
        };
        while envelopes.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(e) => envelopes.push(e),
                Err(_) => break,
            }
        }
        let count = envelopes.len() as u64;
        let frame = Frame {
            from: link.from,
            envelopes,
        };
        // The length prefix and the frame go in one write (one TLS record where they fit).
        buf.clear();
        buf.extend_from_slice(&(frame.encoded_len() as u32).to_be_bytes());
        frame.encode(&mut buf).expect("a Vec grows as needed");
        if stream.is_none() {
            match link.connect().await {
                Ok(s) => {
                    stream = Some(s);
                    link.connected.store(true, Ordering::Relaxed);
                    backoff = Duration::from_millis(50);
                }
                Err(e) => {
                    tracing::debug!(peer = link.to, addr = %link.addr, error = %e, "cannot reach peer; retrying");
                    stats.dropped.fetch_add(count, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let written = async {
            s.write_all(&buf).await?;
            s.flush().await
        }
        .await;
        if let Err(e) = written {
            tracing::debug!(peer = link.to, error = %e, "peer connection broke; reconnecting");
            stats.dropped.fetch_add(count, Ordering::Relaxed);
            stream = None;
            link.connected.store(false, Ordering::Relaxed);
        }
        if buf.capacity() > 1 << 20 {
            buf = Vec::new(); // a snapshot piece passed: give its memory back
        }
    }
}

#[cfg(test)]
mod tests;
