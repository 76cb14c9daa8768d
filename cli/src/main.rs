//! `meniscus`: run a node, administer tenants, send and search events.

mod bench;
mod cert;
mod chaos;
mod client;
mod config;
mod credentials;
mod dev;
mod fdlimit;
mod logging;
mod parse;
mod pipeline;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// tantivy's indexing allocates and frees many small buffers per document; mimalloc takes
/// noticeably less CPU for that than glibc's allocator (see the README's benchmark section).
/// Counted per thread, so a tenant's pipeline that grows without end is stopped at its memory
/// limit instead of taking the node down (`meniscus_pipeline::memory`).
#[global_allocator]
static GLOBAL: meniscus_pipeline::memory::CountingAllocator<mimalloc::MiMalloc> =
    meniscus_pipeline::memory::CountingAllocator(mimalloc::MiMalloc);

/// Meniscus: durable, multi-tenant event collection and search.
#[derive(Parser, Debug)]
#[command(name = "meniscus", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr: human or json.
    #[arg(long, global = true, default_value = "human", value_parser = ["human", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a complete single-node Meniscus on a local data directory (creates the tenant
    /// `default` and DIR/credentials.json on first start).
    #[command(
        args_override_self = true,
        mut_arg("node_id", |a| a.hide(true)),
        mut_arg("raft", |a| a.hide(true)),
        mut_arg("raft_advertise", |a| a.hide(true)),
        mut_arg("initial_cluster", |a| a.hide(true)),
        mut_arg("join", |a| a.hide(true)),
        mut_arg("replace", |a| a.hide(true)),
        mut_arg("shards", |a| a.hide(true)),
        mut_arg("replication_factor", |a| a.hide(true)),
        mut_arg("follower_indexes", |a| a.hide(true)),
        mut_arg("certs_dir", |a| a.hide(true)),
        mut_arg("insecure", |a| a.hide(true))
    )]
    Dev(DevArgs),
    /// Run one node of a cluster: the same node as `dev`, with `--node-id`, `--raft` and
    /// `--initial-cluster ID=ADDR,...` (every voter, the same list on every node, like etcd's
    /// --initial-cluster). The node with the lowest id bootstraps the admin and `default` tokens
    /// into its credentials.json (the admin token is MENISCUS_ADMIN_TOKEN when set).
    #[command(args_override_self = true)]
    Start(DevArgs),
    /// A tenant's processing pipelines: VRL programs that parse, normalize, enrich, redact or
    /// drop each event before it is stored.
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    /// Administer tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Inspect and change cluster membership.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Make the certificates that authenticate nodes to each other: a cluster CA, then one
    /// certificate per node (`meniscus start --certs-dir`).
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Publish events from a file or stdin (NDJSON, or plain text lines as messages).
    Send(client::SendArgs),
    /// Search a tenant's events; prints one JSON event per line, newest first.
    Search(client::SearchArgs),
    /// Measure ingest throughput and acknowledgement-to-searchable latency on a fresh local node.
    Bench(bench::BenchArgs),
    /// Measure how one node carries many tenants: creates them on a fresh `meniscus dev`
    /// child process, each publishing a few events, and reports the node's memory, threads,
    /// open files and disk as the count grows; then each tenant (or a sample) checks it finds
    /// its own events and none of another's.
    BenchTenants(bench::tenants::TenantsArgs),
    /// Parse syslog lines from stdin and print each as the JSON event it becomes.
    Parse(parse::ParseArgs),
    /// Run a seeded chaos schedule on a local cluster of this binary (kills, pauses,
    /// partitions, delays, power loss under load) and check nothing acknowledged is lost.
    Chaos(chaos::ChaosArgs),
}

