//! The metadata state machine: tenants and token hashes, kept in sled and changed only by applying
//! committed Raft entries. Each apply writes its change and the applied index in one sled
//! transaction, so replaying an entry after a crash is a no-op.

use prost::Message as _;
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use crate::command::{Command, CommandKind};
use crate::{tokens, Error, Result};

const APPLIED_KEY: &[u8] = b"applied_index";
const COMPACT_ALLOWED_KEY: &[u8] = b"compact_allowed_below";
/// Shard records live in the state tree under this prefix and the shard id (big-endian).
const SHARD_PREFIX: &[u8] = b"shard/";
/// Pipeline records live in the state tree under this prefix, the tenant, `/` and the name.
const PIPELINE_PREFIX: &str = "pipeline/";
/// The index of the last entry that changed any tenant's pipelines.
const PIPELINES_CHANGED_KEY: &[u8] = b"pipelines_changed";

/// Who a bearer token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The cluster administrator.
    Admin,
    /// A tenant, by name.
    Tenant(String),
}

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// The tenant's name.
    pub name: String,
    /// Creation time, Unix nanoseconds.
    pub created_at_nanos: i64,
    /// The shard whose group carries its events (0: the metadata group).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shard: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// An event shard (see [`crate::CreateShard`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    /// Its id, which is its Raft group's id.
    pub id: u64,
    /// The nodes that should hold a replica now (with `factor` 0: the ones it was made on).
    pub replicas: Vec<u64>,
    /// How many nodes hold a replica: 0 for every member, else just `replicas`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub factor: u64,
    /// The nodes that bootstrapped its group (its first voters).
    #[serde(default)]
    pub founders: Vec<u64>,
}

impl ShardRecord {
    /// Whether node `id` should hold a replica (every member does when `factor` is 0).
    pub fn is_on(&self, id: u64) -> bool {
        self.factor == 0 || self.replicas.contains(&id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenRecord {
    /// `None` for the admin.
    tenant: Option<String>,
    /// Unix nanoseconds after which the token is refused; `None` while it is current.
    expires_at_nanos: Option<i64>,
}

/// What applying one command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The change was made.
    Applied,
    /// The entry was applied before (replay after restart).
    AlreadyApplied,
    /// `CreateTenant` for a name that exists.
    TenantExists,
    /// `DeletePipeline` for a pipeline that does not exist.
    NoSuchPipeline,
    /// A command names a tenant that does not exist.
    UnknownTenant,
    /// Not a metadata command: the caller routes it (event batches go to the tenant's indexer).
    NotMetadata,
    /// Events of a tenant whose events another group carries (a node that had not yet learnt
    /// the tenant's shard proposed them here): refused, so none are stored where no search
    /// looks.
    PlacedElsewhere,
}

/// One of a tenant's processing pipelines as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineRecord {
    /// The tenant.
    pub tenant: String,
    /// The pipeline's name.
    pub name: String,
    /// Its version: the metadata Raft index that stored it.
    pub version: u64,
    /// When it was stored, Unix nanoseconds.
    pub updated_at_nanos: i64,
    /// The pipeline as JSON (`meniscus_pipeline::PipelineSpec`).
    pub spec_json: String,
}

/// A node added to (or removed from) the cluster after it was bootstrapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Its node id.
    pub id: u64,
    /// Its Raft address.
    pub raft_addr: String,
    /// Whether it was removed.
    pub removed: bool,
    /// The member it replaces, if it joined as a replacement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<u64>,
}

/// The metadata store.
#[derive(Clone)]
pub struct Metadata {
    tenants: sled::Tree,
    tokens: sled::Tree,
    state: sled::Tree,
    members: sled::Tree,
    /// The group this store is for: 0 for the metadata group, else an event shard's id, whose
    /// store learns its tenants from their first events (see [`Metadata::open_shard`]).
    group: u64,
}

impl Metadata {
    /// Opens (or creates) the metadata trees in `db`.
    pub fn open(db: &sled::Db) -> Result<Self> {
        Ok(Metadata {
            tenants: db.open_tree("meta-tenants")?,
            tokens: db.open_tree("meta-tokens")?,
            state: db.open_tree("meta-state")?,
            members: db.open_tree("meta-members")?,
            group: 0,
        })
    }

