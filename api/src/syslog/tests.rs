//! Listener behaviour against a stand-in [`Sink`] that can refuse: back-pressure, retries,
//! counted drops, and what shutdown publishes. (Real senders and a real node are tested in
//! `cli/tests/syslog_*.rs`.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meniscus_actors::Error as NodeError;
use meniscus_event::Event;
use meniscus_storage::Principal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::ingest::{BoxFuture, Sink};
use super::*;

/// Counts what it is given; refuses (as an overloaded node does) while `refuse` is set.
#[derive(Default)]
struct FakeSink {
    refuse: AtomicBool,
    stored: AtomicU64,
    calls: AtomicU64,
    /// The tenant of each stored event, in order.
    tenants: Mutex<Vec<String>>,
}

impl Sink for FakeSink {
    fn publish<'a>(
        &'a self,
        tenant: &'a str,
        events: &'a [Event],
    ) -> BoxFuture<'a, std::result::Result<u64, NodeError>> {
        Box::pin(async move {
            let call = self.calls.fetch_add(1, SeqCst);
            if self.refuse.load(SeqCst) {
                return Err(NodeError::Overloaded("test: refusing".into()));
            }
            if tenant == "ghost" {
                return Err(NodeError::UnknownTenant(tenant.to_owned()));
            }
            let mut tenants = self.tenants.lock().unwrap();
            tenants.extend(events.iter().map(|_| tenant.to_owned()));
            self.stored.fetch_add(events.len() as u64, SeqCst);
            Ok(call)
        })
    }

    fn authenticate<'a>(
        &'a self,
        _token: &'a str,
    ) -> BoxFuture<'a, std::result::Result<Option<Principal>, NodeError>> {
        Box::pin(async { Ok(None) })
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

/// A RELP client for the tests: writes frames, reads the server's frames.
struct RelpClient {
    conn: TcpStream,
    parser: super::relp_frame::RelpParser,
    frames: std::collections::VecDeque<(u32, String, String)>,
}

impl RelpClient {
    async fn open(addr: std::net::SocketAddr) -> RelpClient {
        let mut client = RelpClient {
            conn: TcpStream::connect(addr).await.unwrap(),
            parser: super::relp_frame::RelpParser::new(1 << 20),
            frames: Default::default(),
        };
        let offers = "relp_version=0\nrelp_software=test\ncommands=syslog";
        client.send(1, "open", offers).await;
        let (txnr, cmd, data) = client.next().await.expect("an answer to open");
        assert_eq!((txnr, cmd.as_str()), (1, "rsp"));
        assert!(data.starts_with("200 OK\nrelp_version=0\n"), "{data:?}");
        assert!(data.contains("\nrelp_software=meniscus,"), "{data:?}");
        assert!(data.ends_with("\ncommands=syslog"), "{data:?}");
        client
    }

    async fn send(&mut self, txnr: u32, command: &str, data: &str) {
        let frame = format!("{txnr} {command} {} {data}\n", data.len());
        self.conn.write_all(frame.as_bytes()).await.unwrap();
    }

    /// The next frame from the server, or `None` once it has closed the connection.
    async fn next(&mut self) -> Option<(u32, String, String)> {
        let mut buf = [0; 4096];
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Some(frame);
            }
            let n = tokio::time::timeout(Duration::from_secs(20), self.conn.read(&mut buf))
                .await
                .expect("an answer within 20 s")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            let frames = &mut self.frames;
            self.parser
                .push(&buf[..n], |f| {
                    frames.push_back((
                        f.txnr,
                        String::from_utf8_lossy(f.command).into_owned(),
                        String::from_utf8_lossy(f.data).into_owned(),
                    ))
                })
                .unwrap();
        }
    }

    /// Whether the server sends anything within `wait`.
    async fn silent_for(&mut self, wait: Duration) -> bool {
        if !self.frames.is_empty() {
            return false;
        }
        let mut byte = [0; 1];
        tokio::time::timeout(wait, self.conn.peek(&mut byte))
            .await
            .is_err()
    }
}

