//! Publishes and searches for tenants whose event shard this node does not hold: sent to a
//! node that holds it, which serves them as if asked itself.

use std::sync::Arc;
use std::time::Duration;

use meniscus_consensus::transport::{Envelope, ShardReply, ShardRequest, Transport};
use meniscus_storage::{SearchRequest, ShardRecord};
use prost::Message as _;

use crate::answers::Answers;
use crate::group::Group;
use crate::node::SearchOutcome;
use crate::{Error, Result};

/// How long a node waits for another to serve a publish (it waits for its commit there). A
/// publish that timed out is not sent to another node: it may have been committed.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node waits for another to serve a search, beyond the time the search may wait
/// for its writes; then it asks the next node holding the shard (a search can be repeated).
const SEARCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Rounds over the nodes holding a shard that a search makes before it fails.
const SEARCH_ROUNDS: usize = 2;

/// What a [`ShardRequest`] carries.
#[derive(Clone, PartialEq, prost::Message)]
struct ShardCall {
    #[prost(string, tag = "1")]
    tenant: String,
    /// A publish: the encoded event batch.
    #[prost(bytes = "vec", tag = "2")]
    batch: Vec<u8>,
    /// A search: the request as JSON (empty for a publish).
    #[prost(string, tag = "3")]
    search: String,
    /// A search that first waits until the shard's writes up to this index are searchable.
    #[prost(uint64, tag = "4")]
    min_index: u64,
    /// How long it may wait for them, in milliseconds.
    #[prost(uint64, tag = "5")]
    wait_ms: u64,
}

/// What a successful [`ShardReply`] carries.
#[derive(Clone, PartialEq, prost::Message)]
struct ShardAnswer {
    /// A publish: the shard's commit index.
    #[prost(uint64, tag = "1")]
    commit_index: u64,
    /// A search: the response as JSON; or `not_yet_searchable` when the wait ran out.
    #[prost(string, tag = "2")]
    search: String,
    #[prost(bool, tag = "3")]
    not_yet_searchable: bool,
}

/// This node's requests to other nodes' shards, waiting for their answers.
pub(crate) struct Remote {
    node_id: u64,
    transport: Arc<Transport>,
    answers: Answers<ShardReply>,
}

impl Remote {
    pub(crate) fn new(node_id: u64, transport: Arc<Transport>) -> Remote {
        Remote {
            node_id,
            transport,
            answers: Answers::new(),
        }
    }

    /// An answer arrived.
    pub(crate) fn on_reply(&self, reply: ShardReply) {
        self.answers.answer(reply.id, reply);
    }

    /// Publishes `batch` (encoded events) through a node holding `shard`.
    pub(crate) async fn publish(
        &self,
        shard: &ShardRecord,
        tenant: &str,
        batch: Vec<u8>,
    ) -> Result<u64> {
        let call = ShardCall {
            tenant: tenant.to_owned(),
            batch,
            ..Default::default()
        };
        Ok(self
            .call(shard, call, PUBLISH_TIMEOUT, 1, false)
            .await?
            .commit_index)
    }

    /// Searches through a node holding `shard`, after waiting up to `wait` for the shard's
    /// writes up to `min_index` (0: no wait).
    pub(crate) async fn search(
        &self,
        shard: &ShardRecord,
        tenant: &str,
        request: &SearchRequest,
        min_index: u64,
        wait: Duration,
    ) -> Result<SearchOutcome> {
        let call = ShardCall {
            tenant: tenant.to_owned(),
            search: serde_json::to_string(request).map_err(|e| Error::Actor(e.to_string()))?,
            min_index,
            wait_ms: wait.as_millis() as u64,
            ..Default::default()
        };
        let answer = self
            .call(shard, call, wait + SEARCH_TIMEOUT, SEARCH_ROUNDS, true)
            .await?;
        if answer.not_yet_searchable {
            return Ok(SearchOutcome::NotYetSearchable);
        }
        let response = serde_json::from_str(&answer.search)
            .map_err(|e| Error::Actor(format!("a search answer that does not parse: {e}")))?;
        Ok(SearchOutcome::Found(response))
    }

