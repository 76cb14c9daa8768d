//! Process-level cluster harness: starts real `meniscus` nodes, breaks them on purpose, and
//! checks that nothing acknowledged is lost.
//!
//! It drives only the binary and its public HTTP API, as an operator would.
//!
//! ```no_run
//! use std::time::Duration;
//! use chaos_tests::{find_binary, run, ChaosConfig};
//!
//! // 3 nodes, the plan of seed 42, 30 s of faults of every kind.
//! let config = ChaosConfig::new(3, 42, Duration::from_secs(30), find_binary()?);
//! let report = run(&config)?;
//! println!("{}", report.summary()); // chaos: seed=42 nodes=3 faults=... lost=0 duplicated=0 ...
//! report.verdict()?; // Err on any loss, duplicate, leak or node that did not recover
//! # Ok::<(), chaos_tests::Error>(())
//! ```
//!
//! # Layout
//! - `node`: one node process and the faults it can suffer (kill, pause).
//! - `cluster`: N nodes with fixed addresses, leader discovery, tenant setup.
//! - `client`: the HTTP calls (publish, local search, status).
//! - `proxy`: a fault-injecting TCP proxy for one directed node-to-node link.
//! - `network`: the proxies of every link, and partitions made of them.
//! - `workload`: publishers that log every acknowledgement, and the replica checker.
//! - `relp`: a RELP publisher that resends what was not acknowledged, as rsyslog's omrelp.
//! - `plan`: a seeded, printable schedule of faults.
//! - `runner`: a whole chaos run: cluster, workload, plan, checker, summary and timeline
//!   (with `background`: tenant creation, token rotation and searches during the faults, and
//!   `timeline`: the per-fault timeline file).
#![deny(missing_docs)]

mod background;
pub mod client;
pub mod cluster;
pub mod network;
pub mod node;
pub mod plan;
pub mod proxy;
pub mod relp;
pub mod runner;
mod timeline;
pub mod workload;

pub use client::{Client, Published};
pub use cluster::{Cluster, ClusterSpec};
pub use network::Network;
pub use node::{find_binary, Membership, NodeProcess};
pub use plan::{parse_duration, Fault, FaultKind, Plan, Step, Target};
pub use proxy::{LinkState, Proxy};
pub use relp::RelpSession;
pub use runner::{run, ChaosConfig, ChaosReport, FaultWindow};
pub use workload::{
    check_replica, AckLog, Endpoint, Endpoints, ReplicaReport, Routing, TenantLoad, Tokens,
    Workload, WorkloadOptions,
};

/// What can go wrong while driving a cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Spawning, files, sockets.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A request that got no HTTP answer.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// An HTTP answer that is not a success.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The body.
        body: String,
    },
    /// A node did not come up.
    #[error("node {id} did not start: {reason}")]
    Start {
        /// Its id.
        id: u64,
        /// Why.
        reason: String,
    },
    /// The binary cannot be found or built.
    #[error("meniscus binary: {0}")]
    Binary(String),
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A chaos run found acknowledged events lost or duplicated, a leak between tenants, or a
    /// node that did not recover.
    #[error("{0}")]
    Unsafe(String),
    /// An answer the harness did not expect.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// Results of the harness.
pub type Result<T> = std::result::Result<T, Error>;
