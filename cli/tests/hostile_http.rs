//! The HTTP port under cheap hostile load: unauthenticated bodies, half-sent headers, idle
//! connections past the cap. Memory is read from /proc; the node must keep serving.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Node, TestDir};
use serde_json::{json, Value};

fn addr(node: &Node) -> SocketAddr {
    node.base.trim_start_matches("http://").parse().unwrap()
}

/// Reads until the server closes the connection or `wait` passes; what it sent, and whether
/// it closed.
fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> (String, bool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), false)
}

/// Bound on how much the node's RSS may grow while 24 strangers each announce a 32 MiB body
/// and send 1 MiB of it (before, each body was read whole before the token was checked).
const STALLED_BODIES_MAX_GROWTH_MIB: u64 = 16;

#[test]
fn unauthenticated_bodies_are_refused_before_they_are_read() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &[]);
    let token = node.creds.default.clone();
    node.publish_json(&token, &json!({"message": "warm"}));
    // The baseline after the first index commit, which allocates tens of MiB of its own.
    let committed = common::poll_until(Duration::from_secs(20), || {
        let text = node
            .http
            .get(node.url("/metrics"))
            .send()
            .ok()?
            .text()
            .ok()?;
        let idle = text
            .lines()
            .any(|l| l == "meniscus_indexing_backlog_bytes 0");
        (idle && node.total(&token, "warm") == 1).then_some(())
    });
    assert!(committed.is_some());
    std::thread::sleep(Duration::from_secs(1));
    let before = common::rss_kib(node.pid);
    let chunk = vec![b'x'; 1024 * 1024];
    let mut strangers = Vec::new();
    for _ in 0..24 {
        let mut s = TcpStream::connect(addr(&node)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer mns_not_a_token\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            32 * 1024 * 1024
        );
        s.write_all(head.as_bytes()).unwrap();
        // The server may stop reading (and close) once it has answered: that is fine.
        let _ = s.write_all(&chunk);
        strangers.push(s);
    }
    for s in &mut strangers {
        let (answer, _) = read_until_closed(s, Duration::from_secs(5));
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer:.200}");
        assert!(answer.contains("\"error\""), "{answer:.400}");
    }
    let grown = common::rss_kib(node.pid).saturating_sub(before) / 1024;
    eprintln!("RSS grew by {grown} MiB for 24 stalled unauthenticated 32 MiB bodies");
    assert!(
        grown < STALLED_BODIES_MAX_GROWTH_MIB,
        "RSS grew by {grown} MiB"
    );
    // Others are still served.
    node.publish_json(&token, &json!({"message": "after the strangers"}));
    node.wait_total(&token, "strangers", 1);
}

#[test]
fn half_sent_headers_and_idle_connections_are_closed_after_the_header_timeout() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &["--http-header-timeout-secs", "2"]);
    let token = node.creds.default.clone();
    let mut half = TcpStream::connect(addr(&node)).unwrap();
    half.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bea")
        .unwrap();
    let mut silent = TcpStream::connect(addr(&node)).unwrap();
    // A keep-alive connection that was answered once and then goes quiet.
    let mut kept = TcpStream::connect(addr(&node)).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    // Meanwhile the node serves everyone else.
    node.publish_json(&token, &json!({"message": "served meanwhile"}));
    for (what, stream) in [
        ("half", &mut half),
        ("silent", &mut silent),
        ("kept", &mut kept),
    ] {
        let (_, closed) = read_until_closed(stream, Duration::from_secs(10));
        assert!(closed, "{what}: still open after {:?}", started.elapsed());
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "closed after {took:?}: before the timeout"
    );
}