    /// Opens the store of an event shard's group. Tenants and tokens are the metadata group's;
    /// a shard records a tenant when its first events are applied (the node that proposed them
    /// checked the tenant against the metadata group), so its snapshots and log compaction
    /// know every tenant it holds events of.
    pub fn open_shard(db: &sled::Db, shard: u64) -> Result<Self> {
        Ok(Metadata {
            group: shard,
            ..Metadata::open(db)?
        })
    }

    /// The tenants whose events this store's group carries: those placed in the shard, or in
    /// the metadata group (shard 0).
    pub fn tenants_here(&self) -> Result<Vec<TenantRecord>> {
        let mut tenants = self.tenants()?;
        tenants.retain(|t| t.shard == self.group);
        Ok(tenants)
    }

    /// The index of the last entry applied (0 when none).
    pub fn applied_index(&self) -> Result<u64> {
        read_u64(self.state.get(APPLIED_KEY)?)
    }

    /// The index below which the cluster allows replicas to compact their Raft log: every
    /// member had stored everything below it when the leader proposed it (0 when never said).
    pub fn compact_allowed(&self) -> Result<u64> {
        read_u64(self.state.get(COMPACT_ALLOWED_KEY)?)
    }

    /// Records that the entry at `index`, which changes no metadata (a Raft configuration
    /// change, a leader's empty entry), is applied: a snapshot at that index then holds the
    /// metadata, and a restart does not hand it back.
    pub fn mark_applied(&self, index: u64) -> Result<()> {
        // Entries are applied by one thread, in order (as in `apply`): no other writer races.
        if index > self.applied_index()? {
            self.state.insert(APPLIED_KEY, &index.to_be_bytes())?;
        }
        Ok(())
    }

