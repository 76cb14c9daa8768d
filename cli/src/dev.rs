//! `meniscus dev`: a whole single-node cluster on a local data directory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meniscus_actors::{Node, NodeOptions};
use meniscus_api::ApiConfig;
use meniscus_event::publish::Limits;
use tokio::net::TcpListener;

use crate::credentials::{self, Credentials};
use crate::DevArgs;

const DEFAULT_TENANT: &str = "default";

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    if args.syslog_tcp.is_some() || args.syslog_udp.is_some() {
        anyhow::bail!(
            "syslog listeners are not available in this build yet (see issue 5); use the HTTP API"
        );
    }
    let mut options = NodeOptions::new(&args.data_dir);
    options.indexer.commit_interval = Duration::from_millis(args.commit_interval_ms.max(10));
    let node = Arc::new(
        Node::start(options)
            .await
            .with_context(|| format!("starting the node on {}", args.data_dir.display()))?,
    );
    bootstrap(&node, &args).await?;

    let config = ApiConfig {
        max_body_bytes: args.max_body_bytes,
        limits: Limits {
            max_event_bytes: args.max_event_bytes,
            max_batch_len: args.max_batch_events,
        },
        ..ApiConfig::default()
    };
    let listener = TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding the HTTP API to {}", args.http))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find a port chosen with :0.
    println!("meniscus: http listening on {addr}");
    tracing::info!(%addr, data_dir = %args.data_dir.display(), credentials = %credentials::path(&args.data_dir).display(), "meniscus dev is ready");

    meniscus_api::serve(
        listener,
        meniscus_api::router(node.clone(), config),
        shutdown_signal(),
    )
    .await
    .context("serving HTTP")?;
    tracing::info!("HTTP stopped; committing indexes");
    node.shutdown().await.context("shutting down")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// On first start: an admin token and the `default` tenant. The tokens are written to
/// credentials.json *before* they are proposed, so a crash in between never leaves a token in
/// the store that nobody knows.
async fn bootstrap(node: &Node, args: &DevArgs) -> anyhow::Result<()> {
    if node.has_admin()? {
        return Ok(());
    }
    let credentials = match credentials::load(&args.data_dir)? {
        Some(existing) => existing, // an earlier first start stopped half way
        None => {
            let mut tenants = BTreeMap::new();
            tenants.insert(
                DEFAULT_TENANT.to_owned(),
                meniscus_storage::tokens::generate(),
            );
            let fresh = Credentials {
                admin_token: meniscus_storage::tokens::generate(),
                tenants,
            };
            credentials::store(&args.data_dir, &fresh)?;
            fresh
        }
    };
    for (tenant, token) in &credentials.tenants {
        node.create_tenant_with_token(tenant, token).await?;
    }
    node.add_admin_token(&credentials.admin_token).await?;
    tracing::info!(path = %credentials::path(&args.data_dir).display(), "first start: wrote the admin and default tenant tokens");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested: no new connections; finishing in-flight requests");
}
