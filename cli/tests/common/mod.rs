//! Shared helpers for the black-box tests: run the real `meniscus` binary on a temporary data
//! directory and talk to it over real HTTP.
//!
//! Every spawned node is owned by a [`Node`] whose `Drop` SIGKILLs it, so a failing test never
//! leaves a process behind. A [`TestDir`] keeps its files (data and node logs) when the test
//! panics, and says where.
#![allow(dead_code)] // each test file uses a different subset

pub mod cluster;

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{json, Value};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_meniscus");

/// How long a node may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long anything may take to become searchable after its acknowledgement (the default commit
/// interval is 500 ms; this is generous for a loaded 2-core machine).
pub const SEARCHABLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Reads a node's stdout until its ready line; the HTTP address it names (`IP:PORT`).
/// Panics when the node exits first.
pub fn ready_addr(stdout: &mut impl BufRead) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "a node exited before it was ready"
        );
        if let Some(addr) = line.trim().strip_prefix("meniscus: http listening on ") {
            return addr.to_owned();
        }
    }
}

/// A process's resident memory in KiB, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Node ids [`certs_dir`] has certificates for.
pub const CERTIFIED_NODES: u64 = 8;

/// A directory with a cluster CA and certificates for nodes 1 to [`CERTIFIED_NODES`], made
/// once per test process with the README's `meniscus cert` commands; start nodes with
/// `--certs-dir` it.
pub fn certs_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("meniscus-test-certs-")
            .tempdir()
            .expect("a temporary directory");
        let run = |args: &[&str]| {
            let out = Command::new(BIN)
                .args(args)
                .arg("--certs-dir")
                .arg(dir.path())
                .output()
                .expect("running meniscus cert");
            assert!(
                out.status.success(),
                "meniscus {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["cert", "create-ca"]);
        for id in 1..=CERTIFIED_NODES {
            run(&["cert", "create-node", &id.to_string()]);
        }
        dir
    })
    .path()
}

/// `--certs-dir DIR` for a cluster node's command line.
pub fn certs_args() -> [String; 2] {
    ["--certs-dir".to_owned(), certs_dir().display().to_string()]
}

/// A temporary directory holding a node's data directory (`data/`) and its logs (`node-N.log`).
/// Kept on disk, with its path printed, when the test panics.
pub struct TestDir {
    root: Option<tempfile::TempDir>,
    path: PathBuf,
    starts: AtomicUsize,
}

impl TestDir {
    pub fn new() -> TestDir {
        let root = tempfile::Builder::new()
            .prefix("meniscus-test-")
            .tempdir()
            .expect("creating a temporary directory");
        let path = root.path().to_path_buf();
        TestDir {
            root: Some(root),
            path,
            starts: AtomicUsize::new(0),
        }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The node's `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.path.join("data")
    }

    fn next_log(&self) -> PathBuf {
        let n = self.starts.fetch_add(1, Ordering::SeqCst);
        self.path.join(format!("node-{n}.log"))
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(root) = self.root.take() {
                let kept = root.keep();
                eprintln!("test failed: data and node logs kept in {}", kept.display());
            }
        }
    }
}

/// The tokens `meniscus dev` writes to credentials.json on first start.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub admin: String,
    /// The `default` tenant's token.
    pub default: String,
}

/// A running `meniscus dev`. Dropping it SIGKILLs the process.
pub struct Node {
    child: Child,
    pub pid: u32,
    pub port: u16,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub data_dir: PathBuf,
    pub creds: Credentials,
    pub log: PathBuf,
    pub http: Client,
}

/// An HTTP answer: status and JSON body (`Value::Null` if the body is not JSON).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
}

impl Resp {
    /// The error message of an error answer (`""` if none).
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }

    /// The error code of an error answer (`""` if none).
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// A blocking HTTP client with a timeout (a hung node fails the test instead of hanging it).
pub fn client(timeout: Duration) -> Client {
    Client::builder()
        .timeout(timeout)
        .build()
        .expect("building the HTTP client")
}

