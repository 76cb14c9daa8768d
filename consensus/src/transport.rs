//! Node-to-node transport for Raft messages: tokio TCP, length-prefixed prost frames, one
//! outbound connection per peer that batches whatever is queued, reconnecting with backoff.
//!
//! Raft tolerates lost messages (it retransmits), so the transport never blocks the Raft thread:
//! a full peer queue or a broken connection drops messages, and they are counted. A malformed or
//! oversized inbound frame closes that connection only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Largest frame accepted or sent (snapshot chunks included).
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// Messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;
/// Messages put in one frame at most.
const MAX_BATCH: usize = 512;

/// One frame on the wire: messages from one node, each tagged with its Raft group.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Frame {
    /// The sending node.
    #[prost(uint64, tag = "1")]
    pub from: u64,
    /// The messages.
    #[prost(message, repeated, tag = "2")]
    pub envelopes: Vec<Envelope>,
}

/// One item for a Raft group: a raft-rs message, or a proposal forwarded to the leader, or the
/// leader's answer to one.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Envelope {
    /// Raft group id.
    #[prost(uint64, tag = "1")]
    pub group: u64,
    /// A raft-rs `Message`, protobuf-encoded (raft-rs's own codec); empty for forwards.
    #[prost(bytes = "vec", tag = "2")]
    pub message: Vec<u8>,
    /// A proposal a follower forwards to the leader.
    #[prost(message, optional, tag = "3")]
    pub forward: Option<Forward>,
    /// The leader's answer to a forwarded proposal.
    #[prost(message, optional, tag = "4")]
    pub forward_reply: Option<ForwardReply>,
    /// A request for a piece of a snapshot's files.
    #[prost(message, optional, tag = "5")]
    pub snapshot_pull: Option<SnapshotPull>,
    /// The answer to a [`SnapshotPull`].
    #[prost(message, optional, tag = "6")]
    pub snapshot_piece: Option<SnapshotPiece>,
    /// A follower asks the leader for its indexes' latest commits, to copy them.
    #[prost(message, optional, tag = "7")]
    pub mirror_request: Option<MirrorRequest>,
    /// The answer to a [`MirrorRequest`].
    #[prost(message, optional, tag = "8")]
    pub mirror_offer: Option<MirrorOffer>,
    /// A request for an event shard this node does not hold, to a node that does.
    #[prost(message, optional, tag = "9")]
    pub shard_request: Option<ShardRequest>,
    /// The answer to a [`ShardRequest`].
    #[prost(message, optional, tag = "10")]
    pub shard_reply: Option<ShardReply>,
}

/// A publish or search for a tenant whose shard (the envelope's group) the asking node does not
/// hold; a node that does serves it as if asked itself. What it carries is the actor layer's
/// business: this layer only matches answers to questions.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ShardRequest {
    /// Chosen by the asking node; the reply carries it back.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The request, encoded by the asking node.
    #[prost(bytes = "vec", tag = "2")]
    pub body: Vec<u8>,
}

/// The answer to a [`ShardRequest`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct ShardReply {
    /// The request's id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The answer, encoded by the serving node (empty on error).
    #[prost(bytes = "vec", tag = "2")]
    pub body: Vec<u8>,
    /// Why the request failed (empty on success).
    #[prost(string, tag = "3")]
    pub error: String,
}

/// A follower that copies the leader's tenant indexes instead of indexing itself asks for
/// the indexes that moved past what it holds.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MirrorRequest {
    /// The asking node's id for this request.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Tenant name -> the Raft index the follower's copy has committed.
    #[prost(btree_map = "string, uint64", tag = "2")]
    pub held: std::collections::BTreeMap<String, u64>,
}

/// The leader's answer to a [`MirrorRequest`]: a checkpoint whose files the follower pulls
/// with [`SnapshotPull`]s, or why there is none.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MirrorOffer {
    /// The [`MirrorRequest`]'s id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The checkpoint's manifest (the actors' format; opaque here).
    #[prost(bytes = "vec", tag = "2")]
    pub manifest: Vec<u8>,
    /// Empty on success.
    #[prost(string, tag = "3")]
    pub error: String,
}