#[derive(Args, Debug)]
struct DevArgs {
    /// Data directory (created if missing).
    #[arg(long, default_value = "./meniscus-data", env = "MENISCUS_DATA_DIR")]
    data_dir: PathBuf,
    /// HTTP API listen address (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Syslog over TCP listen address (RFC 6587 framing), bound to the `default` tenant.
    #[arg(long)]
    syslog_tcp: Option<SocketAddr>,
    /// Syslog over UDP listen address, bound to the `default` tenant.
    #[arg(long)]
    syslog_udp: Option<SocketAddr>,
    /// RELP listen address (what rsyslog's omrelp speaks; each message is acknowledged once
    /// committed), bound to the `default` tenant.
    #[arg(long)]
    relp: Option<SocketAddr>,
    /// Syslog over TLS listen address (RFC 5425), bound to the `default` tenant unless
    /// --tls-client-ca is given. Needs --tls-cert and --tls-key.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    syslog_tls: Option<SocketAddr>,
    /// PEM file with the TLS server certificate chain (leaf first), for --syslog-tls.
    #[arg(long, requires = "syslog_tls")]
    tls_cert: Option<PathBuf>,
    /// PEM file with the TLS server private key, for --syslog-tls.
    #[arg(long, requires = "syslog_tls")]
    tls_key: Option<PathBuf>,
    /// PEM file with CA certificates for client-certificate authentication on --syslog-tls:
    /// clients must present a certificate it signed, whose CN (or first DNS name) is the tenant.
    #[arg(long, requires = "syslog_tls")]
    tls_client_ca: Option<PathBuf>,
    /// Syslog over TCP, TLS and RELP: close a connection whose sender sends nothing for this
    /// many seconds (0 keeps idle connections open).
    #[arg(long, default_value_t = 300)]
    syslog_idle_timeout_secs: u64,
    /// Syslog over TCP, TLS and RELP: most connections each listener serves at once; more wait
    /// in the accept backlog. The open-file limit is raised to fit (up to its hard limit).
    #[arg(long, default_value_t = meniscus_api::syslog::DEFAULT_MAX_CONNECTIONS)]
    syslog_max_connections: usize,
    /// Milliseconds between index commits. Events are searchable once committed to the Raft
    /// log, before they are indexed, for the queries the unindexed tail can answer (words,
    /// phrases, exact fields); other queries see events once an index commit has them.
    #[arg(long, default_value_t = 500)]
    commit_interval_ms: u64,
    /// How much nicer (lower CPU priority) indexing runs than the rest of the node, 0-19:
    /// taking events in and searches come first, and the index catches up when the CPU is
    /// free. 0 indexes at the node's own priority.
    #[arg(long, default_value_t = meniscus_actors::IndexerSettings::default().nice,
          value_parser = clap::value_parser!(i32).range(0..=19))]
    indexer_nice: i32,
    /// MiB of events committed but not yet indexed above which the node takes no more: HTTP
    /// publishes are answered 503 (retry) and syslog listeners stop reading until indexing
    /// catches up. Searches scan these events, so a larger backlog makes some searches slower.
    #[arg(long, default_value_t = meniscus_actors::DEFAULT_MAX_INDEXING_BACKLOG_BYTES >> 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_indexing_backlog_mib: u64,
    /// Most HTTP connections served at once; more wait in the listen backlog. The open-file
    /// limit is raised to fit (up to its hard limit), beside the node's own files.
    #[arg(long, default_value_t = meniscus_api::DEFAULT_MAX_CONNECTIONS)]
    http_max_connections: usize,
    /// Close an HTTP connection that has not sent a complete request header within this many
    /// seconds of connecting or of its last answer (slow clients, idle keep-alive).
    #[arg(long, default_value_t = 30)]
    http_header_timeout_secs: u64,
    /// Serve the HTTP API over HTTPS with this PEM certificate chain (leaf first), e.g. a
    /// node certificate from `meniscus cert create-node ID --host NAME_OR_IP`. Needs
    /// --http-tls-key.
    #[arg(long, requires = "http_tls_key")]
    http_tls_cert: Option<PathBuf>,
    /// The PEM private key of --http-tls-cert.
    #[arg(long, requires = "http_tls_cert")]
    http_tls_key: Option<PathBuf>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Largest single event in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_event_bytes: usize,
    /// Most events in one publish request.
    #[arg(long, default_value_t = 100_000)]
    max_batch_events: usize,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// TOML file with any of these settings, keyed like the flags (`node-id = 2`,
    /// `syslog-tcp = "0.0.0.0:6514"`); flags on the command line win.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Cluster membership (for `meniscus start`).
