//! The NodeSupervisor: the root of a node's actor tree; one TenantSupervisor per tenant.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::tenant_supervisor::{TenantArgs, TenantStatus};
use crate::{NodeContext, QueuedBatch, TenantMsg, TenantSupervisor};

/// Messages the node supervisor handles.
pub enum NodeMsg {
    /// Events of the committed entry at `index` for `tenant`.
    Entry {
        /// Tenant name.
        tenant: String,
        /// Raft index.
        index: u64,
        /// The tenant's previous entry, or a point after it (see `DispatchProgress::record`).
        previous: u64,
        /// The encoded batch.
        batch: QueuedBatch,
    },
    /// Start a tenant's actors (at boot, for indexes behind the log).
    Start(String),
    /// Commit every running tenant index.
    FlushAll(RpcReplyPort<()>),
    /// Stop every tenant's actors and wait for them (a snapshot is about to replace the
    /// indexes); they start again on their next entry.
    StopTenants(RpcReplyPort<()>),
    /// A tenant's actor status, if its supervisor runs.
    TenantStatus(String, RpcReplyPort<Option<TenantStatus>>),
    /// Forward a message to a tenant's supervisor (tests inject faults this way).
    #[doc(hidden)]
    ToTenant(String, TenantMsg),
}

/// The node supervisor actor.
pub struct NodeSupervisor;

/// The node supervisor's state.
pub struct NodeState {
    ctx: Arc<NodeContext>,
    tenants: HashMap<String, ActorRef<TenantMsg>>,
}

impl NodeState {
    async fn tenant(
        &mut self,
        myself: &ActorRef<NodeMsg>,
        tenant: &str,
    ) -> Result<ActorRef<TenantMsg>, ActorProcessingErr> {
        if let Some(t) = self.tenants.get(tenant) {
            return Ok(t.clone());
        }
        let args = TenantArgs {
            tenant: tenant.to_owned(),
            ctx: self.ctx.clone(),
        };
        let (actor, _) =
            Actor::spawn_linked(None, TenantSupervisor, args, myself.get_cell()).await?;
        self.tenants.insert(tenant.to_owned(), actor.clone());
        Ok(actor)
    }
}

impl Actor for NodeSupervisor {
    type Msg = NodeMsg;
    type State = NodeState;
    type Arguments = Arc<NodeContext>;

    async fn pre_start(
        &self,
        _myself: ActorRef<NodeMsg>,
        ctx: Arc<NodeContext>,
    ) -> Result<NodeState, ActorProcessingErr> {
        Ok(NodeState {
            ctx,
            tenants: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<NodeMsg>,
        message: NodeMsg,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            NodeMsg::Entry {
                tenant,
                index,
                previous,
                batch,
            } => {
                let actor = state.tenant(&myself, &tenant).await?;
                // If the supervisor just died the entry stays in the log; its successor catches up.
                let _ = actor.cast(TenantMsg::Entry {
                    index,
                    previous,
                    batch,
                });
            }
            NodeMsg::Start(tenant) => {
                let actor = state.tenant(&myself, &tenant).await?;
                let _ = actor.cast(TenantMsg::Start);
            }
            NodeMsg::FlushAll(reply) => {
                for (tenant, actor) in &state.tenants {
                    if let Err(e) = actor
                        .call(TenantMsg::Flush, Some(Duration::from_secs(60)))
                        .await
                    {
                        tracing::warn!(%tenant, error = %e, "flushing the tenant index failed");
                    }
                }
                let _ = reply.send(());
            }
            NodeMsg::StopTenants(reply) => {
                for (tenant, actor) in state.tenants.drain() {
                    if let Err(e) = actor
                        .stop_and_wait(Some("snapshot".into()), Some(Duration::from_secs(60)))
                        .await
                    {
                        tracing::warn!(%tenant, error = %e, "a tenant's actors did not stop");
                    }
                }
                let _ = reply.send(());
            }
            NodeMsg::TenantStatus(tenant, reply) => {
                let status = match state.tenants.get(&tenant) {
                    Some(actor) => actor
                        .call(TenantMsg::Status, Some(Duration::from_secs(10)))
                        .await
                        .ok()
                        .and_then(|r| r.success_or(()).ok()),
                    None => None,
                };
                let _ = reply.send(status);
            }
            NodeMsg::ToTenant(tenant, message) => {
                let actor = state.tenant(&myself, &tenant).await?;
                let _ = actor.cast(message);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<NodeMsg>,
        event: SupervisionEvent,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, _)
        | SupervisionEvent::ActorTerminated(cell, _, _) = &event
        {
            let gone: Vec<String> = state
                .tenants
                .iter()
                .filter(|(_, a)| a.get_id() == cell.get_id())
                .map(|(t, _)| t.clone())
                .collect();
            for tenant in gone {
                // Started again on its next entry; its indexer catches up from the log.
                tracing::warn!(%tenant, "tenant supervisor stopped");
                state.tenants.remove(&tenant);
            }
        }
        Ok(())
    }
}