/// Asks the node that built a snapshot for `len` bytes at `offset` of one of its files.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotPull {
    /// The asking node's id for this request.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The snapshot (its Raft index).
    #[prost(uint64, tag = "2")]
    pub snapshot: u64,
    /// The file, relative to the snapshot's directory.
    #[prost(string, tag = "3")]
    pub path: String,
    /// Where to start.
    #[prost(uint64, tag = "4")]
    pub offset: u64,
    /// Most bytes wanted.
    #[prost(uint32, tag = "5")]
    pub len: u32,
}

/// Bytes of a snapshot file, or why they cannot be had.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotPiece {
    /// The [`SnapshotPull`]'s id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The bytes (fewer than asked at the end of the file).
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
    /// Empty on success.
    #[prost(string, tag = "3")]
    pub error: String,
}

/// A proposal forwarded from a follower to the leader.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Forward {
    /// The follower's id for this request.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The proposal.
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
}

/// The leader's answer to a [`Forward`]: the entry's index once it is committed, or why not.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ForwardReply {
    /// The follower's request id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The committed entry's index (0 on error).
    #[prost(uint64, tag = "2")]
    pub index: u64,
    /// Why the proposal was not committed; empty on success.
    #[prost(string, tag = "3")]
    pub error: String,
}

/// What arrived for a group.
#[derive(Debug)]
pub enum Inbound {
    /// Node `from` wants a piece of a snapshot this node built.
    SnapshotPull {
        /// Raft group id.
        group: u64,
        /// The asking node.
        from: u64,
        /// What it wants.
        pull: SnapshotPull,
    },
    /// A piece of a snapshot this node asked for.
    SnapshotPiece {
        /// Raft group id.
        group: u64,
        /// The piece.
        piece: SnapshotPiece,
    },
    /// Node `from` wants copies of this node's tenant indexes.
    MirrorRequest {
        /// Raft group id.
        group: u64,
        /// The asking node.
        from: u64,
        /// What it holds.
        request: MirrorRequest,
    },
    /// Node `from` asks this node to serve a request for shard `group`.
    ShardRequest {
        /// The shard's Raft group id.
        group: u64,
        /// The asking node.
        from: u64,
        /// The request.
        request: ShardRequest,
    },
    /// The answer to a shard request this node made.
    ShardReply(ShardReply),
    /// The answer to a mirror request this node made.
    MirrorOffer {
        /// Raft group id.
        group: u64,
        /// The offer.
        offer: MirrorOffer,
    },
    /// A raft-rs message.
    Raft {
        /// Raft group id.
        group: u64,
        /// The message.
        message: Message,
    },
    /// A proposal forwarded by node `from`.
    Forward {
        /// Raft group id.
        group: u64,
        /// The forwarding node.
        from: u64,
        /// The proposal.
        forward: Forward,
    },
    /// The leader's answer to one of our forwarded proposals.
    ForwardReply {
        /// Raft group id.
        group: u64,
        /// The answer.
        reply: ForwardReply,
    },
}

/// Counters for what the transport could not deliver.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Messages dropped because a peer's queue was full or its connection broke.
    pub dropped: AtomicU64,
    /// Inbound connections closed for a bad or oversized frame.
    pub bad_frames: AtomicU64,
}

/// Sends Raft messages to peers and receives theirs.
pub struct Transport {
    node_id: u64,
    peers: Mutex<HashMap<u64, Peer>>,
    stats: Arc<TransportStats>,
    /// The listener and its connections; aborted by [`Transport::shutdown`].
    accept_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Where peer tasks run: peers may be added from the Raft thread, outside the runtime.
    runtime: tokio::runtime::Handle,
}

/// One peer's outbound queue and connection state.
struct Peer {
    queue: mpsc::Sender<Envelope>,
    addr: SocketAddr,
    connected: Arc<AtomicBool>,
}

/// What [`Transport::peers`] reports of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's node id.
    pub id: u64,
    /// Its Raft address.
    pub addr: SocketAddr,
    /// Whether our connection to it is up (it is opened when there is something to send).
    pub connected: bool,
}

