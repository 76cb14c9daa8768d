//! `meniscus dev`: a whole single-node cluster on a local data directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use meniscus_actors::{placement, ClusterOptions, Node, NodeOptions, PeerSecurity, PeerTls};
use meniscus_api::syslog::{
    RelpSyslog, Shutdown, SyslogConfig, TcpSyslog, TlsSettings, TlsSyslog, UdpSyslog,
};
use meniscus_api::{ApiConfig, SyslogStats};
use meniscus_event::publish::Limits;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::credentials::{self, Credentials};
use crate::{fdlimit, DevArgs};

const DEFAULT_TENANT: &str = "default";
/// How long committing the indexes and stopping the actors may take after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    // The HTTP port and certificates first: a busy port or a bad file is reported before
    // anything is written.
    let https = match (&args.http_tls_cert, &args.http_tls_key) {
        (Some(cert), Some(key)) => {
            let settings = TlsSettings {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: None,
            };
            let config = settings
                .server_config()
                .context("reading --http-tls-cert and --http-tls-key")?;
            Some(tokio_rustls::TlsAcceptor::from(config))
        }
        _ => None,
    };
    let listener = TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding the HTTP API to {}", args.http))?;
    let addr = listener.local_addr()?;
    make_private(&args.data_dir)?;
    let mut options = NodeOptions::new(&args.data_dir);
    options.indexer.commit_interval = Duration::from_millis(args.commit_interval_ms.max(10));
    options.indexer.nice = args.indexer_nice;
    options.max_indexing_backlog_bytes = args.max_indexing_backlog_mib << 20;
    options.compact_interval = Duration::from_secs(args.cluster.compact_interval_secs.max(1));
    options.max_raft_log_entries = args.cluster.max_raft_log_entries;
    options.copy_follower_indexes = args.cluster.follower_indexes == crate::FollowerIndexes::Copy;
    if let Some(members) = &args.cluster.initial_cluster {
        let id = args.cluster.node_id;
        let own = members
            .0
            .iter()
            .find(|(m, _)| *m == id)
            .map(|(_, addr)| *addr);
        let Some(own) = own else {
            anyhow::bail!("--node-id {id} is not in --initial-cluster");
        };
        if let Some(advertised) = args.cluster.raft_advertise.filter(|a| *a != own) {
            anyhow::bail!(
                "--raft-advertise {advertised} differs from node {id}'s address in --initial-cluster ({own}): the other nodes dial the address there"
            );
        }
        options.node_id = id;
        options.cluster = Some(ClusterOptions {
            raft_addr: args.cluster.raft.unwrap_or(own),
            members: members.0.clone(),
            tick_interval: Duration::from_millis(100),
            join: false,
            security: peer_security(&args)?,
        });
    } else if let Some(url) = &args.cluster.join {
        options.node_id = args.cluster.node_id;
        options.cluster = Some(join(&args, url).await?);
    }
    let node = Arc::new(
        Node::start(options)
            .await
            .with_context(|| format!("starting the node on {}", args.data_dir.display()))?,
    );
    bootstrap(&node, &args).await?;

    let mut config = ApiConfig {
        max_body_bytes: args.max_body_bytes,
        limits: Limits {
            max_event_bytes: args.max_event_bytes,
            max_batch_len: args.max_batch_events,
        },
        ..ApiConfig::default()
    };
    // Tests and scripts read this line to find a port chosen with :0.
    println!("meniscus: http listening on {addr}");
    let credentials = credentials::path(&args.data_dir);
    // Only the bootstrapping node writes credentials.json: name it where it exists.
    let credentials = credentials
        .exists()
        .then(|| credentials.display().to_string());
    tracing::info!(%addr, https = https.is_some(), data_dir = %args.data_dir.display(), credentials = credentials.as_deref().unwrap_or("-"), "meniscus dev is ready");

    // The HTTP API and each syslog stream listener may hold this many connections, raising
    // the open-file limit to fit them beside the node's own files.
    let fit = fdlimit::fit_connections(
        stream_listeners(&args),
        args.syslog_max_connections,
        args.http_max_connections,
    );
    tracing::info!(
        open_file_limit = fit.limit,
        per_listener = fit.per_listener,
        "connection limits"
    );
    let serve_limits = meniscus_api::ServeLimits {
        max_connections: fit.http,
        header_timeout: Duration::from_secs(args.http_header_timeout_secs.max(1)),
        ..meniscus_api::ServeLimits::default()
    };
    // One signal stops HTTP and every syslog listener.
    let (stop, shutdown) = Shutdown::channel();
    let syslog_connections = fit.per_listener;
    let (syslog, syslog_stats) = start_syslog(&node, &args, syslog_connections, &shutdown).await?;
    config.syslog = syslog_stats;
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let mut http_shutdown = shutdown.clone();
    meniscus_api::serve(
        listener,
        meniscus_api::router(node.clone(), config),
        serve_limits,
        https,
        async move { http_shutdown.requested().await },
    )
    .await
    .context("serving HTTP")?;
    tracing::info!("HTTP stopped; waiting for syslog listeners to publish what they have read");
    for listener in syslog {
        if let Err(e) = listener.await {
            tracing::error!(error = %e, "a syslog listener task failed");
        }
    }
    tracing::info!("listeners stopped; committing indexes");
    // Everything acknowledged is in the Raft log already: a stop that cannot finish committing
    // the indexes in time loses nothing (the next start replays the log), so it is bounded.
    match tokio::time::timeout(SHUTDOWN_TIMEOUT, node.shutdown()).await {
        Ok(done) => done.context("shutting down")?,
        Err(_) => anyhow::bail!(
            "the node did not finish stopping within {} s; the next start replays the log",
            SHUTDOWN_TIMEOUT.as_secs()
        ),
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Creates the data directory with mode 0700, or narrows an existing one to it (it holds
/// every tenant's events and the tokens).
fn make_private(dir: &std::path::Path) -> anyhow::Result<()> {
    crate::cert::create_private_dir(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode != 0o700 {
            tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "the data directory was open to others; narrowing it to 0700");
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("narrowing {} to mode 0700", dir.display()))?;
        }
    }
    Ok(())
}

