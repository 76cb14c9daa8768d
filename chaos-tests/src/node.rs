//! One `meniscus start` process: its addresses, data directory, log, and the faults a harness
//! can inflict on it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::OnceLock;
use std::time::Duration;

use crate::{Error, Result};

/// How every node of a cluster is started.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// The `meniscus` binary.
    pub binary: PathBuf,
    /// The admin token every node bootstraps with (`MENISCUS_ADMIN_TOKEN`).
    pub admin_token: String,
    /// `--commit-interval-ms`.
    pub commit_interval_ms: u64,
    /// `--follower-indexes` (`index` or `copy`).
    pub follower_indexes: String,
    /// `--shards`, for the first nodes (which bootstrap); `None` leaves the binary's default.
    pub shards: Option<u64>,
    /// `--replication-factor`, likewise.
    pub replication_factor: Option<u64>,
    /// `--certs-dir`, holding the CA that `meniscus cert create-ca` made; each node's
    /// certificate is made there before its first start. `None`: `--insecure`.
    pub certs_dir: Option<PathBuf>,
}

/// Runs `binary ARGS DIR` (a `meniscus cert` command) and fails with its stderr.
pub fn run_cli(binary: &Path, args: &[&str], dir: &Path) -> Result<()> {
    let out = Command::new(binary).args(args).arg(dir).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Start {
            id: 0,
            reason: format!(
                "meniscus {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

/// A node process that may be running, killed, or paused.
pub struct NodeProcess {
    /// Its Raft id.
    pub id: u64,
    /// Its HTTP API address.
    pub http: SocketAddr,
    /// Its Raft address.
    pub raft: SocketAddr,
    /// Its RELP syslog listener (bound to the `default` tenant; messages name their tenant).
    pub relp: SocketAddr,
    /// How it becomes a member: named in `--initial-cluster`, or joining a running cluster.
    pub membership: Membership,
    dir: PathBuf,
    child: Option<Child>,
    paused: bool,
    removed: bool,
    starts: u32,
    ready: Option<Receiver<()>>,
}

/// How a node becomes a member of its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// One of the first voters: `--initial-cluster`, every voter's id and the address this
    /// node reaches it at (its own real address; a peer's, or the proxy in between).
    Initial(String),
    /// Added at run time: `--join URL`, announcing `advertise` (its proxy) as its Raft address.
    Join {
        /// A member's HTTP API.
        url: String,
        /// The address the others dial to reach it.
        advertise: SocketAddr,
    },
}

/// How long a node may take to listen after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

impl NodeProcess {
    /// A node that is not started yet, storing under `dir`, each of its listeners on a fixed
    /// port of `ip`.
    pub fn new(id: u64, ip: &str, dir: PathBuf) -> Result<Self> {
        Ok(NodeProcess {
            id,
            http: fixed_addr(ip)?,
            raft: fixed_addr(ip)?,
            relp: fixed_addr(ip)?,
            membership: Membership::Initial(String::new()),
            dir,
            child: None,
            paused: false,
            removed: false,
            starts: 0,
            ready: None,
        })
    }

    /// Its data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The file its stderr goes to for the `n`th start (1-based).
    pub fn log_path(&self, n: u32) -> PathBuf {
        self.dir.join(format!("node-{}.start-{n}.log", self.id))
    }

    /// The base URL of its HTTP API.
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// How many times it was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Whether its process runs (possibly paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether it is stopped with SIGSTOP.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether it was taken out of the cluster (and stopped for good).
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    /// Stops it for good after the cluster removed it: it is never restarted or checked.
    pub fn retire(&mut self) {
        self.kill();
        self.removed = true;
    }

    /// Starts the process and waits until its HTTP API listens.
    pub fn start(&mut self, settings: &NodeSettings) -> Result<()> {
        self.spawn(settings)?;
        self.wait_ready()
    }

    /// Starts the process without waiting: a cluster's first nodes only become ready together,
    /// once they can elect a leader.
    pub fn spawn(&mut self, settings: &NodeSettings) -> Result<()> {
        if self.child.is_some() || self.removed {
            return Ok(());
        }
        self.starts += 1;
        let log = File::create(self.log_path(self.starts))?;
        let mut command = Command::new(&settings.binary);
        command.args(["start", "--node-id", &self.id.to_string()]);
        match &settings.certs_dir {
            Some(dir) => {
                let id = self.id.to_string();
                if !dir.join(format!("node-{id}.crt")).exists() {
                    run_cli(
                        &settings.binary,
                        &["cert", "create-node", &id, "--certs-dir"],
                        dir,
                    )?;
                }
                command.arg("--certs-dir").arg(dir);
            }
            None => {
                command.arg("--insecure");
            }
        }
        match &self.membership {
            Membership::Initial(members) => {
                command.args(["--initial-cluster", members]);
                if let Some(shards) = settings.shards {
                    command.args(["--shards", &shards.to_string()]);
                }
                if let Some(factor) = settings.replication_factor {
                    command.args(["--replication-factor", &factor.to_string()]);
                }
            }
            Membership::Join { url, advertise } => {
                command
                    .args(["--join", url])
                    .args(["--raft-advertise", &advertise.to_string()]);
            }
        }
        let mut child = command
            .args(["--http", &self.http.to_string()])
            .args(["--raft", &self.raft.to_string()])
            .args(["--relp", &self.relp.to_string()])
            .args([
                "--commit-interval-ms",
                &settings.commit_interval_ms.to_string(),
            ])
            .args(["--follower-indexes", &settings.follower_indexes])
            .arg("--data-dir")
            .arg(self.data_dir())
            .env("MENISCUS_ADMIN_TOKEN", &settings.admin_token)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        self.ready = Some(watch_for_line(stdout, "meniscus: http listening on "));
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// Waits until a spawned process's HTTP API listens.
    pub fn wait_ready(&mut self) -> Result<()> {
        let Some(ready) = self.ready.take() else {
            return Ok(());
        };
        ready.recv_timeout(READY_TIMEOUT).map_err(|_| Error::Start {
            id: self.id,
            reason: format!(
                "it did not listen within {READY_TIMEOUT:?} (exited or hung); see {}",
                self.log_path(self.starts).display()
            ),
        })
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.paused {
                signal(&child, libc::SIGCONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// SIGSTOP: the process stays, but neither answers nor sends.
    pub fn pause(&mut self) {
        if let Some(child) = &self.child {
            signal(child, libc::SIGSTOP);
            self.paused = true;
        }
    }

    /// SIGCONT after [`NodeProcess::pause`].
    pub fn resume(&mut self) {
        if let Some(child) = &self.child {
            signal(child, libc::SIGCONT);
            self.paused = false;
        }
    }

    /// The last `lines` lines of its current log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The lines of its current log that contain every one of `words`, without the terminal
    /// colour codes the node writes.
    pub fn log_lines_with(&self, words: &[&str]) -> Vec<String> {
        let text = std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default();
        text.lines()
            .map(without_colours)
            .filter(|line| words.iter().all(|w| line.contains(w)))
            .collect()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `line` without ANSI escape sequences (`ESC [ ... letter`).
fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip up to and including the sequence's final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) on a pid we own (the child has not been reaped: we hold its `Child`).
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
}

/// Reads `stdout` on a thread, which says when a line starts with `prefix` and keeps draining
/// the pipe so the child never blocks on it.
fn watch_for_line(stdout: std::process::ChildStdout, prefix: &str) -> Receiver<()> {
    let (found, seen) = std::sync::mpsc::channel();
    let wanted = prefix.to_owned();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if line.starts_with(&wanted) {
                let _ = found.send(());
            }
            line.clear();
        }
    });
    seen
}

/// A free TCP port on `ip`, to give a node fixed addresses across restarts.
pub fn free_addr(ip: &str) -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind((ip, 0))?;
    Ok(listener.local_addr()?)
}

/// A TCP port on `ip` below the kernel's ephemeral range (32768 and up by default), so that
/// no outgoing connection borrows it while its node is down between a kill and a restart.
pub fn fixed_addr(ip: &str) -> Result<SocketAddr> {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static BASE: OnceLock<u32> = OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        (std::process::id().wrapping_mul(7919) ^ nanos) % COUNT
    });
    for _ in 0..COUNT {
        let port = FIRST + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT;
        if let Ok(listener) = std::net::TcpListener::bind((ip, port as u16)) {
            return Ok(listener.local_addr()?);
        }
    }
    Err(Error::Unexpected(format!("no free port on {ip}")))
}

/// Where `meniscus` is: `MENISCUS_BIN`, or the workspace's binary next to the running test,
/// built (or rebuilt) first with the cargo that runs the test, so a test never drives a stale
/// binary.
pub fn find_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("MENISCUS_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/meniscus
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| Error::Binary("cannot locate the target directory".into()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "-p", "meniscus", "--bin", "meniscus"]);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .map_err(|e| Error::Binary(format!("cannot run cargo build: {e}")))?;
    let binary = profile_dir.join("meniscus");
    if status.success() && binary.exists() {
        Ok(binary)
    } else {
        Err(Error::Binary(format!(
            "building {} failed ({status}); build it or set MENISCUS_BIN",
            binary.display()
        )))
    }
}