#[derive(Args, Debug)]
struct ClusterArgs {
    /// This node's id in --initial-cluster.
    #[arg(long, default_value_t = 1)]
    node_id: u64,
    /// Node-to-node (Raft) listen address; defaults to this node's address in --initial-cluster.
    #[arg(long)]
    raft: Option<SocketAddr>,
    /// The address other nodes dial to reach this node's --raft listener, when it differs (a
    /// proxy, NAT or port forward in between). A joining node announces it; with
    /// --initial-cluster it must be this node's address there. Defaults to --raft.
    #[arg(long)]
    raft_advertise: Option<SocketAddr>,
    /// Directory with the cluster's certificates (made by `meniscus cert`): ca.crt and this
    /// node's node-ID.crt and node-ID.key. Every peer link is then TLS with certificates both
    /// ways, and a peer is the node its certificate names. A cluster needs this or --insecure.
    #[arg(long, conflicts_with = "insecure")]
    certs_dir: Option<PathBuf>,
    /// Run peer links in plain text, unauthenticated: anyone who can reach --raft can steer
    /// the cluster (make themselves admin, read every tenant). For tests and demos only.
    #[arg(long)]
    insecure: bool,
    /// Every voter as ID=ADDR pairs, comma separated, e.g. 1=10.0.0.1:7000,2=10.0.0.2:7000.
    #[arg(long, value_parser = parse_members, conflicts_with = "join")]
    initial_cluster: Option<Members>,
    /// Join a running cluster through any member's HTTP API, e.g. http://10.0.0.1:8080 (needs
    /// --node-id, a new id, and --raft). The admin token comes from MENISCUS_ADMIN_TOKEN or
    /// --admin-token-file. The node receives its data by snapshot and votes once caught up.
    #[arg(long, requires = "raft")]
    join: Option<String>,
    /// With --join: take the place of this voter. The newcomer catches up as a learner while
    /// the old node keeps voting, then one joint configuration change makes it a voter and
    /// removes the old one (say, to move a node to new hardware without running short).
    #[arg(long, requires = "join", value_name = "NODE_ID")]
    replace: Option<u64>,
    /// File holding the admin token: installed at bootstrap, and used by --join.
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Raft log entries kept for a member that is down; past this the log is compacted anyway
    /// and the member gets a snapshot when it returns.
    #[arg(long, default_value_t = 20_000)]
    max_raft_log_entries: u64,
    /// Seconds between Raft log compactions.
    #[arg(long, default_value_t = 30)]
    compact_interval_secs: u64,
    /// Event shards made at bootstrap (with --initial-cluster) [default: 4]: each is a Raft
    /// group of its own that carries the events of the tenants placed in it, while the
    /// metadata group carries tenants and tokens. New tenants go to the shard with the fewest.
    /// 0 keeps every tenant's events in the metadata group. A cluster keeps the shards it was
    /// bootstrapped with.
    #[arg(long, requires = "initial_cluster")]
    shards: Option<u64>,
    /// How many nodes hold a replica of each shard [default: 3]: placed balanced over the
    /// members, no two on one node (3 survives one node down, 5 two; fewer members hold one
    /// each). 0 puts every shard on every member. Replicas move to nodes that join and off
    /// nodes that are removed. Publishes and searches on a node without a replica are served
    /// by one with it.
    #[arg(long, requires = "initial_cluster")]
    replication_factor: Option<u64>,
    /// How a follower keeps its tenant indexes: `copy` the leader's index files after each of
    /// the leader's commits (one replica's worth of indexing CPU for the whole cluster; a
    /// follower's `read=local` searches lag the leader's by about one commit interval), or
    /// `index` every event itself. A node that becomes leader indexes from its Raft log.
    #[arg(long, value_enum, default_value_t = FollowerIndexes::Copy)]
    follower_indexes: FollowerIndexes,
}

