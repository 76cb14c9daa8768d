//! The peer listener: who may connect, how long they may take, and how a frame is read.
//!
//! Everything here assumes a stranger on the other end until proven otherwise:
//! - at most [`MAX_CONNECTIONS`] connections, [`MAX_CONNECTIONS_PER_ADDRESS`] from one IP;
//!   more are closed at once (the file descriptors stay free for the Raft log and indexes);
//! - with TLS, the handshake must finish within [`HANDSHAKE_TIMEOUT`] with a certificate from
//!   the cluster's CA that names a member, or no byte after it is read;
//! - a frame's length is checked before anything is allocated for it, and its buffer grows only
//!   as bytes arrive; each read must make progress within [`READ_TIMEOUT`], and a connection
//!   idle for [`IDLE_TIMEOUT`] is closed (its peer dials again when it has something to send);
//! - a frame, or a Raft message inside it, that claims another sender than the certificate
//!   names closes the connection, as does a frame from a node that is not (or no longer) a
//!   member.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::Message;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::frames::{Envelope, Frame, Inbound};
use super::{PeerSecurity, Peers, TransportStats, MAX_FRAME_BYTES};
use crate::peer_tls;

/// Most inbound peer connections at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Most inbound peer connections from one IP address at once (nodes that share a host, or a
/// proxy, share one).
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 32;
/// How long a connecting peer may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one read inside a frame may wait for bytes.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection may stay silent between frames before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Bytes read at a time into a frame's buffer.
const READ_CHUNK: usize = 64 * 1024;

/// What the accept loop needs.
pub(super) struct Listening {
    pub(super) inbound: mpsc::Sender<Inbound>,
    pub(super) stats: Arc<TransportStats>,
    pub(super) peers: Peers,
    pub(super) security: PeerSecurity,
}

impl Listening {
    fn is_member(&self, id: u64) -> bool {
        self.peers
            .lock()
            .expect("peers lock poisoned")
            .contains_key(&id)
    }