/// How many syslog stream listeners (TCP, RELP, TLS) are asked for.
fn stream_listeners(args: &DevArgs) -> usize {
    [args.syslog_tcp, args.relp, args.syslog_tls]
        .iter()
        .filter(|a| a.is_some())
        .count()
}

/// Running syslog listeners: their tasks, and their counters for `/metrics`.
type Started = (Vec<JoinHandle<()>>, Vec<Arc<SyslogStats>>);

/// Binds the syslog listeners asked for, bound to the `default` tenant, and starts them. Each
/// address is printed like the HTTP one, for scripts and tests that ask for port 0. The
/// open-file limit is raised first to fit the connection limit of the stream listeners.
async fn start_syslog(
    node: &Arc<Node>,
    args: &DevArgs,
    max_connections: usize,
    shutdown: &Shutdown,
) -> anyhow::Result<Started> {
    let streams = stream_listeners(args);
    let config = SyslogConfig {
        max_connections,
        idle_timeout: (args.syslog_idle_timeout_secs > 0)
            .then(|| Duration::from_secs(args.syslog_idle_timeout_secs)),
        ..SyslogConfig::bound_to(DEFAULT_TENANT)
    };
    if streams > 0 {
        tracing::info!(
            max_connections = config.max_connections,
            idle_timeout_secs = args.syslog_idle_timeout_secs,
            "syslog stream connection limits"
        );
    }
    let (mut running, mut stats) = (Vec::new(), Vec::new());
    if let Some(addr) = args.syslog_tcp {
        let tcp = TcpSyslog::bind(addr, node.clone(), config.clone()).await?;
        println!("meniscus: syslog-tcp listening on {}", tcp.local_addr());
        tracing::info!(addr = %tcp.local_addr(), tenant = DEFAULT_TENANT, "syslog-tcp listening");
        stats.push(tcp.stats());
        running.push(tokio::spawn(tcp.run(shutdown.clone())));
    }
    if let Some(addr) = args.syslog_udp {
        let udp = UdpSyslog::bind(addr, node.clone(), config.clone()).await?;
        println!("meniscus: syslog-udp listening on {}", udp.local_addr());
        tracing::info!(addr = %udp.local_addr(), tenant = DEFAULT_TENANT, "syslog-udp listening");
        stats.push(udp.stats());
        running.push(tokio::spawn(udp.run(shutdown.clone())));
    }
    if let Some(addr) = args.relp {
        let relp = RelpSyslog::bind(addr, node.clone(), config.clone()).await?;
        println!("meniscus: relp listening on {}", relp.local_addr());
        tracing::info!(addr = %relp.local_addr(), tenant = DEFAULT_TENANT, "relp listening");
        stats.push(relp.stats());
        running.push(tokio::spawn(relp.run(shutdown.clone())));
    }
    if let (Some(addr), Some(cert), Some(key)) = (args.syslog_tls, &args.tls_cert, &args.tls_key) {
        let settings = TlsSettings {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: args.tls_client_ca.clone(),
        };
        let tls = TlsSyslog::bind(addr, node.clone(), config, &settings).await?;
        println!("meniscus: syslog-tls listening on {}", tls.local_addr());
        let tenants = if settings.client_ca.is_some() {
            "from client certificates"
        } else {
            DEFAULT_TENANT
        };
        tracing::info!(addr = %tls.local_addr(), tenant = tenants, "syslog-tls listening");
        stats.push(tls.stats());
        running.push(tokio::spawn(tls.run(shutdown.clone())));
    }
    Ok((running, stats))
}

