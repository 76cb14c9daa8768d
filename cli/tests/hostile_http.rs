//! The HTTP port under cheap hostile load: unauthenticated bodies, half-sent headers, idle
//! connections past the cap. Memory is read from /proc; the node must keep serving.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Node, TestDir};
use serde_json::json;

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
fn past_the_connection_cap_clients_wait_in_the_backlog_and_are_served_as_slots_free() {
    let dir = TestDir::new();
    let node = Node::start(
        &dir,
        &[
            "--http-max-connections",
            "20",
            "--http-header-timeout-secs",
            "2",
        ],
    );
    let token = node.creds.default.clone();
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(addr(&node)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // The 21st connection is accepted by the kernel but not served until idle ones time out.
    let started = Instant::now();
    node.publish_json(&token, &json!({"message": "waited for a slot"}));
    let waited = started.elapsed();
    eprintln!("a client past the cap was served after {waited:?}");
    assert!(
        waited >= Duration::from_millis(1000),
        "served after {waited:?}: the cap did not hold"
    );
    assert!(waited < Duration::from_secs(15), "served after {waited:?}");
    drop(idle);
}