    /// Records that member `id` was heard from; false when it is not a member.
    fn heard_from(&self, id: u64) -> bool {
        match self.peers.lock().expect("peers lock poisoned").get(&id) {
            Some(peer) => {
                peer.heard.store(super::now_millis(), Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    fn refuse(&self, peer: SocketAddr, why: &str) {
        let refused = self.stats.refused.fetch_add(1, Ordering::Relaxed) + 1;
        // A stranger must not flood the log: the first ten, then every hundredth.
        if refused <= 10 || refused.is_multiple_of(100) {
            tracing::warn!(%peer, refused, "refused a peer connection: {why}");
        }
    }
}

/// Open connections per IP address; an entry goes when its count reaches zero.
type PerAddress = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Counts one connection from an address while it lives.
struct Slot {
    ip: IpAddr,
    counts: PerAddress,
}

impl Slot {
    fn take(counts: &PerAddress, ip: IpAddr) -> Option<Slot> {
        let mut map = counts.lock().expect("connection counts poisoned");
        let count = map.entry(ip).or_insert(0);
        if *count >= MAX_CONNECTIONS_PER_ADDRESS {
            return None;
        }
        *count += 1;
        Some(Slot {
            ip,
            counts: counts.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().expect("connection counts poisoned");
        if let Some(count) = map.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

pub(super) async fn accept_loop(listener: TcpListener, listening: Arc<Listening>) {
    // Connections live in this set so that aborting the accept task closes them too.
    let mut connections = tokio::task::JoinSet::new();
    let per_address: PerAddress = Arc::default();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: wait rather than spin.
                tracing::warn!(error = %e, "raft transport accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if connections.len() >= MAX_CONNECTIONS {
            listening.refuse(peer, "too many peer connections");
            continue;
        }
        let Some(slot) = Slot::take(&per_address, peer.ip()) else {
            listening.refuse(peer, "too many peer connections from its address");
            continue;
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve(stream, peer, slot, listening.clone()));
    }
}

/// Authenticates a connection, then reads its frames until it closes or misbehaves.
async fn serve(stream: TcpStream, peer: SocketAddr, _slot: Slot, listening: Arc<Listening>) {
    match &listening.security {
        PeerSecurity::Insecure => read_frames(stream, peer, None, &listening).await,
        PeerSecurity::Tls(tls) => {
            let stream = match tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                tls.acceptor().accept(stream),
            )
            .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return listening.refuse(peer, &format!("TLS handshake: {e}")),
                Err(_) => return listening.refuse(peer, "TLS handshake took too long"),
            };
            let named = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| peer_tls::node_id_of(leaf));
            let id = match named {
                Some(Ok(id)) => id,
                Some(Err(e)) => return listening.refuse(peer, &e.to_string()),
                None => return listening.refuse(peer, "no client certificate"),
            };
            if !listening.is_member(id) {
                return listening.refuse(
                    peer,
                    &format!("its certificate names node {id}, which is not a member"),
                );
            }
            read_frames(stream, peer, Some(id), &listening).await
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_BYTES} byte limit")]
    TooLarge(usize),
    #[error("undecodable frame: {0}")]
    Frame(#[from] prost::DecodeError),
    #[error("undecodable raft message: {0}")]
    Message(#[from] protobuf::ProtobufError),
    #[error("a frame claims to come from node {claimed}, but the connection's certificate names node {named}")]
    Impostor { claimed: u64, named: u64 },
    #[error("a raft message claims to come from node {claimed} in a frame from node {from}")]
    ForgedMessage { claimed: u64, from: u64 },
    #[error("node {0} is not a member")]
    NotMember(u64),
}

/// Reads frames from an authenticated connection (`named`: the node its certificate names)
/// or, with `--insecure`, from anyone.
async fn read_frames<S: AsyncRead + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    named: Option<u64>,
    listening: &Listening,
) {
    let mut buf = Vec::new();
    loop {
        let mut len = [0u8; 4];
        match tokio::time::timeout(IDLE_TIMEOUT, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return, // closed
            Err(_) => {
                tracing::debug!(%peer, "closing an idle peer connection");
                return;
            }
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME_BYTES {
            return bad_frame(listening, peer, &FrameError::TooLarge(len));
        }
        if !read_body(&mut stream, len, &mut buf).await {
            return; // closed or stalled half way
        }
        match decode(&buf, named, listening) {
            Ok(messages) => {
                for message in messages {
                    // Raft retransmits: a full inbound queue drops rather than stalls the socket.
                    if listening.inbound.try_send(message).is_err() {
                        listening.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(e) => return bad_frame(listening, peer, &e),
        }
        if buf.capacity() > 1 << 20 {
            buf = Vec::new(); // a snapshot piece passed: give its memory back
        }
    }
}

fn bad_frame(listening: &Listening, peer: SocketAddr, error: &FrameError) {
    listening.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(%peer, %error, "closing a raft connection on a bad frame");
}

/// Reads `len` bytes into `buf`, growing it only as they arrive. False when the connection
/// closed or a read made no progress within [`READ_TIMEOUT`].
async fn read_body<S: AsyncRead + Unpin>(stream: &mut S, len: usize, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    while buf.len() < len {
        let start = buf.len();
        buf.resize(start + (len - start).min(READ_CHUNK), 0);
        match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buf[start..])).await {
            Ok(Ok(n)) if n > 0 => buf.truncate(start + n),
            _ => return false,
        }
    }
    true
}

/// What a frame carries, once its sender is known to be who it says.
fn decode(
    bytes: &[u8],
    named: Option<u64>,
    listening: &Listening,
) -> Result<Vec<Inbound>, FrameError> {
    let frame = Frame::decode(bytes)?;
    let from = frame.from;
    if let Some(named) = named.filter(|named| *named != from) {
        return Err(FrameError::Impostor {
            claimed: from,
            named,
        });
    }
    if !listening.heard_from(from) {
        return Err(FrameError::NotMember(from));
    }
    frame
        .envelopes
        .into_iter()
        .map(|envelope| inbound_of(envelope, from))
        .collect()
}

/// What one envelope from node `from` is.
fn inbound_of(envelope: Envelope, from: u64) -> Result<Inbound, FrameError> {
    let group = envelope.group;
    if let Some(pull) = envelope.snapshot_pull {
        return Ok(Inbound::SnapshotPull { group, from, pull });
    }
    if let Some(piece) = envelope.snapshot_piece {
        return Ok(Inbound::SnapshotPiece { group, piece });
    }
    if let Some(request) = envelope.mirror_request {
        return Ok(Inbound::MirrorRequest {
            group,
            from,
            request,
        });
    }
    if let Some(offer) = envelope.mirror_offer {
        return Ok(Inbound::MirrorOffer { group, offer });
    }
    if let Some(request) = envelope.shard_request {
        return Ok(Inbound::ShardRequest {
            group,
            from,
            request,
        });
    }
    if let Some(reply) = envelope.shard_reply {
        return Ok(Inbound::ShardReply(reply));
    }
    Ok(match (envelope.forward, envelope.forward_reply) {
        (Some(forward), _) => Inbound::Forward {
            group,
            from,
            forward,
        },
        (None, Some(reply)) => Inbound::ForwardReply { group, reply },
        (None, None) => {
            let message = Message::parse_from_bytes(&envelope.message)?;
            if message.from != from {
                return Err(FrameError::ForgedMessage {
                    claimed: message.from,
                    from,
                });
            }
            Inbound::Raft { group, message }
        }
    })
}