/// `--join URL`: asks a member to add this node (first start only: after that, the members
/// are in this node's own metadata) and returns how to reach the others.
async fn join(args: &DevArgs, url: &str) -> anyhow::Result<ClusterOptions> {
    let id = args.cluster.node_id;
    let raft = args.cluster.raft.context("--join needs --raft ADDR")?;
    // Before asking to be added: a node that cannot talk to its peers should not be a member.
    let security = peer_security(args)?;
    let advertised = args.cluster.raft_advertise.unwrap_or(raft);
    let mut members = vec![(id, advertised)];
    // The members named by the join answer, kept for restarts: a node that restarts before
    // its first snapshot has no metadata yet, and without these it could answer nobody.
    let known_members = args.data_dir.join("join-members.json");
    if args.data_dir.join("raft").exists() {
        if let Ok(text) = std::fs::read_to_string(&known_members) {
            let known: Vec<(u64, SocketAddr)> = serde_json::from_str(&text)
                .with_context(|| format!("reading {}", known_members.display()))?;
            members.extend(known.into_iter().filter(|(mid, _)| *mid != id));
        }
    } else {
        let token = admin_token(args)?.context(
            "--join needs the admin token: set MENISCUS_ADMIN_TOKEN or pass --admin-token-file",
        )?;
        let url = format!("{}/v1/cluster/nodes", url.trim_end_matches('/'));
        let response = reqwest::Client::new()
            .post(&url)
            .bearer_auth(token)
            .json(&serde_json::json!({
                "id": id,
                "raft_addr": advertised.to_string(),
                "replaces": args.cluster.replace,
            }))
            .send()
            .await
            .with_context(|| format!("asking {url} to add node {id}"))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!("{url} refused to add node {id}: {status} {body}");
        }
        for member in body["members"].as_array().into_iter().flatten() {
            let (Some(mid), Some(addr)) = (member["id"].as_u64(), member["raft_addr"].as_str())
            else {
                continue;
            };
            if mid != id {
                members.push((
                    mid,
                    addr.parse()
                        .with_context(|| format!("member address {addr}"))?,
                ));
            }
        }
        std::fs::create_dir_all(&args.data_dir)?;
        std::fs::write(&known_members, serde_json::to_vec(&members)?)
            .with_context(|| format!("writing {}", known_members.display()))?;
        tracing::info!(id, %url, members = members.len(), "joined: waiting for the leader's snapshot");
    }
    Ok(ClusterOptions {
        raft_addr: raft,
        members,
        tick_interval: Duration::from_millis(100),
        join: true,
        security,
    })
}