    /// Applies the committed entry at `index`. Entries at or below the applied index are skipped.
    pub fn apply(&self, index: u64, command: &Command) -> Result<ApplyOutcome> {
        // sled holds a process-wide lock during a transaction, so any scan must happen before it.
        // Reading here is safe: entries are applied by one thread, in order.
        let rotated = match &command.kind {
            Some(CommandKind::RotateToken(c)) => {
                self.tokens_valid_past(&c.tenant, c.previous_valid_until_nanos)?
            }
            _ => Vec::new(),
        };
        let result = (&self.tenants, &self.tokens, &self.state, &self.members).transaction(
            |(tenants, tokens, state, members)| {
                let applied = read_u64(state.get(APPLIED_KEY)?)
                    .map_err(ConflictableTransactionError::Abort)?;
                if index <= applied {
                    return Ok(ApplyOutcome::AlreadyApplied);
                }
                state.insert(APPLIED_KEY, &index.to_be_bytes())?;
                let outcome = match &command.kind {
                    Some(CommandKind::CreateTenant(c)) => {
                        if tenants.get(c.name.as_bytes())?.is_some() {
                            ApplyOutcome::TenantExists
                        } else {
                            let record = TenantRecord {
                                name: c.name.clone(),
                                created_at_nanos: c.created_at_nanos,
                                shard: c.shard,
                            };
                            tenants.insert(c.name.as_bytes(), to_json(&record))?;
                            let token = TokenRecord {
                                tenant: Some(c.name.clone()),
                                expires_at_nanos: None,
                            };
                            tokens.insert(c.token_hash.as_bytes(), to_json(&token))?;
                            ApplyOutcome::Applied
                        }
                    }
                    Some(CommandKind::AddAdminToken(c)) => {
                        let token = TokenRecord {
                            tenant: None,
                            expires_at_nanos: None,
                        };
                        tokens.insert(c.token_hash.as_bytes(), to_json(&token))?;
                        ApplyOutcome::Applied
                    }
                    Some(CommandKind::RotateToken(c)) => {
                        if tenants.get(c.tenant.as_bytes())?.is_none() {
                            ApplyOutcome::UnknownTenant
                        } else {
                            for (hash, record) in &rotated {
                                let expired = TokenRecord {
                                    expires_at_nanos: Some(c.previous_valid_until_nanos),
                                    ..record.clone()
                                };
                                tokens.insert(hash.clone(), to_json(&expired))?;
                            }
                            let token = TokenRecord {
                                tenant: Some(c.tenant.clone()),
                                expires_at_nanos: None,
                            };
                            tokens.insert(c.token_hash.as_bytes(), to_json(&token))?;
                            ApplyOutcome::Applied
                        }
                    }
                    Some(CommandKind::AppendEvents(c)) => {
                        let placed = match tenants.get(c.tenant.as_bytes())? {
                            Some(value) => Some(
                                from_json::<TenantRecord>(&value)
                                    .map_err(ConflictableTransactionError::Abort)?
                                    .shard,
                            ),
                            None => None,
                        };
                        if placed == Some(self.group) {
                            ApplyOutcome::NotMetadata
                        } else if placed.is_some() {
                            ApplyOutcome::PlacedElsewhere
                        } else if self.group != 0 {
                            let record = TenantRecord {
                                name: c.tenant.clone(),
                                created_at_nanos: 0,
                                shard: self.group,
                            };
                            tenants.insert(c.tenant.as_bytes(), to_json(&record))?;
                            ApplyOutcome::NotMetadata
                        } else {
                            ApplyOutcome::UnknownTenant
                        }
                    }
                    Some(CommandKind::CreateShard(c)) => {
                        let record = ShardRecord {
                            id: c.id,
                            replicas: c.replicas.clone(),
                            factor: c.factor,
                            founders: c.replicas.clone(),
                        };
                        state.insert(shard_key(c.id), to_json(&record))?;
                        ApplyOutcome::Applied
                    }
                    Some(CommandKind::PlaceShard(c)) => match state.get(shard_key(c.id))? {
                        Some(value) => {
                            let mut record: ShardRecord =
                                from_json(&value).map_err(ConflictableTransactionError::Abort)?;
                            record.replicas = c.replicas.clone();
                            state.insert(shard_key(c.id), to_json(&record))?;
                            ApplyOutcome::Applied
                        }
                        None => ApplyOutcome::Applied,
                    },
                    Some(CommandKind::AddMember(c)) => {
                        let record = MemberRecord {
                            id: c.id,
                            raft_addr: c.raft_addr.clone(),
                            removed: false,
                            replaces: (c.replaces != 0).then_some(c.replaces),
                        };
                        members.insert(&c.id.to_be_bytes(), to_json(&record))?;
                        if c.replaces != 0 {
                            mark_removed(members, c.replaces)?;
                        }
                        ApplyOutcome::Applied
                    }
                    Some(CommandKind::RemoveMember(c)) => {
                        mark_removed(members, c.id)?;
                        ApplyOutcome::Applied
                    }
                    Some(CommandKind::PutPipeline(c)) => {
                        if tenants.get(c.tenant.as_bytes())?.is_none() {
                            ApplyOutcome::UnknownTenant
                        } else {
                            let record = PipelineRecord {
                                tenant: c.tenant.clone(),
                                name: c.name.clone(),
                                version: index,
                                updated_at_nanos: c.updated_at_nanos,
                                spec_json: c.spec_json.clone(),
                            };
                            state.insert(pipeline_key(&c.tenant, &c.name), to_json(&record))?;
                            state.insert(PIPELINES_CHANGED_KEY, &index.to_be_bytes())?;
                            ApplyOutcome::Applied
                        }
                    }
                    Some(CommandKind::DeletePipeline(c)) => {
                        match state.remove(pipeline_key(&c.tenant, &c.name))? {
                            Some(_) => {
                                state.insert(PIPELINES_CHANGED_KEY, &index.to_be_bytes())?;
                                ApplyOutcome::Applied
                            }
                            None => ApplyOutcome::NoSuchPipeline,
                        }
                    }
                    Some(CommandKind::CompactLog(c)) => {
                        let allowed = read_u64(state.get(COMPACT_ALLOWED_KEY)?)
                            .map_err(ConflictableTransactionError::Abort)?;
                        if c.below > allowed {
                            state.insert(COMPACT_ALLOWED_KEY, &c.below.to_be_bytes())?;
                        }
                        ApplyOutcome::Applied
                    }
                    None => ApplyOutcome::Applied,
                };
                Ok(outcome)
            },
        );
        result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => Error::Sled(e),
        })
    }

    /// The tenant's tokens that stay valid past `deadline` (those without an expiry, and
    /// those in a grace period that ends later): a rotation cuts them all down to it.
    fn tokens_valid_past(
        &self,
        tenant: &str,
        deadline: i64,
    ) -> Result<Vec<(sled::IVec, TokenRecord)>> {
        let mut out = Vec::new();
        for item in self.tokens.iter() {
            let (hash, value) = item?;
            let record: TokenRecord = from_json(&value)?;
            if record.tenant.as_deref() == Some(tenant)
                && record.expires_at_nanos.is_none_or(|until| until > deadline)
            {
                out.push((hash, record));
            }
        }
        Ok(out)
    }

    /// Who `token` speaks for at `now_nanos`, or `None` if it is unknown or expired.
    pub fn authenticate(&self, token: &str, now_nanos: i64) -> Result<Option<Principal>> {
        let Some(value) = self.tokens.get(tokens::hash(token).as_bytes())? else {
            return Ok(None);
        };
        let record: TokenRecord = from_json(&value)?;
        if record
            .expires_at_nanos
            .is_some_and(|deadline| now_nanos >= deadline)
        {
            return Ok(None);
        }
        Ok(Some(match record.tenant {
            None => Principal::Admin,
            Some(t) => Principal::Tenant(t),
        }))
    }

    /// Whether a tenant exists.
    pub fn tenant_exists(&self, name: &str) -> Result<bool> {
        Ok(self.tenants.contains_key(name.as_bytes())?)
    }

    /// A tenant's record.
    pub fn tenant(&self, name: &str) -> Result<Option<TenantRecord>> {
        self.tenants
            .get(name.as_bytes())?
            .map(|v| from_json(&v))
            .transpose()
    }

    /// Shard `id`'s record.
    pub fn shard(&self, id: u64) -> Result<Option<ShardRecord>> {
        self.state
            .get(shard_key(id))?
            .map(|v| from_json(&v))
            .transpose()
    }

    /// Every event shard, by id.
    pub fn shards(&self) -> Result<Vec<ShardRecord>> {
        self.state
            .scan_prefix(SHARD_PREFIX)
            .values()
            .map(|v| from_json(&v?))
            .collect()
    }

    /// Every tenant, by name.
    pub fn tenants(&self) -> Result<Vec<TenantRecord>> {
        self.tenants
            .iter()
            .values()
            .map(|v| from_json(&v?))
            .collect()
    }

    /// Every metadata record and the applied index, encoded, for a snapshot.
    pub fn dump(&self) -> Result<Vec<u8>> {
        let pairs = |tree: &sled::Tree| -> Result<Vec<KeyValue>> {
            tree.iter()
                .map(|item| {
                    let (key, value) = item?;
                    Ok(KeyValue {
                        key: key.to_vec(),
                        value: value.to_vec(),
                    })
                })
                .collect()
        };
        Ok(MetadataDump {
            tenants: pairs(&self.tenants)?,
            tokens: pairs(&self.tokens)?,
            state: pairs(&self.state)?,
            members: pairs(&self.members)?,
        }
        .encode_to_vec())
    }

    /// Replaces every record with those of a [`Metadata::dump`], atomically.
    pub fn restore(&self, dump: &[u8]) -> Result<()> {
        let dump = MetadataDump::decode(dump)
            .map_err(|e| Error::Corrupt(format!("metadata snapshot: {e}")))?;
        // Keys to remove are read before the transaction: sled transactions must not scan.
        let keys = |tree: &sled::Tree| -> Result<Vec<sled::IVec>> {
            tree.iter().keys().map(|k| Ok(k?)).collect()
        };
        let old = (
            keys(&self.tenants)?,
            keys(&self.tokens)?,
            keys(&self.state)?,
            keys(&self.members)?,
        );
        let result = (&self.tenants, &self.tokens, &self.state, &self.members).transaction(
            |(tenants, tokens, state, members)| {
                let trees = [
                    (tenants, &old.0, &dump.tenants),
                    (tokens, &old.1, &dump.tokens),
                    (state, &old.2, &dump.state),
                    (members, &old.3, &dump.members),
                ];
                for (tree, old_keys, pairs) in trees {
                    for key in old_keys {
                        tree.remove(key)?;
                    }
                    for pair in pairs {
                        tree.insert(pair.key.as_slice(), pair.value.as_slice())?;
                    }
                }
                Ok(())
            },
        );
        result.map_err(|e: TransactionError<Error>| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => Error::Sled(e),
        })
    }

    /// The tenant's pipelines, by name.
    pub fn pipelines(&self, tenant: &str) -> Result<Vec<PipelineRecord>> {
        self.state
            .scan_prefix(pipeline_key(tenant, ""))
            .values()
            .map(|v| from_json(&v?))
            .collect()
    }

    /// One of the tenant's pipelines.
    pub fn pipeline(&self, tenant: &str, name: &str) -> Result<Option<PipelineRecord>> {
        self.state
            .get(pipeline_key(tenant, name))?
            .map(|v| from_json(&v))
            .transpose()
    }

    /// The index of the last entry that changed any tenant's pipelines (0: none ever did):
    /// a node compiles a tenant's pipelines again when this moves.
    pub fn pipelines_changed_at(&self) -> Result<u64> {
        read_u64(self.state.get(PIPELINES_CHANGED_KEY)?)
    }

    /// Nodes added or removed since the cluster was bootstrapped, by id.
    pub fn members(&self) -> Result<Vec<MemberRecord>> {
        self.members
            .iter()
            .values()
            .map(|v| from_json(&v?))
            .collect()
    }

    /// Whether any admin token exists (the cluster has been bootstrapped).
    pub fn has_admin(&self) -> Result<bool> {
        for value in self.tokens.iter().values() {
            let record: TokenRecord = from_json(&value?)?;
            if record.tenant.is_none() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Tenant names have no `/` (see `validate_tenant_name`), so one tenant's prefix never
/// covers another's.
fn pipeline_key(tenant: &str, name: &str) -> Vec<u8> {
    format!("{PIPELINE_PREFIX}{tenant}/{name}").into_bytes()
}

fn shard_key(id: u64) -> Vec<u8> {
    [SHARD_PREFIX, &id.to_be_bytes()].concat()
}

/// A copy of the metadata trees (see [`Metadata::dump`]).
#[derive(Clone, PartialEq, prost::Message)]
struct MetadataDump {
    #[prost(message, repeated, tag = "1")]
    tenants: Vec<KeyValue>,
    #[prost(message, repeated, tag = "2")]
    tokens: Vec<KeyValue>,
    #[prost(message, repeated, tag = "3")]
    state: Vec<KeyValue>,
    #[prost(message, repeated, tag = "4")]
    members: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// Marks member `id` removed inside an apply transaction, keeping its address (an unknown id
/// gets a record with none, so it can never come back under that id).
fn mark_removed(
    members: &sled::transaction::TransactionalTree,
    id: u64,
) -> std::result::Result<(), ConflictableTransactionError<Error>> {
    let mut record = match members.get(id.to_be_bytes())? {
        Some(v) => from_json::<MemberRecord>(&v).map_err(ConflictableTransactionError::Abort)?,
        None => MemberRecord {
            id,
            raft_addr: String::new(),
            removed: true,
            replaces: None,
        },
    };
    record.removed = true;
    members.insert(&id.to_be_bytes(), to_json(&record))?;
    Ok(())
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("metadata records always serialize")
}

fn from_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt(format!("metadata record: {e}")))
}

fn read_u64(value: Option<sled::IVec>) -> Result<u64> {
    match value {
        None => Ok(0),
        Some(v) => {
            Ok(u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
                Error::Corrupt("applied index is not 8 bytes".into())
            })?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{AddMember, CreateTenant, RotateToken};

    fn create(name: &str, token: &str) -> Command {
        Command::new(CommandKind::CreateTenant(CreateTenant {
            name: name.into(),
            token_hash: tokens::hash(token),
            created_at_nanos: 1,
            shard: 0,
        }))
    }

    fn append(tenant: &str) -> Command {
        Command::new(CommandKind::AppendEvents(crate::command::AppendEvents {
            tenant: tenant.into(),
            batch: Vec::new(),
        }))
    }

    #[test]
    fn shards_are_recorded_and_a_shard_store_learns_its_tenants_from_their_events() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("meta")).unwrap();
        let meta = Metadata::open(&db).unwrap();
        let shard = |id| {
            Command::new(CommandKind::CreateShard(crate::command::CreateShard {
                id,
                replicas: vec![1, 2, 3],
                factor: 0,
            }))
        };
        meta.apply(1, &shard(1)).unwrap();
        meta.apply(2, &shard(2)).unwrap();
        let mut placed = create("acme", "t1");
        if let Some(CommandKind::CreateTenant(c)) = &mut placed.kind {
            c.shard = 2;
        }
        meta.apply(3, &placed).unwrap();
        meta.apply(4, &create("legacy", "t2")).unwrap();
        let ids: Vec<u64> = meta.shards().unwrap().iter().map(|s| s.id).collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(meta.shard(2).unwrap().unwrap().replicas, [1, 2, 3]);
        assert_eq!(meta.shard(3).unwrap(), None);
        assert_eq!(meta.tenant("acme").unwrap().unwrap().shard, 2);
        let here: Vec<String> = meta
            .tenants_here()
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(
            here,
            ["legacy"],
            "the metadata group carries unplaced tenants only"
        );
        // The metadata group refuses events of a tenant it does not know, or of one placed in a
        // shard; a shard learns its tenants.
        assert_eq!(
            meta.apply(5, &append("nobody")).unwrap(),
            ApplyOutcome::UnknownTenant
        );
        assert_eq!(
            meta.apply(6, &append("acme")).unwrap(),
            ApplyOutcome::PlacedElsewhere
        );
        assert_eq!(
            meta.apply(7, &append("legacy")).unwrap(),
            ApplyOutcome::NotMetadata
        );
        let shard_db = sled::open(dir.path().join("shard")).unwrap();
        let shard_meta = Metadata::open_shard(&shard_db, 2).unwrap();
        assert_eq!(
            shard_meta.apply(1, &append("acme")).unwrap(),
            ApplyOutcome::NotMetadata
        );
        let here: Vec<String> = shard_meta
            .tenants_here()
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(here, ["acme"]);
        assert_eq!(
            shard_meta.authenticate("t1", 0).unwrap(),
            None,
            "no tokens in a shard"
        );
        // Shards travel in snapshots with the rest.
        let copy_db = sled::open(dir.path().join("copy")).unwrap();
        let copy = Metadata::open(&copy_db).unwrap();
        copy.restore(&meta.dump().unwrap()).unwrap();
        assert_eq!(copy.shards().unwrap(), meta.shards().unwrap());
    }

    /// sled releases its file lock from a background thread shortly after the last handle drops.
    pub(crate) fn reopen(path: &std::path::Path) -> sled::Db {
        for _ in 0..100 {
            if let Ok(db) = sled::open(path) {
                return db;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        sled::open(path).unwrap()
    }

    #[test]
    fn entries_without_metadata_move_the_applied_index_forward_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let meta = Metadata::open(&db).unwrap();
        meta.apply(1, &create("acme", "t1")).unwrap();
        meta.mark_applied(3).unwrap();
        assert_eq!(meta.applied_index().unwrap(), 3);
        meta.mark_applied(2).unwrap();
        assert_eq!(meta.applied_index().unwrap(), 3, "never backwards");
        assert_eq!(
            meta.apply(3, &create("beta", "t2")).unwrap(),
            ApplyOutcome::AlreadyApplied
        );
        assert_eq!(
            meta.apply(4, &create("beta", "t2")).unwrap(),
            ApplyOutcome::Applied
        );
    }

    #[test]
    fn tenants_tokens_and_replay() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let meta = Metadata::open(&db).unwrap();
        assert_eq!(
            meta.apply(1, &create("acme", "t1")).unwrap(),
            ApplyOutcome::Applied
        );
        assert_eq!(
            meta.apply(1, &create("acme", "t1")).unwrap(),
            ApplyOutcome::AlreadyApplied
        );
        assert_eq!(
            meta.apply(2, &create("acme", "t2")).unwrap(),
            ApplyOutcome::TenantExists
        );
        assert_eq!(meta.applied_index().unwrap(), 2);
        assert_eq!(
            meta.authenticate("t1", 0).unwrap(),
            Some(Principal::Tenant("acme".into()))
        );
        assert_eq!(meta.authenticate("t2", 0).unwrap(), None);
        assert_eq!(meta.authenticate("", 0).unwrap(), None);
        drop(meta);
        drop(db);
        let db = reopen(dir.path());
        let meta = Metadata::open(&db).unwrap();
        assert_eq!(meta.applied_index().unwrap(), 2);
        assert_eq!(meta.tenants().unwrap().len(), 1);
    }

    #[test]
    fn rotation_keeps_the_old_token_for_its_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let meta = Metadata::open(&db).unwrap();
        meta.apply(1, &create("acme", "old")).unwrap();
        let rotate = Command::new(CommandKind::RotateToken(RotateToken {
            tenant: "acme".into(),
            token_hash: tokens::hash("new"),
            previous_valid_until_nanos: 100,
        }));
        assert_eq!(meta.apply(2, &rotate).unwrap(), ApplyOutcome::Applied);
        let acme = Some(Principal::Tenant("acme".into()));
        assert_eq!(meta.authenticate("old", 99).unwrap(), acme);
        assert_eq!(meta.authenticate("old", 100).unwrap(), None);
        assert_eq!(meta.authenticate("new", 1_000).unwrap(), acme);
        let unknown = Command::new(CommandKind::RotateToken(RotateToken {
            tenant: "nobody".into(),
            token_hash: tokens::hash("x"),
            previous_valid_until_nanos: 0,
        }));
        assert_eq!(
            meta.apply(3, &unknown).unwrap(),
            ApplyOutcome::UnknownTenant
        );
    }

    #[test]
    fn a_replacement_removes_the_member_it_replaces_in_the_same_entry() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Metadata::open(&sled::open(dir.path()).unwrap()).unwrap();
        let add = |id: u64, replaces: u64| {
            Command::new(CommandKind::AddMember(AddMember {
                id,
                raft_addr: format!("127.0.0.1:{}", 7000 + id),
                replaces,
            }))
        };
        meta.apply(1, &add(2, 0)).unwrap();
        meta.apply(2, &add(4, 2)).unwrap();
        let members = meta.members().unwrap();
        let two = members.iter().find(|m| m.id == 2).unwrap();
        assert!(two.removed);
        assert_eq!(two.raft_addr, "127.0.0.1:7002", "its address is kept");
        let four = members.iter().find(|m| m.id == 4).unwrap();
        assert_eq!((four.removed, four.replaces), (false, Some(2)));
    }

    #[test]
    fn a_dump_restores_into_another_store_replacing_what_it_had() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let source = Metadata::open(&sled::open(dirs[0].path()).unwrap()).unwrap();
        source.apply(1, &create("acme", "t1")).unwrap();
        source.apply(2, &create("globex", "t2")).unwrap();
        let compact = Command::new(CommandKind::CompactLog(crate::CompactLog { below: 2 }));
        source.apply(3, &compact).unwrap();

        let target = Metadata::open(&sled::open(dirs[1].path()).unwrap()).unwrap();
        target.apply(1, &create("stale", "t9")).unwrap();
        target.restore(&source.dump().unwrap()).unwrap();
        let names: Vec<String> = target
            .tenants()
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["acme", "globex"]);
        assert_eq!(target.applied_index().unwrap(), 3);
        assert_eq!(target.compact_allowed().unwrap(), 2);
        assert!(target.authenticate("t2", 0).unwrap().is_some());
        assert!(target.authenticate("t9", 0).unwrap().is_none());
        assert!(target.restore(b"not a dump").is_err());
    }
}