impl Transport {
    /// Listens on `addr` and delivers inbound messages to `inbound`. Returns the transport and
    /// the bound address (`addr` may use port 0).
    pub async fn bind(
        node_id: u64,
        addr: SocketAddr,
        inbound: mpsc::Sender<Inbound>,
    ) -> std::io::Result<(Arc<Transport>, SocketAddr)> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let stats = Arc::new(TransportStats::default());
        let accept_task = tokio::spawn(accept_loop(listener, inbound, stats.clone()));
        let transport = Arc::new(Transport {
            node_id,
            peers: Mutex::new(HashMap::new()),
            stats,
            accept_task: Mutex::new(Some(accept_task)),
            runtime: tokio::runtime::Handle::current(),
        });
        Ok((transport, local))
    }

    /// Adds (or re-points) a peer. Messages to unknown peers are dropped. Callable from any
    /// thread.
    pub fn set_peer(&self, id: u64, addr: SocketAddr) {
        let (queue, receiver) = mpsc::channel(PEER_QUEUE);
        let connected = Arc::new(AtomicBool::new(false));
        self.runtime.spawn(peer_loop(
            PeerLink {
                from: self.node_id,
                to: id,
                addr,
                connected: connected.clone(),
            },
            receiver,
            self.stats.clone(),
        ));
        // Replacing the sender ends the previous peer task when its queue drains.
        self.peers.lock().expect("peers lock poisoned").insert(
            id,
            Peer {
                queue,
                addr,
                connected,
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
            .map(|(id, p)| PeerStatus {
                id: *id,
                addr: p.addr,
                connected: p.connected.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_unstable_by_key(|p| p.id);
        out
    }

    /// Removes a peer.
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
    connected: Arc<AtomicBool>,
}

async fn peer_loop(
    link: PeerLink,
    mut queue: mpsc::Receiver<Envelope>,
    stats: Arc<TransportStats>,
) {
    let PeerLink {
        from,
        to,
        addr,
        connected,
    } = link;
    let mut backoff = Duration::from_millis(50);
    let mut stream: Option<TcpStream> = None;
    while let Some(first) = queue.recv().await {
        let mut envelopes = vec![first];
        while envelopes.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(e) => envelopes.push(e),
                Err(_) => break,
            }
        }
        let count = envelopes.len() as u64;
        let frame = Frame { from, envelopes }.encode_to_vec();
        if stream.is_none() {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(s);
                    connected.store(true, Ordering::Relaxed);
                    backoff = Duration::from_millis(50);
                }
                Err(e) => {
                    tracing::debug!(peer = to, %addr, error = %e, "cannot reach peer; retrying");
                    stats.dropped.fetch_add(count, Ordering::Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let written = async {
            s.write_all(&(frame.len() as u32).to_be_bytes()).await?;
            s.write_all(&frame).await
        }
        .await;
        if let Err(e) = written {
            tracing::debug!(peer = to, error = %e, "peer connection broke; reconnecting");
            stats.dropped.fetch_add(count, Ordering::Relaxed);
            stream = None;
            connected.store(false, Ordering::Relaxed);
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    inbound: mpsc::Sender<Inbound>,
    stats: Arc<TransportStats>,
) {
    // Connections live in this set so that aborting the accept task closes them too.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                connections.spawn(read_connection(
                    stream,
                    peer,
                    inbound.clone(),
                    stats.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "raft transport accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
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
}

async fn read_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    inbound: mpsc::Sender<Inbound>,
    stats: Arc<TransportStats>,
) {
    let mut buf = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).await.is_err() {
            return; // closed
        }
        let len = u32::from_be_bytes(len) as usize;
        let result = async {
            if len > MAX_FRAME_BYTES {
                return Err(FrameError::TooLarge(len));
            }
            buf.resize(len, 0);
            if stream.read_exact(&mut buf).await.is_err() {
                return Ok(None);
            }
            let frame = Frame::decode(buf.as_slice())?;
            let mut messages = Vec::with_capacity(frame.envelopes.len());
            for envelope in frame.envelopes {
                let group = envelope.group;
                if let Some(pull) = envelope.snapshot_pull {
                    messages.push(Inbound::SnapshotPull {
                        group,
                        from: frame.from,
                        pull,
                    });
                    continue;
                }
                if let Some(piece) = envelope.snapshot_piece {
                    messages.push(Inbound::SnapshotPiece { group, piece });
                    continue;
                }
                if let Some(request) = envelope.mirror_request {
                    messages.push(Inbound::MirrorRequest {
                        group,
                        from: frame.from,
                        request,
                    });
                    continue;
                }
                if let Some(offer) = envelope.mirror_offer {
                    messages.push(Inbound::MirrorOffer { group, offer });
                    continue;
                }
                if let Some(request) = envelope.shard_request {
                    messages.push(Inbound::ShardRequest {
                        group,
                        from: frame.from,
                        request,
                    });
                    continue;
                }
                if let Some(reply) = envelope.shard_reply {
                    messages.push(Inbound::ShardReply(reply));
                    continue;
                }
                messages.push(match (envelope.forward, envelope.forward_reply) {
                    (Some(forward), _) => Inbound::Forward {
                        group,
                        from: frame.from,
                        forward,
                    },
                    (None, Some(reply)) => Inbound::ForwardReply { group, reply },
                    (None, None) => Inbound::Raft {
                        group,
                        message: Message::parse_from_bytes(&envelope.message)?,
                    },
                });
            }
            Ok(Some(messages))
        }
        .await;
        match result {
            Ok(Some(messages)) => {
                for message in messages {
                    // Raft retransmits: a full inbound queue drops rather than stalls the socket.
                    if inbound.try_send(message).is_err() {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(None) => return,
            Err(e) => {
                stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, error = %e, "closing raft connection on a bad frame");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::MessageType;

    fn heartbeat(from: u64, to: u64, term: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.from = from;
        m.to = to;
        m.term = term;
        m
    }

    /// The next raft message: (group, term).
    async fn recv(rx: &mut mpsc::Receiver<Inbound>) -> (u64, u64) {
        let inbound = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a message arrives")
            .expect("the channel is open");
        match inbound {
            Inbound::Raft { group, message } => (group, message.term),
            other => panic!("expected a raft message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn messages_reach_their_peer_with_their_group() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (a_tx, _a_rx) = mpsc::channel(100);
        let (b_tx, mut b_rx) = mpsc::channel(100);
        let (a, _) = Transport::bind(1, any, a_tx).await.unwrap();
        let (_b, b_addr) = Transport::bind(2, any, b_tx).await.unwrap();
        a.set_peer(2, b_addr);
        a.send(7, vec![heartbeat(1, 2, 3), heartbeat(1, 2, 4)]);
        a.send(0, vec![heartbeat(1, 9, 1)]); // unknown peer: dropped, counted
        let first = recv(&mut b_rx).await;
        let second = recv(&mut b_rx).await;
        assert_eq!(first, (7, 3));
        assert_eq!(second, (7, 4));
        assert_eq!(a.stats().dropped.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_bad_frame_closes_only_its_connection() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (b_tx, mut b_rx) = mpsc::channel(100);
        let (b, b_addr) = Transport::bind(2, any, b_tx).await.unwrap();
        for garbage in [
            vec![0xff, 0xff, 0xff, 0xff],
            vec![0, 0, 0, 3, 0xff, 0xff, 0xff],
        ] {
            let mut raw = TcpStream::connect(b_addr).await.unwrap();
            raw.write_all(&garbage).await.unwrap();
            let mut byte = [0u8; 1];
            let closed = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut byte)).await;
            assert!(
                matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
                "the bad connection is closed"
            );
        }
        assert_eq!(b.stats().bad_frames.load(Ordering::Relaxed), 2);
        let (a_tx, _a_rx) = mpsc::channel(100);
        let (a, _) = Transport::bind(1, any, a_tx).await.unwrap();
        a.set_peer(2, b_addr);
        a.send(0, vec![heartbeat(1, 2, 5)]);
        assert_eq!(recv(&mut b_rx).await.1, 5, "other senders are still served");
    }

    #[tokio::test]
    async fn a_restarted_peer_is_reached_again() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (a_tx, _a_rx) = mpsc::channel(100);
        let (a, _) = Transport::bind(1, any, a_tx).await.unwrap();
        // Reserve an address, then free it: the peer is down.
        let addr = TcpListener::bind(any).await.unwrap().local_addr().unwrap();
        a.set_peer(2, addr);
        a.send(0, vec![heartbeat(1, 2, 1)]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (b_tx, mut b_rx) = mpsc::channel(100);
        let (_b, _) = Transport::bind(2, addr, b_tx).await.unwrap();
        let mut got = None;
        for term in 2..100 {
            a.send(0, vec![heartbeat(1, 2, term)]);
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), b_rx.recv()).await
            {
                got = Some(m);
                break;
            }
        }
        assert!(got.is_some(), "messages flow once the peer is up");
    }
}