/// How this node's peer links are secured: `--certs-dir`, or explicitly `--insecure`.
fn peer_security(args: &DevArgs) -> anyhow::Result<PeerSecurity> {
    let id = args.cluster.node_id;
    if let Some(dir) = &args.cluster.certs_dir {
        let tls = PeerTls::from_dir(dir, id)
            .with_context(|| format!("reading node {id}'s certificates from {}", dir.display()))?;
        return Ok(PeerSecurity::Tls(tls));
    }
    if args.cluster.insecure {
        tracing::warn!(
            "--insecure: peer links are plain text and unauthenticated; anyone who can reach the Raft port can steer this cluster"
        );
        return Ok(PeerSecurity::Insecure);
    }
    anyhow::bail!(
        "a cluster node needs certificates for its peer links. Make them once:\n  meniscus cert create-ca --certs-dir certs\n  meniscus cert create-node {id} --certs-dir certs   (one per node id)\nthen start every node with --certs-dir certs (a node needs certs/ca.crt and its own node-ID.crt and node-ID.key). For a test or demo on one machine, --insecure runs without (plain text, unauthenticated)."
    )
}

/// The admin token from MENISCUS_ADMIN_TOKEN or --admin-token-file, if either is given.
fn admin_token(args: &DevArgs) -> anyhow::Result<Option<String>> {
    if let Some(token) = std::env::var("MENISCUS_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(token));
    }
    match &args.cluster.admin_token_file {
        Some(path) => {
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("reading the admin token from {}", path.display()))?;
            Ok(Some(token.trim().to_owned()))
        }
        None => Ok(None),
    }
}

/// On first start: an admin token and the `default` tenant. The tokens are written to
/// credentials.json *before* they are proposed, so a crash in between never leaves a token in
/// the store that nobody knows.
async fn bootstrap(node: &Node, args: &DevArgs) -> anyhow::Result<()> {
    if args.cluster.join.is_some() {
        return Ok(()); // it learns everything from the cluster it joins
    }
    if let Some(members) = &args.cluster.initial_cluster {
        let lowest = members.0.iter().map(|(id, _)| *id).min();
        if lowest != Some(args.cluster.node_id) {
            return Ok(()); // one node bootstraps; the others learn it through the log
        }
    }
    if node.has_admin()? {
        let made = node.shard_ids()?.len() as u64;
        if let Some(asked) = args.cluster.shards.filter(|asked| *asked != made) {
            tracing::warn!(
                shards = made,
                asked,
                "--shards only counts when the cluster is bootstrapped; it keeps the shards it was made with"
            );
        }
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
            let admin_token = admin_token(args)?.unwrap_or_else(meniscus_storage::tokens::generate);
            let fresh = Credentials {
                admin_token,
                tenants,
            };
            credentials::store(&args.data_dir, &fresh)?;
            fresh
        }
    };
    // In a cluster the first proposals wait for an elected leader (peers may still be starting).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        match propose_credentials(node, &credentials, args).await {
            Ok(()) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "bootstrap waits for a Raft leader");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e).context("bootstrapping the admin and default tenant tokens"),
        }
    }
    tracing::info!(path = %credentials::path(&args.data_dir).display(), "first start: wrote the admin and default tenant tokens");
    Ok(())
}

async fn propose_credentials(
    node: &Node,
    credentials: &Credentials,
    args: &DevArgs,
) -> anyhow::Result<()> {
    // The initial members go into the metadata too, so a node that joins later (or restarts
    // without flags naming them) knows every address.
    for (id, addr) in args.cluster.initial_cluster.iter().flat_map(|m| &m.0) {
        node.record_member(*id, *addr).await?;
    }
    if let Some(members) = &args.cluster.initial_cluster {
        let ids: Vec<u64> = members.0.iter().map(|(id, _)| *id).collect();
        let shards = args.cluster.shards.unwrap_or(placement::DEFAULT_SHARDS);
        let factor = args
            .cluster
            .replication_factor
            .unwrap_or(placement::DEFAULT_REPLICATION_FACTOR);
        node.ensure_shards(shards, &ids, factor).await?;
    }
    for (tenant, token) in &credentials.tenants {
        node.create_tenant_with_token(tenant, token).await?;
    }
    node.add_admin_token(&credentials.admin_token).await?;
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
