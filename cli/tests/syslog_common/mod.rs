//! Helpers for the syslog black-box tests: a real `meniscus dev` with its syslog listeners on
//! free ports, real senders (util-linux `logger`, raw sockets), and searches over real HTTP.
//!
//! A [`SyslogNode`] SIGKILLs its process when dropped, so a failing test leaves nothing behind;
//! its data directory and log are kept, and their path printed, when the test panics.
#![allow(dead_code)] // each test file uses a different subset

pub mod rsyslog;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_meniscus");
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an event may take from sending to searchable on a loaded 2-core machine.
pub const SEARCHABLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A temporary directory for one test; kept when the test panics.
pub struct Dir {
    root: Option<tempfile::TempDir>,
    pub path: PathBuf,
}

impl Dir {
    pub fn new() -> Dir {
        let root = tempfile::Builder::new()
            .prefix("meniscus-syslog-test-")
            .tempdir()
            .expect("creating a temporary directory");
        let path = root.path().to_path_buf();
        Dir {
            root: Some(root),
            path,
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(root) = self.root.take() {
                eprintln!(
                    "test failed: data and logs kept in {}",
                    root.keep().display()
                );
            }
        }
    }
}

/// A running `meniscus dev --syslog-tcp 127.0.0.1:0 --syslog-udp 127.0.0.1:0`, with the
/// listeners that [`Listeners`] adds.
pub struct SyslogNode {
    child: Child,
    pub http: String,
    pub tcp: SocketAddr,
    pub udp: SocketAddr,
    /// Every `meniscus: NAME listening on ADDR` line: `relp`, `syslog-tls`, ...
    pub listeners: HashMap<String, SocketAddr>,
    pub admin_token: String,
    /// The `default` tenant's token.
    pub token: String,
    pub log: PathBuf,
    client: Client,
}