#[test]
fn at_the_connection_cap_the_idlest_connection_makes_room_for_a_new_client() {
    let dir = TestDir::new();
    let node = Node::start(&dir, &["--http-max-connections", "20"]);
    let token = node.creds.default.clone();
    let mut idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(addr(&node)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // The header timeout is 30 s: a client served at once was not waiting for it.
    let started = Instant::now();
    node.publish_json(&token, &json!({"message": "served at the cap"}));
    let waited = started.elapsed();
    eprintln!("a client past the cap was served after {waited:?}");
    assert!(waited < Duration::from_secs(10), "served after {waited:?}");
    // An idle connection was closed to make room (which one, among those idle equally long,
    // is the server's choice).
    let closed = idle
        .iter_mut()
        .map(|c| read_until_closed(c, Duration::from_millis(300)).1)
        .filter(|closed| *closed)
        .count();
    assert!(closed >= 1, "no idle connection was closed");
}

/// Idle connections [`twenty_thousand_idle_connections_leave_the_node_serving`] opens.
const IDLE: usize = 20_000;
/// How much the node's RSS may grow for them (about 10 KiB a connection: hyper's read buffer
/// and the task).
const IDLE_MAX_GROWTH_MIB: u64 = 400;

/// Opens `n` connections from a child process (this one's open-file limit may not hold them
/// all) and keeps them open until its stdin closes. They close with a reset (SO_LINGER 0), so
/// 20,000 ports are not left in TIME_WAIT for the tests that run next.
fn idle_elsewhere(addr: SocketAddr, n: usize) -> std::process::Child {
    let script = format!(
        "import resource,socket,sys\n\
         soft,hard=resource.getrlimit(resource.RLIMIT_NOFILE)\n\
         resource.setrlimit(resource.RLIMIT_NOFILE,(hard,hard))\n\
         s=[socket.create_connection(('{}',{})) for _ in range({n})]\n\
         [c.setsockopt(socket.SOL_SOCKET,socket.SO_LINGER,b'\\x01\\0\\0\\0\\0\\0\\0\\0') for c in s]\n\
         print('open',flush=True)\n\
         sys.stdin.read()\n",
        addr.ip(),
        addr.port()
    );
    std::process::Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs")
}

#[test]
fn twenty_thousand_idle_connections_leave_the_node_serving_and_compacting() {
    let dir = TestDir::new();
    let node = Node::start(
        &dir,
        &[
            "--compact-interval-secs",
            "1",
            "--commit-interval-ms",
            "100",
        ],
    );
    let token = node.creds.default.clone();
    node.publish_json(&token, &json!({"message": "warm"}));
    node.wait_total(&token, "warm", 1);
    std::thread::sleep(Duration::from_secs(1));
    let before = common::rss_kib(node.pid);
    let first_index = |node: &Node| node.metric("meniscus_raft_log_first_index{group=\"0\"}");
    let compacted_before = first_index(&node);

    // Two processes of 10,000 each.
    let mut holders: Vec<_> = (0..2)
        .map(|_| idle_elsewhere(addr(&node), IDLE / 2))
        .collect();
    for holder in &mut holders {
        let mut line = String::new();
        let mut out = std::io::BufReader::new(holder.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert_eq!(
            line.trim(),
            "open",
            "a holder could not open its connections"
        );
    }
    let grown = common::rss_kib(node.pid).saturating_sub(before) / 1024;
    eprintln!("RSS grew by {grown} MiB with {IDLE} idle connections");

    // Another client is served at once, writes commit, and the log is still compacted (the
    // node kept descriptors of its own).
    let started = Instant::now();
    for i in 0..20 {
        let events: Vec<Value> = (0..500)
            .map(|j| json!({"message": format!("busy {i} {j}")}))
            .collect();
        node.publish_json(&token, &json!(events));
    }
    node.wait_total(&token, "busy", 10_000);
    eprintln!(
        "10,000 events published and found in {:?}",
        started.elapsed()
    );
    let compacted = common::poll_until(Duration::from_secs(30), || {
        (first_index(&node) > compacted_before).then_some(())
    });
    assert!(
        compacted.is_some(),
        "the log was not compacted while the connections were held"
    );
    assert!(grown < IDLE_MAX_GROWTH_MIB, "RSS grew by {grown} MiB");
    for mut holder in holders {
        drop(holder.stdin.take());
        let _ = holder.wait();
    }
}