    /// Sends `call` to each node holding `shard` in turn (for `rounds` rounds) until one serves
    /// it, waiting up to `timeout` for each; with `repeatable`, also past one that did not
    /// answer in time.
    async fn call(
        &self,
        shard: &ShardRecord,
        call: ShardCall,
        timeout: Duration,
        rounds: usize,
        repeatable: bool,
    ) -> Result<ShardAnswer> {
        let body = call.encode_to_vec();
        let mut last = format!("no node holds shard {}", shard.id);
        let nodes: Vec<u64> = shard
            .replicas
            .iter()
            .copied()
            .filter(|n| *n != self.node_id)
            .collect();
        for node in nodes.iter().copied().cycle().take(nodes.len() * rounds) {
            let send = |id| {
                let envelope = Envelope {
                    group: shard.id,
                    shard_request: Some(ShardRequest {
                        id,
                        body: body.clone(),
                    }),
                    ..Default::default()
                };
                self.transport.send_envelope(node, envelope);
            };
            match self.answers.ask(send, timeout).await {
                Some(reply) if reply.error.is_empty() => {
                    return ShardAnswer::decode(reply.body.as_slice()).map_err(|e| {
                        Error::Actor(format!("a shard answer that does not parse: {e}"))
                    });
                }
                Some(reply) => match decode_error(&reply.error) {
                    // Another replica may serve it (this one is still starting the shard).
                    Error::Unavailable(message) => last = format!("node {node}: {message}"),
                    other => return Err(other),
                },
                None if repeatable => {
                    last = format!("node {node} did not answer within {timeout:?}")
                }
                None => {
                    return Err(Error::Unavailable(format!(
                        "node {node}, which holds shard {}, did not answer within {timeout:?}; the write may or may not be stored: retry it with the same ids",
                        shard.id
                    )))
                }
            }
        }
        Err(Error::Unavailable(last))
    }
}

/// Serves node `from`'s request for shard `group` with this node's replica, and answers it.
pub(crate) async fn serve(
    group: Option<Arc<Group>>,
    transport: Arc<Transport>,
    from: u64,
    shard: u64,
    request: ShardRequest,
) {
    let answer = match group {
        Some(group) => serve_call(&group, &request.body).await,
        None => Err(Error::Unavailable(format!(
            "shard {shard} is not running on this node"
        ))),
    };
    let reply = match answer {
        Ok(answer) => ShardReply {
            id: request.id,
            body: answer.encode_to_vec(),
            error: String::new(),
        },
        Err(e) => ShardReply {
            id: request.id,
            body: Vec::new(),
            error: encode_error(&e),
        },
    };
    let envelope = Envelope {
        group: shard,
        shard_reply: Some(reply),
        ..Default::default()
    };
    transport.send_envelope(from, envelope);
}

async fn serve_call(group: &Group, body: &[u8]) -> Result<ShardAnswer> {
    let call =
        ShardCall::decode(body).map_err(|e| Error::Actor(format!("bad shard request: {e}")))?;
    if call.search.is_empty() {
        let events = meniscus_event::wire::decode_batch(&call.batch)
            .map_err(|e| Error::Actor(format!("bad event batch: {e}")))?;
        let commit_index = group.publish(&call.tenant, &events).await?;
        return Ok(ShardAnswer {
            commit_index,
            ..Default::default()
        });
    }
    let request: SearchRequest = serde_json::from_str(&call.search)
        .map_err(|e| Error::Actor(format!("bad search request: {e}")))?;
    let min_index = (call.min_index > 0).then_some(call.min_index);
    let wait = Duration::from_millis(call.wait_ms);
    match group
        .search_when_searchable(&call.tenant, request, min_index, wait)
        .await?
    {
        SearchOutcome::Found(response) => Ok(ShardAnswer {
            search: serde_json::to_string(&response).map_err(|e| Error::Actor(e.to_string()))?,
            ..Default::default()
        }),
        SearchOutcome::NotYetSearchable => Ok(ShardAnswer {
            not_yet_searchable: true,
            ..Default::default()
        }),
    }
}

/// Errors travel as `kind: message`, so the asking node answers its client as the serving node
/// would have.
fn encode_error(e: &Error) -> String {
    let kind = match e {
        Error::Overloaded(_) => "overloaded",
        Error::UnknownTenant(_) => "unknown_tenant",
        Error::Unavailable(_) | Error::Consensus(_) => "unavailable",
        Error::Storage(meniscus_storage::Error::InvalidQuery(_)) => "invalid_query",
        Error::Storage(meniscus_storage::Error::InvalidCursor(_)) => "invalid_cursor",
        _ => "internal",
    };
    let message = match e {
        Error::UnknownTenant(tenant) => tenant.clone(),
        Error::Storage(meniscus_storage::Error::InvalidQuery(m))
        | Error::Storage(meniscus_storage::Error::InvalidCursor(m)) => m.clone(),
        other => other.to_string(),
    };
    format!("{kind}: {message}")
}

fn decode_error(text: &str) -> Error {
    let (kind, message) = text.split_once(": ").unwrap_or(("internal", text));
    let message = message.to_owned();
    match kind {
        "overloaded" => Error::Overloaded(message),
        "unknown_tenant" => Error::UnknownTenant(message),
        "unavailable" => Error::Unavailable(message),
        "invalid_query" => Error::Storage(meniscus_storage::Error::InvalidQuery(message)),
        "invalid_cursor" => Error::Storage(meniscus_storage::Error::InvalidCursor(message)),
        _ => Error::Actor(format!("another node failed: {message}")),
    }
}
