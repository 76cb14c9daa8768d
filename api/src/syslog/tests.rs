//! Listener behaviour against a stand-in [`Sink`] that can refuse: back-pressure, retries,
//! counted drops, and what shutdown publishes. (Real senders and a real node are tested in
//! `cli/tests/syslog_*.rs`.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use meniscus_actors::Error as NodeError;
use meniscus_event::Event;
use meniscus_storage::Principal;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use super::ingest::{BoxFuture, Sink};
use super::*;

/// Counts what it is given; refuses (as an overloaded node does) while `refuse` is set.
#[derive(Default)]
struct FakeSink {
    refuse: AtomicBool,
    stored: AtomicU64,
    calls: AtomicU64,
}

impl Sink for FakeSink {
    fn publish<'a>(
        &'a self,
        _tenant: &'a str,
        events: &'a [Event],
    ) -> BoxFuture<'a, std::result::Result<u64, NodeError>> {
        Box::pin(async move {
            let call = self.calls.fetch_add(1, SeqCst);
            if self.refuse.load(SeqCst) {
                return Err(NodeError::Overloaded("test: refusing".into()));
            }
            self.stored.fetch_add(events.len() as u64, SeqCst);
            Ok(call)
        })
    }

    fn authenticate(&self, _token: &str) -> std::result::Result<Option<Principal>, NodeError> {
        Ok(None)
    }
}

fn config() -> SyslogConfig {
    SyslogConfig {
        shutdown_grace: Duration::from_millis(300),
        udp_publish_patience: Duration::from_millis(50),
        max_frame_bytes: 4096,
        ..SyslogConfig::bound_to("default")
    }
}

/// Polls `cond` for up to 20 s.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn frames(n: usize, size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut msg = format!("<13>1 - host app - - - message {i} ").into_bytes();
        msg.resize(size, b'.');
        out.extend_from_slice(format!("{} ", msg.len()).as_bytes());
        out.extend_from_slice(&msg);
    }
    out
}

#[tokio::test]
async fn shutdown_is_requested_by_true_or_by_dropping_the_sender() {
    let (tx, mut s) = Shutdown::channel();
    assert!(!s.is_requested());
    tx.send(true).unwrap();
    assert!(s.is_requested());
    s.requested().await;

    let (tx, mut s) = Shutdown::channel();
    drop(tx);
    assert!(s.is_requested());
    s.requested().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_stops_reading_while_ingest_refuses_and_then_loses_nothing() {
    let sink = Arc::new(FakeSink::default());
    sink.refuse.store(true, SeqCst);
    let tcp = TcpSyslog::bind_sink("127.0.0.1:0".parse().unwrap(), sink.clone(), config())
        .await
        .unwrap();
    let (addr, stats) = (tcp.local_addr(), tcp.stats());
    let (stop, shutdown) = Shutdown::channel();
    let server = tokio::spawn(tcp.run(shutdown));

    // 64 MB: far more than the socket buffers of both ends hold.
    const N: usize = 64 * 1024;
    let stream = frames(N, 1024);
    let writer = tokio::spawn(async move {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(&stream).await.unwrap();
        conn.shutdown().await.unwrap();
    });

    eventually("retries", || stats.snapshot().retries >= 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !writer.is_finished(),
        "the sender finished although nothing could be published: the listener kept reading"
    );
    let held = stats.snapshot();
    assert_eq!(held.stored, 0);
    assert_eq!(held.dropped, 0);
    assert!(
        held.received < N as u64 / 2,
        "read {} messages while refused",
        held.received
    );

    sink.refuse.store(false, SeqCst);
    writer.await.unwrap();
    eventually("everything stored", || sink.stored.load(SeqCst) == N as u64).await;
    let counts = stats.snapshot();
    assert_eq!(
        (counts.received, counts.stored, counts.dropped),
        (N as u64, N as u64, 0)
    );
    stop.send(true).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn tcp_shutdown_publishes_what_was_read_and_counts_what_it_cannot() {
    let sink = Arc::new(FakeSink::default());
    let tcp = TcpSyslog::bind_sink("127.0.0.1:0".parse().unwrap(), sink.clone(), config())
        .await
        .unwrap();
    let (addr, stats) = (tcp.local_addr(), tcp.stats());
    let (stop, shutdown) = Shutdown::channel();
    let server = tokio::spawn(tcp.run(shutdown));

    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(&frames(10, 100)).await.unwrap();
    eventually("first batch", || sink.stored.load(SeqCst) == 10).await;
    // Ingest now refuses: at shutdown the batch retries for the grace period, then is counted.
    sink.refuse.store(true, SeqCst);
    conn.write_all(&frames(5, 100)).await.unwrap();
    eventually("retries", || stats.snapshot().retries >= 1).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the listener stops within its grace period")
        .unwrap();
    let counts = stats.snapshot();
    assert_eq!((counts.stored, counts.dropped), (10, 5));
    assert_eq!(counts.open_connections, 0);
}

#[tokio::test]
async fn udp_counts_what_ingest_refuses_as_dropped() {
    let sink = Arc::new(FakeSink::default());
    let udp = UdpSyslog::bind_sink("127.0.0.1:0".parse().unwrap(), sink.clone(), config())
        .await
        .unwrap();
    let (addr, stats) = (udp.local_addr(), udp.stats());
    let (stop, shutdown) = Shutdown::channel();
    let server = tokio::spawn(udp.run(shutdown));
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    client
        .send_to(b"<13>1 - h a - - - one", addr)
        .await
        .unwrap();
    eventually("stored", || stats.snapshot().stored == 1).await;

    sink.refuse.store(true, SeqCst);
    for i in 0..5 {
        let msg = format!("<13>Nov 20 10:00:00 h a: refused {i}");
        client.send_to(msg.as_bytes(), addr).await.unwrap();
    }
    eventually("dropped", || stats.snapshot().dropped == 5).await;
    // Empty datagrams are not messages; oversized ones are skipped and counted.
    client.send_to(b"\n", addr).await.unwrap();
    client.send_to(&[b'x'; 65_000], addr).await.unwrap();
    eventually("oversized", || stats.snapshot().oversized == 1).await;

    stop.send(true).unwrap();
    server.await.unwrap();
    let counts = stats.snapshot();
    assert_eq!((counts.received, counts.stored, counts.dropped), (6, 1, 5));
}

#[tokio::test]
async fn a_listener_without_a_bound_tenant_refuses_messages_without_credentials() {
    let sink = Arc::new(FakeSink::default());
    let config = SyslogConfig {
        tenant: None,
        ..config()
    };
    let tcp = TcpSyslog::bind_sink("127.0.0.1:0".parse().unwrap(), sink.clone(), config)
        .await
        .unwrap();
    let (addr, stats) = (tcp.local_addr(), tcp.stats());
    let (stop, shutdown) = Shutdown::channel();
    let server = tokio::spawn(tcp.run(shutdown));
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"<13>1 - h a - - [meniscus token=\"nope\"] x\n<13>1 - h a - - - y\n")
        .await
        .unwrap();
    drop(conn);
    eventually("rejected", || stats.snapshot().rejected == 2).await;
    stop.send(true).unwrap();
    server.await.unwrap();
    assert_eq!(sink.calls.load(SeqCst), 0);
}
