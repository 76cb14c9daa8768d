//! Three `meniscus start` processes bootstrapped together.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// A three-node cluster of real processes.
pub struct Cluster {
    pub http: reqwest::blocking::Client,
    pub bases: Vec<String>,
    pub rafts: Vec<SocketAddr>,
    pub admin: String,
    pub token: String,
    pub pids: Vec<u32>,
    /// Each node's stderr (its log).
    pub logs: Vec<std::path::PathBuf>,
    _procs: Vec<super::KillOnDrop>,
    _dirs: Vec<tempfile::TempDir>,
}

/// Starts three nodes with `security` flags (`--certs-dir DIR` or `--insecure`); returns
/// once every one's HTTP API listens.
pub fn start(security: &[String]) -> Cluster {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let rafts: Vec<SocketAddr> = (0..3).map(|_| super::free_addr()).collect();
    let members = (0..3)
        .map(|i| format!("{}={}", i + 1, rafts[i]))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs = Vec::new();
    let mut readers = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let mut child = Command::new(super::BIN)
            .args(["start", "--node-id", &(i + 1).to_string()])
            .args(["--initial-cluster", &members, "--http", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path())
            .args(security)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().with_extension("log")).unwrap())
            .spawn()
            .unwrap();
        readers.push(std::io::BufReader::new(child.stdout.take().unwrap()));
        procs.push(super::KillOnDrop(child));
    }
    let bases = readers
        .iter_mut()
        .map(|reader| format!("http://{}", super::ready_addr(reader)))
        .collect();
    let creds: Value =
        serde_json::from_slice(&std::fs::read(dirs[0].path().join("credentials.json")).unwrap())
            .unwrap();
    Cluster {
        http: super::client(Duration::from_secs(30)),
        bases,
        rafts,
        admin: creds["admin_token"].as_str().unwrap().to_owned(),
        token: creds["tenants"]["default"].as_str().unwrap().to_owned(),
        pids: procs.iter().map(|p| p.0.id()).collect(),
        logs: dirs
            .iter()
            .map(|d| d.path().with_extension("log"))
            .collect(),
        _procs: procs,
        _dirs: dirs,
    }
}

impl Cluster {
    pub fn get(&self, node: usize, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.bases[node]))
            .bearer_auth(token)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    pub fn total(&self, node: usize, q: &str) -> u64 {
        let (status, body) = self.get(node, &format!("/v1/search?q={q}&limit=1"), &self.token);
        assert_eq!(status, 200, "{body}");
        body["total"].as_u64().unwrap()
    }

    /// Waits until `q` finds at least `n` events on `node` (a follower copies the leader's
    /// index about one commit interval later).
    pub fn wait_total(&self, node: usize, q: &str, n: u64) {
        let found = super::poll_until(Duration::from_secs(20), || {
            (self.total(node, q) >= n).then_some(())
        });
        assert!(
            found.is_some(),
            "node {node} never found {n} events for {q:?}"
        );
    }

    /// A metric's value on `node`.
    pub fn metric(&self, node: usize, name: &str) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.bases[node]))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .map_or(0, |v| v.parse().unwrap())
    }

    /// The event shard (Raft group) holding the `default` tenant.
    pub fn default_shard(&self) -> u64 {
        let (_, status) = self.get(0, "/v1/cluster", &self.admin);
        status["shards"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, tenants)| tenants.as_array().unwrap().iter().any(|t| t == "default"))
            .and_then(|(id, _)| id.parse().ok())
            .expect("the default tenant is placed")
    }

    /// Waits until writes go through.
    pub fn wait_writable(&self) {
        let ok = super::poll_until(Duration::from_secs(30), || {
            let r = self
                .http
                .post(format!("{}/v1/events", self.bases[0]))
                .bearer_auth(&self.token)
                .json(&json!({"message": "warm-up"}))
                .send()
                .ok()?;
            r.status().is_success().then_some(())
        });
        assert!(ok.is_some(), "the cluster takes no writes");
    }
}
