//! What peers send each other: length-prefixed prost frames of envelopes, each for one Raft
//! group, and what an envelope becomes once received.

use raft::prelude::Message;

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