async fn bind_relp(
    sink: &Arc<FakeSink>,
    config: SyslogConfig,
) -> (RelpSyslog, std::net::SocketAddr) {
    let relp = RelpSyslog::bind_sink("127.0.0.1:0".parse().unwrap(), sink.clone(), config)
        .await
        .unwrap();
    let addr = relp.local_addr();
    (relp, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relp_answers_a_message_only_once_it_is_committed() {
    let sink = Arc::new(FakeSink::default());
    let (relp, addr) = bind_relp(&sink, config()).await;
    let stats = relp.stats();
    let (stop, shutdown) = Shutdown::channel();
    let server = tokio::spawn(relp.run(shutdown));
    let mut client = RelpClient::open(addr).await;

    sink.refuse.store(true, SeqCst);
    for txnr in 2..=11 {
        client
            .send(txnr, "syslog", &format!("<13>1 - h a - - - message {txnr}"))
            .await;
    }
    eventually("retries", || stats.snapshot().retries >= 3).await;
    assert!(
        client.silent_for(Duration::from_millis(300)).await,
        "answered while nothing was committed"
    );
    sink.refuse.store(false, SeqCst);
    for txnr in 2..=11 {
        let answer = client.next().await.expect("an answer");
        assert_eq!(answer, (txnr, "rsp".into(), "200 OK".into()));
    }
    assert_eq!(sink.stored.load(SeqCst), 10);

    client.send(12, "close", "").await;
    assert_eq!(
        client.next().await,
        Some((12, "rsp".into(), "200 OK".into()))
    );
    assert_eq!(client.next().await, None, "the server closes after close");
    stop.send(true).unwrap();
    server.await.unwrap();
    let counts = stats.snapshot();
    assert_eq!(
        (counts.received, counts.stored, counts.protocol_errors),
        (10, 10, 0)
    );
}

#[tokio::test]
async fn relp_refuses_bad_credentials_and_unknown_tenants_with_500() {
    let sink = Arc::new(FakeSink::default());
    let (relp, addr) = bind_relp(&sink, config()).await;
    let (stop, shutdown) = Shutdown::channel();
    let server = tokio::spawn(relp.run(shutdown));
    let mut client = RelpClient::open(addr).await;
    client
        .send(2, "syslog", "<13>1 - h a - - [meniscus token=\"nope\"] bad")
        .await;
    client.send(3, "syslog", "<13>1 - h a - - - fine").await;
    client.send(4, "starttls", "").await;
    let (txnr, _, data) = client.next().await.unwrap();
    assert_eq!(txnr, 2);
    assert!(data.starts_with("500 not stored: invalid"), "{data:?}");
    assert_eq!(
        client.next().await.unwrap(),
        (3, "rsp".into(), "200 OK".into())
    );
    let (txnr, _, data) = client.next().await.unwrap();
    assert_eq!((txnr, data.as_str()), (4, "500 command not supported"));
    drop(client);

    // A listener bound to a tenant that does not exist: refused for good, not retried.
    let ghost = SyslogConfig {
        tenant: Some("ghost".into()),
        ..config()
    };
    let (relp, addr) = bind_relp(&sink, ghost).await;
    let (stop2, shutdown) = Shutdown::channel();
    let server2 = tokio::spawn(relp.run(shutdown));
    let mut client = RelpClient::open(addr).await;
    client.send(2, "syslog", "<13>1 - h a - - - lost").await;
    let (_, _, data) = client.next().await.unwrap();
    assert!(
        data.starts_with("500 not stored: tenant \"ghost\""),
        "{data:?}"
    );
    stop.send(true).unwrap();
    stop2.send(true).unwrap();
    server.await.unwrap();
    server2.await.unwrap();
    assert_eq!(sink.stored.load(SeqCst), 1);
}

#[tokio::test]
async fn relp_malformed_frames_close_the_connection_after_answering_what_came_before() {
    let sink = Arc::new(FakeSink::default());
    let (relp, addr) = bind_relp(&sink, config()).await;
    let stats = relp.stats();
    let (stop, shutdown) = Shutdown::channel();
    let server = tokio::spawn(relp.run(shutdown));

    let mut client = RelpClient::open(addr).await;
    client.send(2, "syslog", "<13>1 - h a - - - kept").await;
    client
        .conn
        .write_all(b"3 syslog 5 abcdefgh\n")
        .await
        .unwrap();
    assert_eq!(
        client.next().await.unwrap(),
        (2, "rsp".into(), "200 OK".into())
    );
    assert_eq!(client.next().await, None);

    // Not RELP at all; and syslog before open.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    raw.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"1 syslog 3 abc\n").await.unwrap();
    raw.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"1 rsp 20 500 session not open\n");

    eventually("protocol errors", || stats.snapshot().protocol_errors == 3).await;
    stop.send(true).unwrap();
    server.await.unwrap();
    assert_eq!(sink.stored.load(SeqCst), 1);
}

#[tokio::test]
async fn relp_shutdown_sends_serverclose_and_leaves_uncommitted_messages_unanswered() {
    let sink = Arc::new(FakeSink::default());
    let (relp, addr) = bind_relp(&sink, config()).await;
    let stats = relp.stats();
    let (stop, shutdown) = Shutdown::channel();
    let server = tokio::spawn(relp.run(shutdown));

    let mut idle = RelpClient::open(addr).await;
    let mut busy = RelpClient::open(addr).await;
    sink.refuse.store(true, SeqCst);
    busy.send(2, "syslog", "<13>1 - h a - - - never committed")
        .await;
    eventually("retries", || stats.snapshot().retries >= 1).await;
    stop.send(true).unwrap();
    assert_eq!(
        idle.next().await,
        Some((0, "serverclose".into(), String::new()))
    );
    assert_eq!(idle.next().await, None);
    // The refused message gets no answer: the sender keeps it and resends it elsewhere.
    assert_eq!(
        busy.next().await,
        Some((0, "serverclose".into(), String::new()))
    );
    assert_eq!(busy.next().await, None);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("stops within its grace period")
        .unwrap();
    assert_eq!(stats.snapshot().dropped, 1);
}

#[tokio::test]
async fn relp_idle_sessions_get_serverclose_after_the_idle_timeout_and_are_counted() {
    let sink = Arc::new(FakeSink::default());
    let idle_timeout = Some(Duration::from_millis(300));
    let (relp, addr) = bind_relp(
        &sink,
        SyslogConfig {
            idle_timeout,
            ..config()
        },
    )
    .await;
    let stats = relp.stats();
    let (stop, shutdown) = Shutdown::channel();
    let server = tokio::spawn(relp.run(shutdown));

    let mut client = RelpClient::open(addr).await;
    client
        .send(2, "syslog", "<13>1 - h a - - - before idling")
        .await;
    assert_eq!(
        client.next().await,
        Some((2, "rsp".into(), "200 OK".into()))
    );
    assert_eq!(
        client.next().await,
        Some((0, "serverclose".into(), String::new()))
    );
    assert_eq!(client.next().await, None);
    let counts = stats.snapshot();
    assert_eq!((counts.idle_closed, counts.stored), (1, 1));
    eventually("closed", || stats.snapshot().open_connections == 0).await;
    stop.send(true).unwrap();
    server.await.unwrap();
}

/// Certificates made with rcgen: a CA, and leaves it signs.
mod certs {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    pub fn ca() -> Issuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        Issuer::new(params, KeyPair::generate().unwrap())
    }

    /// DER of a leaf with subject CN `cn` (none if empty) and DNS names `dns`.
    pub fn leaf(ca: &Issuer<'_, KeyPair>, cn: &str, dns: &[&str]) -> Vec<u8> {
        let names: Vec<String> = dns.iter().map(|d| d.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if !cn.is_empty() {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, ca).unwrap().der().to_vec()
    }
}

#[test]
fn client_certificates_name_their_tenant_by_cn_or_first_dns_name() {
    let ca = certs::ca();
    let cases: &[(&str, &[&str], Result<&str, &str>)] = &[
        ("acme", &[], Ok("acme")),
        ("acme", &["other.example"], Ok("acme")),
        ("", &["initech", "second"], Ok("initech")),
        ("", &[], Err("neither a subject CN nor a DNS name")),
    ];
    for (cn, dns, expected) in cases {
        let der = certs::leaf(&ca, cn, dns);
        let got = super::tls::tenant_of_certificate(&der);
        match (expected, &got) {
            (Ok(t), Ok(g)) => assert_eq!(t, g),
            (Err(needle), Err(e)) => assert!(e.contains(needle), "{e}"),
            _ => panic!("{cn:?} {dns:?}: expected {expected:?}, got {got:?}"),
        }
    }
    assert!(super::tls::tenant_of_certificate(b"not a certificate").is_err());
}

#[test]
fn tls_settings_report_which_file_is_wrong() {
    let dir = std::env::temp_dir().join(format!("meniscus-tls-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let good = TlsSettings {
        cert: write("cert.pem", &cert.cert.pem()),
        key: write("key.pem", &cert.signing_key.serialize_pem()),
        client_ca: None,
    };
    assert!(good.server_config().is_ok());
    let cases = [
        (
            TlsSettings {
                cert: dir.join("missing.pem"),
                ..good.clone()
            },
            "server certificate",
        ),
        (
            TlsSettings {
                cert: write("empty.pem", ""),
                ..good.clone()
            },
            "no CERTIFICATE",
        ),
        (
            TlsSettings {
                key: write("cert-as-key.pem", &cert.cert.pem()),
                ..good.clone()
            },
            "server private key",
        ),
        (
            TlsSettings {
                key: write("other-key.pem", &other.signing_key.serialize_pem()),
                ..good.clone()
            },
            "invalid TLS certificate or key",
        ),
        (
            TlsSettings {
                client_ca: Some(write("ca.pem", "garbage")),
                ..good.clone()
            },
            "client CA certificate",
        ),
    ];
    for (settings, needle) in cases {
        let error = settings.server_config().expect_err(needle).to_string();
        assert!(error.contains(needle), "{error}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
