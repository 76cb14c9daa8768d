//! What one Raft entry carries. Field tags are a stable on-disk contract.

use prost::Message;

use crate::Result;

/// One replicated command.
#[derive(Clone, PartialEq, Message)]
pub struct Command {
    /// The command itself.
    #[prost(oneof = "CommandKind", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11")]
    pub kind: Option<CommandKind>,
}

/// The kinds of replicated command.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum CommandKind {
    /// Create a tenant with its first token.
    #[prost(message, tag = "1")]
    CreateTenant(CreateTenant),
    /// Install an admin token (at bootstrap).
    #[prost(message, tag = "2")]
    AddAdminToken(AddAdminToken),
    /// Give a tenant a new token; its previous tokens stay valid until a deadline.
    #[prost(message, tag = "3")]
    RotateToken(RotateToken),
    /// Append a batch of events to a tenant's store.
    #[prost(message, tag = "4")]
    AppendEvents(AppendEvents),
    /// Allow every replica to drop its Raft log below an index that every member has stored.
    #[prost(message, tag = "5")]
    CompactLog(CompactLog),
    /// Make a node a member: every node learns its address; the leader adds it to the Raft
    /// group as a learner, then promotes it to voter once it has caught up.
    #[prost(message, tag = "6")]
    AddMember(AddMember),
    /// Take a node out of the cluster: the leader removes it from the Raft group.
    #[prost(message, tag = "7")]
    RemoveMember(RemoveMember),
    /// Make an event shard: a Raft group of its own that carries the events of the tenants
    /// placed in it. Every replica starts it when it applies this.
    #[prost(message, tag = "8")]
    CreateShard(CreateShard),
    /// Move a shard's replicas: the nodes that should hold one from now on. The shard's leader
    /// adds the new ones (learners until caught up) and removes the others.
    #[prost(message, tag = "9")]
    PlaceShard(PlaceShard),
    /// Store (or replace) one of a tenant's processing pipelines; its version is the entry's
    /// index.
    #[prost(message, tag = "10")]
    PutPipeline(PutPipeline),
    /// Remove one of a tenant's processing pipelines.
    #[prost(message, tag = "11")]
    DeletePipeline(DeletePipeline),
}

/// See [`CommandKind::PutPipeline`].
#[derive(Clone, PartialEq, Message)]
pub struct PutPipeline {
    /// Tenant name.
    #[prost(string, tag = "1")]
    pub tenant: String,
    /// The pipeline's name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// The pipeline as JSON (`meniscus_pipeline::PipelineSpec`): checked to compile before it
    /// is proposed; storage keeps it as it is.
    #[prost(string, tag = "3")]
    pub spec_json: String,
    /// When it was stored, Unix nanoseconds.
    #[prost(int64, tag = "4")]
    pub updated_at_nanos: i64,
}

/// See [`CommandKind::DeletePipeline`].
#[derive(Clone, PartialEq, Message)]
pub struct DeletePipeline {
    /// Tenant name.
    #[prost(string, tag = "1")]
    pub tenant: String,
    /// The pipeline's name.
    #[prost(string, tag = "2")]
    pub name: String,
}

/// See [`CommandKind::PlaceShard`].
#[derive(Clone, PartialEq, Message)]
pub struct PlaceShard {
    /// The shard.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The nodes that should hold a replica.
    #[prost(uint64, repeated, tag = "2")]
    pub replicas: Vec<u64>,
}

/// See [`CommandKind::CreateShard`].
#[derive(Clone, PartialEq, Message)]
pub struct CreateShard {
    /// The shard's id, which is its Raft group's id (group 0 is the metadata group).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// The nodes that bootstrap its group.
    #[prost(uint64, repeated, tag = "2")]
    pub replicas: Vec<u64>,
    /// How many nodes hold a replica: 0 for every member (a node that joins the cluster joins
    /// the shard too), else the shard stays on `replicas`.
    #[prost(uint64, tag = "3")]
    pub factor: u64,
}

/// See [`CommandKind::CreateTenant`].
#[derive(Clone, PartialEq, Message)]
pub struct CreateTenant {
    /// Tenant name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Hash of its first token.
    #[prost(string, tag = "2")]
    pub token_hash: String,
    /// Creation time, Unix nanoseconds, chosen by the proposer so replicas agree.
    #[prost(int64, tag = "3")]
    pub created_at_nanos: i64,
    /// The shard whose group carries its events (0: the metadata group itself, as for
    /// every tenant made before shards existed).
    #[prost(uint64, tag = "4")]
    pub shard: u64,
}

/// See [`CommandKind::AddAdminToken`].
#[derive(Clone, PartialEq, Message)]
pub struct AddAdminToken {
    /// Hash of the admin token.
    #[prost(string, tag = "1")]
    pub token_hash: String,
}

/// See [`CommandKind::RotateToken`].
#[derive(Clone, PartialEq, Message)]
pub struct RotateToken {
    /// Tenant name.
    #[prost(string, tag = "1")]
    pub tenant: String,
    /// Hash of the new token.
    #[prost(string, tag = "2")]
    pub token_hash: String,
    /// Until when (Unix nanoseconds) the tenant's previous tokens stay valid; now for revocation.
    #[prost(int64, tag = "3")]
    pub previous_valid_until_nanos: i64,
}

/// See [`CommandKind::AppendEvents`].
#[derive(Clone, PartialEq, Message)]
pub struct AppendEvents {
    /// Tenant name.
    #[prost(string, tag = "1")]
    pub tenant: String,
    /// A `meniscus_event::wire::EventBatch`, kept encoded so routing does not decode events.
    #[prost(bytes = "vec", tag = "2")]
    pub batch: Vec<u8>,
}

/// See [`CommandKind::CompactLog`].
#[derive(Clone, PartialEq, Message)]
pub struct CompactLog {
    /// Entries below this index are stored on every member (the leader's view when proposed).
    #[prost(uint64, tag = "1")]
    pub below: u64,
}

/// See [`CommandKind::AddMember`].
#[derive(Clone, PartialEq, Message)]
pub struct AddMember {
    /// Its node id (non-zero, unused before).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Its node-to-node (Raft) address.
    #[prost(string, tag = "2")]
    pub raft_addr: String,
    /// The member it takes the place of (0: none). That member is removed in the same joint
    /// configuration change that makes this one a voter, so the group never runs short of a
    /// voter while the newcomer catches up.
    #[prost(uint64, tag = "3")]
    pub replaces: u64,
}

/// See [`CommandKind::RemoveMember`].
#[derive(Clone, PartialEq, Message)]
pub struct RemoveMember {
    /// Its node id.
    #[prost(uint64, tag = "1")]
    pub id: u64,
}

impl Command {
    /// Wraps a kind.
    pub fn new(kind: CommandKind) -> Self {
        Command { kind: Some(kind) }
    }

    /// Encodes for a Raft entry.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// Decodes a Raft entry's data.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(Command::decode(bytes)?)
    }
}