fn read_file(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// Listeners to start beside HTTP, syslog-tcp and syslog-udp.
#[derive(Debug, Clone, Default)]
pub struct Listeners {
    /// `--relp ADDR` (port 0 picks one; a restart passes the port it got to keep it).
    pub relp: Option<SocketAddr>,
    /// `--syslog-tls ADDR` with its `--tls-*` files.
    pub tls: Option<TlsFiles>,
    /// Further `meniscus dev` flags (`--syslog-idle-timeout-secs 2`, ...).
    pub args: Vec<String>,
}

/// The PEM files of `--syslog-tls`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub addr: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl SyslogNode {
    /// Starts a node on `dir` (a restart reuses its data) and waits for its three listen lines.
    pub fn start(dir: &Dir) -> SyslogNode {
        SyslogNode::start_with(dir, &Listeners::default())
    }

    /// Starts a node on `dir` with more listeners, and waits for every listen line.
    pub fn start_with(dir: &Dir, extra: &Listeners) -> SyslogNode {
        let data = dir.path.join("data");
        let n = std::fs::read_dir(&dir.path).map_or(0, |d| d.count());
        let log = dir.path.join(format!("node-{n}.log"));
        let mut child = Command::new(BIN)
            .arg("dev")
            .arg("--data-dir")
            .arg(&data)
            .args(["--http", "127.0.0.1:0"])
            .args(["--syslog-tcp", "127.0.0.1:0"])
            .args(["--syslog-udp", "127.0.0.1:0"])
            .args(["--commit-interval-ms", "50"])
            .args(extra.args())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("creating the node log"))
            .spawn()
            .expect("spawning meniscus dev");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut http, mut tcp, mut udp) = (None, None, None);
        let mut listeners = HashMap::new();
        let deadline = Instant::now() + START_TIMEOUT;
        while http.is_none() || tcp.is_none() || udp.is_none() || listeners.len() < extra.count() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "the node did not print its addresses; log:\n{}",
                        read_file(&log)
                    );
                }
            };
            let addr = |prefix: &str| line.strip_prefix(prefix).map(str::to_owned);
            if let Some(a) = addr("meniscus: http listening on ") {
                http = Some(format!("http://{a}"));
            } else if let Some(a) = addr("meniscus: syslog-tcp listening on ") {
                tcp = Some(a.parse().expect("tcp address"));
            } else if let Some(a) = addr("meniscus: syslog-udp listening on ") {
                udp = Some(a.parse().expect("udp address"));
            } else if let Some((name, a)) = line
                .strip_prefix("meniscus: ")
                .and_then(|l| l.split_once(" listening on "))
            {
                listeners.insert(name.to_owned(), a.parse().expect("listen address"));
            }
        }
        let creds: Value = serde_json::from_str(&read_file(&data.join("credentials.json")))
            .expect("credentials.json");
        SyslogNode {
            child,
            http: http.unwrap(),
            tcp: tcp.unwrap(),
            udp: udp.unwrap(),
            listeners,
            admin_token: creds["admin_token"].as_str().unwrap().to_owned(),
            token: creds["tenants"]["default"].as_str().unwrap().to_owned(),
            log,
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// The address of the `relp` listener.
    pub fn relp(&self) -> SocketAddr {
        self.listeners["relp"]
    }

    /// The address of the `syslog-tls` listener.
    pub fn tls(&self) -> SocketAddr {
        self.listeners["syslog-tls"]
    }

    /// Kills the node with SIGKILL (no shutdown at all) and waits for it to be gone.
    pub fn kill(mut self) {
        self.child.kill().expect("kill -9 the node");
        self.child.wait().expect("waiting for the killed node");
    }

    /// The node's log so far (stderr).
    pub fn log(&self) -> String {
        read_file(&self.log)
    }

    /// Resident memory of the node process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = read_file(Path::new(&format!("/proc/{}/status", self.child.id())));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Asks the node to stop (SIGTERM) and waits for it to exit.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the node") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the node did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The PID of the node process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET /metrics`: the Prometheus text.
    pub fn metrics(&self) -> String {
        let resp = self
            .client
            .get(format!("{}/metrics", self.http))
            .send()
            .expect("GET /metrics");
        assert!(
            resp.status().is_success(),
            "GET /metrics: {}",
            resp.status()
        );
        resp.text().expect("the metrics text")
    }

    /// The value of `NAME{listener="LISTENER"}` in a `/metrics` scrape.
    pub fn metric(&self, name: &str, listener: &str) -> u64 {
        metric(&self.metrics(), name, listener)
    }

    /// Polls `/metrics` until `NAME{listener="LISTENER"}` satisfies `ok`; returns its value.
    pub fn wait_for_metric(
        &self,
        name: &str,
        listener: &str,
        ok: impl Fn(u64) -> bool,
        timeout: Duration,
    ) -> u64 {
        self.wait_for_series(&listener_series(name, listener), ok, timeout)
    }

    /// Polls `/metrics` until the value of `series` (a name with its labels, if any)
    /// satisfies `ok`; returns it.
    fn wait_for_series(&self, series: &str, ok: impl Fn(u64) -> bool, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let value = series_value(&self.metrics(), series);
            if ok(value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{series} stayed at {value} for {timeout:?}; metrics:\n{}",
                self.metrics()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates a tenant through the admin API and returns its token.
    pub fn create_tenant(&self, name: &str) -> String {
        let resp = self
            .client
            .post(format!("{}/v1/tenants", self.http))
            .bearer_auth(&self.admin_token)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .expect("POST /v1/tenants");
        let status = resp.status();
        let body: Value = resp.json().expect("JSON answer");
        assert!(
            status.is_success(),
            "creating tenant {name}: {status} {body}"
        );
        body["token"].as_str().expect("token").to_owned()
    }

    /// `GET /v1/search?q=QUERY` as the holder of `token`: the total count, and the newest
    /// events found (up to 1000).
    pub fn search_total_as(&self, token: &str, query: &str) -> (u64, Vec<Value>) {
        let resp = self
            .client
            .get(format!("{}/v1/search", self.http))
            .bearer_auth(token)
            .query(&[("q", query), ("limit", "1000")])
            .send()
            .expect("GET /v1/search");
        let status = resp.status();
        let body: Value = resp.json().expect("JSON answer");
        assert!(status.is_success(), "search {query:?}: {status} {body}");
        let total = body["total"].as_u64().expect("total");
        (
            total,
            body["events"].as_array().cloned().unwrap_or_default(),
        )
    }

    /// The `message` of every event `query` finds in the `default` tenant, read in pages of
    /// 10,000 with the search cursor.
    pub fn all_messages(&self, query: &str) -> Vec<String> {
        let mut messages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params = vec![("q", query.to_owned()), ("limit", "10000".to_owned())];
            if let Some(c) = cursor.take() {
                params.push(("cursor", c));
            }
            let resp = self
                .client
                .get(format!("{}/v1/search", self.http))
                .bearer_auth(&self.token)
                .query(&params)
                .send()
                .expect("GET /v1/search");
            let status = resp.status();
            let body: Value = resp.json().expect("JSON answer");
            assert!(status.is_success(), "search {query:?}: {status} {body}");
            let events = body["events"].as_array().cloned().unwrap_or_default();
            messages.extend(
                events
                    .iter()
                    .map(|e| e["message"].as_str().unwrap_or_default().to_owned()),
            );
            match body["next"].as_str() {
                Some(next) if !events.is_empty() => cursor = Some(next.to_owned()),
                _ => return messages,
            }
        }
    }

    /// The events `query` finds in the tenant of `token` (up to 1000).
    pub fn search_as(&self, token: &str, query: &str) -> Vec<Value> {
        self.search_total_as(token, query).1
    }

    /// How many events `query` finds in the `default` tenant.
    pub fn count(&self, query: &str) -> u64 {
        self.search_total_as(&self.token, query).0
    }

    /// Searches the `default` tenant.
    pub fn search(&self, query: &str) -> Vec<Value> {
        self.search_as(&self.token, query)
    }

    /// Polls until `query` finds at least `n` events in the tenant of `token`; returns the
    /// newest (up to 1000).
    pub fn wait_for_as(&self, token: &str, query: &str, n: u64) -> Vec<Value> {
        let deadline = Instant::now() + SEARCHABLE_TIMEOUT;
        loop {
            let (total, found) = self.search_total_as(token, query);
            if total >= n {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "{query:?} found {total} of {n} events after {SEARCHABLE_TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls the `default` tenant until `query` finds at least `n` events.
    pub fn wait_for(&self, query: &str, n: u64) -> Vec<Value> {
        self.wait_for_as(&self.token, query, n)
    }

    /// Polls `/metrics` until every applied event is committed to its index. (An event is
    /// searchable before it is indexed; the indexer's first commit allocates its buffers.)
    pub fn wait_until_indexed(&self) {
        self.wait_for_series(
            "meniscus_indexing_backlog_bytes",
            |backlog| backlog == 0,
            SEARCHABLE_TIMEOUT,
        );
    }

    /// A TCP connection to the syslog listener.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.tcp).expect("connecting to syslog-tcp");
        stream
            .set_write_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        stream
    }

    /// Sends `bytes` on a fresh TCP connection and closes it.
    pub fn send_tcp(&self, bytes: &[u8]) {
        let mut stream = self.connect();
        stream.write_all(bytes).expect("writing to syslog-tcp");
    }
}

impl Listeners {
    fn args(&self) -> Vec<String> {
        let mut args = self.args.clone();
        if let Some(relp) = self.relp {
            args.extend(["--relp".to_owned(), relp.to_string()]);
        }
        if let Some(tls) = &self.tls {
            args.extend(["--syslog-tls".to_owned(), tls.addr.to_string()]);
            args.extend(["--tls-cert".to_owned(), tls.cert.display().to_string()]);
            args.extend(["--tls-key".to_owned(), tls.key.display().to_string()]);
            if let Some(ca) = &tls.client_ca {
                args.extend(["--tls-client-ca".to_owned(), ca.display().to_string()]);
            }
        }
        args
    }

    /// How many listen lines they add.
    fn count(&self) -> usize {
        usize::from(self.relp.is_some()) + usize::from(self.tls.is_some())
    }
}

impl Drop for SyslogNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the series `NAME{listener="LISTENER"}` in the Prometheus text `body`.
pub fn metric(body: &str, name: &str, listener: &str) -> u64 {
    series_value(body, &listener_series(name, listener))
}

/// `NAME{listener="LISTENER"}`.
fn listener_series(name: &str, listener: &str) -> String {
    format!("{name}{{listener=\"{listener}\"}}")
}

/// The value of `series` (a name with its labels, if any) in the Prometheus text `body`.
fn series_value(body: &str, series: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing from:\n{body}"))
        .trim()
        .parse()
        .expect("a whole number")
}

/// A word unique to one test run, to search for.
pub fn marker(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}{nanos}")
}

/// Connects over plain TCP, writes `bytes`, and reads until the peer closes (at most 30 s).
pub fn send_plain(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = TcpStream::connect(addr).expect("connecting");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
}

/// `bytes` as an RFC 6587 octet-counted frame.
pub fn octet_counted(msg: &str) -> Vec<u8> {
    format!("{} {msg}", msg.len()).into_bytes()
}

/// Runs util-linux `logger` with `args`, asserting it succeeds.
pub fn logger(args: &[&str]) {
    let out = Command::new("logger")
        .args(args)
        .output()
        .expect("running logger (util-linux, Debian package bsdutils)");
    assert!(
        out.status.success(),
        "logger {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