/// See `--follower-indexes`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum FollowerIndexes {
    /// Every replica indexes every event.
    Index,
    /// Followers copy the leader's index files.
    Copy,
}

/// Voters: id and Raft address.
#[derive(Debug, Clone)]
struct Members(Vec<(u64, SocketAddr)>);

fn parse_members(s: &str) -> Result<Members, String> {
    let mut members = Vec::new();
    for pair in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (id, addr) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?}: expected ID=ADDR"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("{id:?}: a node id is a positive number"))?;
        if id == 0 {
            return Err("node id 0 is reserved; ids start at 1".into());
        }
        let addr: SocketAddr = addr.trim().parse().map_err(|e| format!("{addr:?}: {e}"))?;
        if members.iter().any(|(other, _)| *other == id) {
            return Err(format!("node id {id} appears twice"));
        }
        members.push((id, addr));
    }
    if members.is_empty() {
        return Err("no members".into());
    }
    Ok(Members(members))
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Show nodes, the Raft group (leader, voters, learners, commit and applied index, lag per
    /// replica) and which tenants it holds, as the node asked sees them (JSON).
    Status {
        #[command(flatten)]
        admin: client::AdminConn,
    },
    /// Take a node out of the cluster (a leader hands leadership over first).
    Remove {
        /// The node's id.
        node: u64,
        #[command(flatten)]
        admin: client::AdminConn,
    },
}

#[derive(Subcommand, Debug)]
enum TenantCommand {
    /// Create a tenant and print its token (shown once).
    Create {
        /// Tenant name: 1 to 63 of a-z, 0-9, '-' and '_'.
        name: String,
        #[command(flatten)]
        admin: client::AdminConn,
    },
    /// Give a tenant a new token; the previous ones keep working for the grace period.
    RotateToken {
        /// Tenant name.
        name: String,
        /// Seconds the previous tokens keep working (0 revokes them now).
        #[arg(long)]
        grace_seconds: Option<u64>,
        #[command(flatten)]
        admin: client::AdminConn,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        admin: client::AdminConn,
    },
}

/// Everything a node writes (its data directory: events, tokens, the Raft log) is its owner's
/// alone, whatever umask it was started with: directories 0700, files 0600.
fn private_files() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_from(config::expand(
        std::env::args_os().collect(),
        &<Cli as clap::CommandFactory>::command(),
    )?);
    logging::init(&cli.log_format);
    if matches!(cli.command, Command::Dev(_) | Command::Start(_)) {
        private_files();
    }
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Start(args)
            if args.cluster.initial_cluster.is_none() && args.cluster.join.is_none() =>
        {
            anyhow::bail!("meniscus start needs --initial-cluster ID=ADDR,... or --join URL (use `meniscus dev` for one node)")
        }
        Command::Start(args) => dev::run(args).await,
        Command::Tenant(TenantCommand::Create { name, admin }) => {
            client::tenant_create(&admin, &name).await
        }
        Command::Tenant(TenantCommand::RotateToken {
            name,
            grace_seconds,
            admin,
        }) => client::tenant_rotate(&admin, &name, grace_seconds).await,
        Command::Tenant(TenantCommand::List { admin }) => client::tenant_list(&admin).await,
        Command::Cluster(ClusterCommand::Status { admin }) => client::cluster_status(&admin).await,
        Command::Cluster(ClusterCommand::Remove { node, admin }) => {
            client::cluster_remove(&admin, node).await
        }
        Command::Cert(command) => cert::run(command),
        Command::Pipeline(command) => pipeline::run(command).await,
        Command::Send(args) => client::send(args).await,
        Command::Search(args) => client::search(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::BenchTenants(args) => bench::tenants::run(args).await,
        Command::Parse(args) => parse::run(args),
        Command::Chaos(args) => chaos::run(args).await,
    }
}