fn tail(path: &Path, max: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let start = s.len().saturating_sub(max);
    let start = (start..=s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    s[start..].to_owned()
}

impl Node {
    /// Starts `meniscus dev` on `dir`, panicking (with the node's log) if it does not come up.
    pub fn start(dir: &TestDir, extra: &[&str]) -> Node {
        Node::try_start(dir, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a node, retrying up to `attempts` times; returns the node and the errors of the
    /// failed attempts (a restart right after SIGKILL should not need any).
    pub fn start_with_retry(dir: &TestDir, extra: &[&str], attempts: usize) -> (Node, Vec<String>) {
        let mut failures = Vec::new();
        for _ in 0..attempts {
            match Node::try_start(dir, extra) {
                Ok(node) => return (node, failures),
                Err(e) => {
                    failures.push(e);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        panic!(
            "the node did not start in {attempts} attempts:\n{}",
            failures.join("\n----\n")
        );
    }

    /// Starts `meniscus dev --data-dir DIR --http 127.0.0.1:0 EXTRA...` and waits for its ready line.
    pub fn try_start(dir: &TestDir, extra: &[&str]) -> Result<Node, String> {
        let data_dir = dir.data_dir();
        let log = dir.next_log();
        let log_file =
            File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let mut child = Command::new(BIN)
            .arg("dev")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--http", "127.0.0.1:0"])
            .args(extra)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .map_err(|e| format!("spawning {BIN}: {e}"))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            // The first line is the ready line; keep draining the rest so the node never blocks.
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let fail = |child: &mut Child, why: String| {
            let _ = child.kill();
            let status = child.wait().ok();
            format!(
                "node (pid {pid}) did not start: {why}; exit status {status:?}; log {}:\n{}",
                log.display(),
                tail(&log, 4000)
            )
        };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(fail(
                    &mut child,
                    format!("no ready line in {START_TIMEOUT:?}"),
                ))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(fail(
                    &mut child,
                    "stdout closed without a ready line".into(),
                ))
            }
        };
        let prefix = "meniscus: http listening on ";
        let Some(addr) = line.strip_prefix(prefix) else {
            return Err(fail(
                &mut child,
                format!("unexpected first stdout line {line:?}"),
            ));
        };
        let port: u16 = match addr.rsplit(':').next().and_then(|p| p.trim().parse().ok()) {
            Some(p) => p,
            None => return Err(fail(&mut child, format!("no port in {line:?}"))),
        };
        let creds_path = data_dir.join("credentials.json");
        let creds: Value = match std::fs::read(&creds_path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                return Err(fail(
                    &mut child,
                    format!("reading {}: {e}", creds_path.display()),
                ))
            }
        };
        let creds = Credentials {
            admin: creds["admin_token"].as_str().unwrap_or_default().to_owned(),
            default: creds["tenants"]["default"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        if creds.admin.is_empty() || creds.default.is_empty() {
            return Err(fail(
                &mut child,
                format!("credentials.json lacks tokens: {creds:?}"),
            ));
        }
        Ok(Node {
            child,
            pid,
            port,
            base: format!("http://127.0.0.1:{port}"),
            data_dir,
            creds,
            log,
            http: client(Duration::from_secs(60)),
        })
    }

    /// Spawns `meniscus dev` on `dir` and SIGKILLs it after `delay`, ready or not (a crash
    /// during start-up). Returns whether the ready line had been printed.
    pub fn spawn_and_kill_after(dir: &TestDir, delay: Duration) -> bool {
        let log = dir.next_log();
        let mut child = Command::new(BIN)
            .arg("dev")
            .arg("--data-dir")
            .arg(dir.data_dir())
            .args(["--http", "127.0.0.1:0"])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(File::create(&log).expect("creating the log")))
            .spawn()
            .expect("spawning meniscus");
        let stdout = child.stdout.take().expect("stdout is piped");
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            line.starts_with("meniscus: http listening on ")
        });
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        reader.join().unwrap_or(false)
    }

    /// SIGTERM, then waits (up to `timeout`) for the exit status. Panics if it does not exit.
    pub fn sigterm(mut self, timeout: Duration) -> ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("running kill")
            .success();
        assert!(ok, "kill -TERM {} failed", self.pid);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the node") {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "node {} did not exit within {timeout:?} of SIGTERM; log:\n{}",
                    self.pid,
                    tail(&self.log, 4000)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn sigkill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The end of this node's log (stderr).
    pub fn log_tail(&self) -> String {
        tail(&self.log, 4000)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn healthz(&self) -> u16 {
        self.get("/healthz", None).status
    }

    pub fn readyz(&self) -> u16 {
        self.get("/readyz", None).status
    }

    /// The value of the series `series` (name and labels, as /metrics writes them).
    pub fn metric(&self, series: &str) -> u64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
            .parse()
            .unwrap()
    }

    /// GET with an optional bearer token.
    pub fn get(&self, path: &str, token: Option<&str>) -> Resp {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        send(req)
    }

    /// POST a JSON body with an optional bearer token.
    pub fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Resp {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        send(req)
    }

    /// POST /v1/events with any content type (or none) and any body.
    pub fn post_events(
        &self,
        token: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Vec<u8>>,
    ) -> Resp {
        post_events(&self.http, &self.base, token, content_type, body.into())
            .unwrap_or_else(|e| panic!("POST /v1/events failed: {e}"))
    }

    /// Publishes events as a JSON array (or one object); panics unless 200. Returns the answer.
    pub fn publish_json(&self, token: &str, body: &Value) -> Value {
        let r = self.post_events(
            Some(token),
            Some("application/json"),
            serde_json::to_vec(body).unwrap(),
        );
        assert_eq!(r.status, 200, "publish answered {r:?}");
        assert!(r.body["commit_index"].as_u64().is_some(), "{r:?}");
        r.body
    }

    /// Publishes events as NDJSON; panics unless 200. Returns the answer.
    pub fn publish_ndjson(&self, token: &str, events: &[Value]) -> Value {
        let r = self.post_events(Some(token), Some("application/x-ndjson"), ndjson(events));
        assert_eq!(r.status, 200, "publish answered {r:?}");
        assert!(r.body["commit_index"].as_u64().is_some(), "{r:?}");
        r.body
    }

    /// GET /v1/search; any status.
    pub fn search(&self, token: &str, q: &str, limit: Option<usize>, cursor: Option<&str>) -> Resp {
        let mut query: Vec<(&str, String)> = vec![("q", q.to_owned())];
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        self.search_with(token, &query)
    }

    /// GET /v1/search with these parameters; any status.
    pub fn search_with(&self, token: &str, params: &[(&str, String)]) -> Resp {
        send(
            self.http
                .get(self.url("/v1/search"))
                .bearer_auth(token)
                .query(params),
        )
    }

    /// The `total` of a query; panics unless 200.
    pub fn total(&self, token: &str, q: &str) -> u64 {
        let r = self.search(token, q, Some(1), None);
        assert_eq!(r.status, 200, "search {q:?} answered {r:?}");
        r.body["total"].as_u64().expect("total is a number")
    }

    /// The `total` of a query once the writes up to `min_index` (a publish's `commit_index`)
    /// are searchable for it: the node waits, for the index when only the index answers the
    /// query (`fields.*`, ranges, ...). Panics unless 200.
    pub fn total_after(&self, token: &str, q: &str, min_index: u64) -> u64 {
        let r = self.search_with(
            token,
            &[
                ("q", q.to_owned()),
                ("limit", "1".to_owned()),
                ("min_index", min_index.to_string()),
            ],
        );
        assert_eq!(
            r.status, 200,
            "search {q:?} after {min_index} answered {r:?}"
        );
        r.body["total"].as_u64().expect("total is a number")
    }

    /// Polls until the query's total is `expected` (panics with the last total on timeout).
    pub fn wait_total(&self, token: &str, q: &str, expected: u64) {
        let mut last = None;
        let found = poll_until(SEARCHABLE_TIMEOUT, || {
            let t = self.total(token, q);
            last = Some(t);
            (t == expected).then_some(())
        });
        assert!(
            found.is_some(),
            "search {q:?}: total {last:?}, expected {expected} within {SEARCHABLE_TIMEOUT:?}"
        );
    }

    /// Every event matching `q`, following `next` cursors with pages of `page`. Checks that
    /// every page reports the same total and that the pages add up to it.
    pub fn search_all(&self, token: &str, q: &str, page: usize) -> Vec<Value> {
        self.try_search_all(token, q, page)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Node::search_all`], returning what went wrong instead of panicking (for polling while
    /// the index may still change between pages).
    pub fn try_search_all(&self, token: &str, q: &str, page: usize) -> Result<Vec<Value>, String> {
        let mut events = Vec::new();
        let mut cursor: Option<String> = None;
        let mut total = None;
        loop {
            let r = self.search(token, q, Some(page), cursor.as_deref());
            if r.status != 200 {
                return Err(format!("search {q:?} answered {r:?}"));
            }
            let t = r.body["total"].as_u64().ok_or("no total")?;
            if *total.get_or_insert(t) != t {
                return Err(format!(
                    "search {q:?}: total changed between pages: {total:?} then {t}"
                ));
            }
            let hits = r.body["events"].as_array().ok_or("no events")?.clone();
            if hits.len() > page {
                return Err(format!(
                    "search {q:?}: a page holds {} > limit {page}",
                    hits.len()
                ));
            }
            let empty = hits.is_empty();
            events.extend(hits);
            cursor = r.body["next"].as_str().map(str::to_owned);
            if cursor.is_none() || empty {
                break;
            }
            if events.len() as u64 > t {
                return Err(format!(
                    "search {q:?}: pages hold more events than total {t}"
                ));
            }
        }
        if events.len() as u64 != total.unwrap_or(0) {
            return Err(format!(
                "search {q:?}: paging yielded {} events but total is {total:?}",
                events.len()
            ));
        }
        Ok(events)
    }

    /// Creates a tenant through the admin API; returns its token.
    pub fn create_tenant(&self, name: &str) -> String {
        let r = self.post_json(
            "/v1/tenants",
            Some(&self.creds.admin),
            &json!({ "name": name }),
        );
        assert_eq!(r.status, 201, "creating tenant {name}: {r:?}");
        assert_eq!(r.body["name"], name);
        r.body["token"].as_str().expect("token").to_owned()
    }

    /// Runs the binary as a client (`meniscus ARGS... --server BASE --data-dir DIR`) with `stdin`.
    pub fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--server")
            .arg(&self.base)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the meniscus client");
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_owned();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(data.as_bytes());
        });
        let out = child.wait_with_output().expect("waiting for the client");
        let _ = writer.join();
        out
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn send(req: reqwest::blocking::RequestBuilder) -> Resp {
    try_send(req).unwrap_or_else(|e| panic!("HTTP request failed: {e}"))
}

/// Sends a request and reads its status and JSON body.
pub fn try_send(req: reqwest::blocking::RequestBuilder) -> Result<Resp, reqwest::Error> {
    let r = req.send()?;
    let status = r.status().as_u16();
    let bytes = r.bytes()?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Resp { status, body })
}

/// POST /v1/events on `base` (usable from threads that outlive one node).
pub fn post_events(
    http: &Client,
    base: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<Resp, reqwest::Error> {
    let mut req = http.post(format!("{base}/v1/events")).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    try_send(req)
}

/// Events as an NDJSON body.
pub fn ndjson(events: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        serde_json::to_writer(&mut out, e).unwrap();
        out.push(b'\n');
    }
    out
}

/// Calls `f` every 50 ms until it returns `Some`, or `timeout` passes (then `None`).
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `id`s of events, in order.
pub fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().expect("every event has an id").to_owned())
        .collect()
}

/// Asserts that no id occurs twice; returns the set.
pub fn distinct(ids: &[String]) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut dups = Vec::new();
    for id in ids {
        if !seen.insert(id.clone()) {
            dups.push(id.clone());
        }
    }
    assert!(
        dups.is_empty(),
        "{} duplicate ids, e.g. {:?}",
        dups.len(),
        &dups[..dups.len().min(10)]
    );
    seen
}

/// A small deterministic PRNG (xorshift64*), seeded from the clock unless `MENISCUS_TEST_SEED`
/// is set; the seed is printed so a run can be repeated.
pub struct Rng(u64);

impl Rng {
    pub fn from_env_or_clock() -> Rng {
        let seed = std::env::var("MENISCUS_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("random seed: MENISCUS_TEST_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

/// A child process killed (and reaped) when dropped, so a failing test leaves no node behind.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback address with a port that was free a moment ago, below the kernel's ephemeral
/// range: a node killed and started again on it must not find it taken by some outgoing
/// connection meanwhile.
pub fn free_addr() -> std::net::SocketAddr {
    chaos_tests::node::fixed_addr("127.0.0.1").unwrap()
}
