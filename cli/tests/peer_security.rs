//! The Raft port as an attacker sees it: hand-written frames that would make the sender an
//! admin, rotate a tenant's token, publish into a tenant, add a member, or poison the log.
//! Against a cluster made with `meniscus cert`, none is decoded, whoever sends it: a plain
//! client, a TLS client without a certificate, one with a certificate from another CA, or a
//! member's certificate claiming another node. Against an `--insecure` cluster the same frames
//! work, which is why that mode is for tests and demos only.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{start, Cluster};
use meniscus_consensus::peer_tls::{self, PeerTls};
use meniscus_consensus::transport::{Envelope, Forward, Frame, ShardRequest};
use meniscus_storage::{AddAdminToken, AddMember, Command as Cmd, CommandKind, RotateToken};
use prost::Message as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const INJECTED_ADMIN: &str = "mns_injected_admin_token_0000000000000000000000000000000000000";
const INJECTED_TENANT_TOKEN: &str =
    "mns_injected_tenant_token_000000000000000000000000000000000000";

/// The same fields as the actors' shard call (see actors/src/remote.rs).
#[derive(Clone, PartialEq, prost::Message)]
struct ShardCall {
    #[prost(string, tag = "1")]
    tenant: String,
    #[prost(bytes = "vec", tag = "2")]
    batch: Vec<u8>,
    #[prost(string, tag = "3")]
    search: String,
}

/// Every attack as one frame from node `from`.
fn attack_frames(from: u64, shard: u64) -> Vec<Vec<u8>> {
    let command = |kind| Cmd { kind: Some(kind) }.encode_to_vec();
    let forward = |group: u64, data: Vec<u8>| Envelope {
        group,
        forward: Some(Forward { id: 7, data }),
        ..Default::default()
    };
    let event: meniscus_event::Event = serde_json::from_value(json!({
        "id": "smuggled-1", "tenant": "default", "message": "smuggled",
        "received_at": "2026-01-01T00:00:00Z", "timestamp": "2026-01-01T00:00:00Z",
        "source": {"transport": "http"},
    }))
    .unwrap();
    let call = ShardCall {
        tenant: "default".into(),
        batch: meniscus_event::wire::encode_batch(&[event]),
        search: String::new(),
    };
    let envelopes = vec![
        forward(
            0,
            command(CommandKind::AddAdminToken(AddAdminToken {
                token_hash: meniscus_storage::tokens::hash(INJECTED_ADMIN),
            })),
        ),
        forward(
            0,
            command(CommandKind::RotateToken(RotateToken {
                tenant: "default".into(),
                token_hash: meniscus_storage::tokens::hash(INJECTED_TENANT_TOKEN),
                previous_valid_until_nanos: 0,
            })),
        ),
        forward(
            0,
            command(CommandKind::AddMember(AddMember {
                id: 9,
                raft_addr: "127.0.0.1:9".into(),
                replaces: 0,
            })),
        ),
        Envelope {
            group: shard,
            shard_request: Some(ShardRequest {
                id: 1,
                body: call.encode_to_vec(),
            }),
            ..Default::default()
        },
        forward(0, vec![0xff; 20]),
    ];
    envelopes
        .into_iter()
        .map(|envelope| {
            let frame = Frame {
                from,
                envelopes: vec![envelope],
            }
            .encode_to_vec();
            let mut bytes = (frame.len() as u32).to_be_bytes().to_vec();
            bytes.extend(frame);
            bytes
        })
        .collect()
}

/// Writes `frame` and reads until the other end closes (or 3 s pass).
async fn send_and_drain<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, frame: &[u8]) {
    let _ = stream.write_all(frame).await;
    let _ = stream.flush().await;
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// How an attacker connects.
enum Identity {
    Plain,
    /// TLS trusting the cluster's CA (its certificate is no secret), with this client
    /// certificate and key, if any.
    Tls(Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>),
    /// A member's own TLS setup (a stolen node certificate).
    Member(PeerTls),
}

fn client_config(
    ca: &Path,
    cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match cert {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
    })
}

fn send_attacks(identity: &Identity, ca: &Path, targets: &[(u64, SocketAddr)], frames: &[Vec<u8>]) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for (id, addr) in targets {
            for frame in frames {
                let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
                    continue;
                };
                let name = PeerTls::server_name(*id);
                match identity {
                    Identity::Plain => send_and_drain(tcp, frame).await,
                    Identity::Tls(cert) => {
                        let cert = cert.as_ref().map(|(c, k)| (c.clone(), k.clone_key()));
                        let connector = tokio_rustls::TlsConnector::from(client_config(ca, cert));
                        if let Ok(tls) = connector.connect(name, tcp).await {
                            send_and_drain(tls, frame).await;
                        }
                    }
                    Identity::Member(tls) => {
                        if let Ok(tls) = tls.connector().connect(name, tcp).await {
                            send_and_drain(tls, frame).await;
                        }
                    }
                }
            }
        }
    });
}

/// What the attacks would have done, had any frame been believed.
fn assert_no_attack_took_effect(cluster: &Cluster) {
    for node in 0..3 {
        let (status, _) = cluster.get(node, "/v1/tenants", INJECTED_ADMIN);
        assert_eq!(status, 401, "node {node}: the injected admin token works");
        let (status, _) = cluster.get(node, "/v1/search?q=*", INJECTED_TENANT_TOKEN);
        assert_eq!(status, 401, "node {node}: the rotated-in token works");
        assert_eq!(
            cluster.total(node, "smuggled"),
            0,
            "node {node}: smuggled event"
        );
        let (_, status) = cluster.get(node, "/v1/cluster", &cluster.admin);
        assert!(
            !status.to_string().contains("127.0.0.1:9\""),
            "node {node}: the forged member is listed: {status}"
        );
    }
}

#[test]
fn no_frame_from_a_stranger_or_an_impostor_is_decoded_and_the_cluster_keeps_serving() {
    let certs = common::certs_dir();
    let cluster = start(&common::certs_args());
    cluster.wait_writable();
    let shard = cluster.default_shard();
    let targets: Vec<(u64, SocketAddr)> = (1..=3).zip(cluster.rafts.iter().copied()).collect();
    let ca = peer_tls::ca_cert_path(certs);

    // Another CA, with a certificate for node 2 (made with the same commands).
    let other = tempfile::tempdir().unwrap();
    for args in [&["cert", "create-ca"][..], &["cert", "create-node", "2"]] {
        let out = Command::new(common::BIN)
            .args(args)
            .arg("--certs-dir")
            .arg(other.path())
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let pem = |path: std::path::PathBuf| {
        let chain: Vec<_> = CertificateDer::pem_file_iter(&path)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(peer_tls::node_key_path(other.path(), 2)).unwrap();
        (chain, key)
    };
    let identities = [
        ("plain TCP", Identity::Plain),
        ("TLS without a certificate", Identity::Tls(None)),
        (
            "TLS with another CA's certificate",
            Identity::Tls(Some(pem(peer_tls::node_cert_path(other.path(), 2)))),
        ),
        (
            "node 3's certificate claiming node 2",
            Identity::Member(PeerTls::from_dir(certs, 3).unwrap()),
        ),
    ];
    let refused_before: u64 = (0..3)
        .map(|n| cluster.metric(n, "meniscus_peer_connections_refused_total"))
        .sum();
    let bad_before: u64 = (0..3)
        .map(|n| cluster.metric(n, "meniscus_peer_bad_frames_total"))
        .sum();
    // Every frame claims node 2; node 3's certificate is sent only to nodes 1 and 2 (node 3
    // does not take connections from itself).
    let frames = attack_frames(2, shard);
    for (what, identity) in &identities {
        eprintln!("attacking as {what}");
        let targets: Vec<_> = match identity {
            Identity::Member(_) => targets[..2].to_vec(),
            _ => targets.clone(),
        };
        send_attacks(identity, &ca, &targets, &frames);
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_no_attack_took_effect(&cluster);
    let refused: u64 = (0..3)
        .map(|n| cluster.metric(n, "meniscus_peer_connections_refused_total"))
        .sum();
    let bad: u64 = (0..3)
        .map(|n| cluster.metric(n, "meniscus_peer_bad_frames_total"))
        .sum();
    // Three identities refused at the handshake on three nodes, five frames each; the
    // member impostor's frames closed as bad on two nodes.
    assert!(
        refused - refused_before >= 3 * 3 * 5,
        "refused {refused_before} -> {refused}"
    );
    assert_eq!(bad - bad_before, 2 * 5, "bad frames {bad_before} -> {bad}");

    // The cluster keeps serving on every node.
    cluster.wait_writable();
    for node in 0..3 {
        let (status, _) = cluster.get(node, "/v1/tenants", &cluster.admin);
        assert_eq!(status, 200);
        cluster.wait_total(node, "warm-up", 1);
    }
}

#[test]
fn an_insecure_cluster_believes_any_frame() {
    let cluster = start(&["--insecure".to_owned()]);
    cluster.wait_writable();
    let shard = cluster.default_shard();
    let targets: Vec<(u64, SocketAddr)> = (1..=3).zip(cluster.rafts.iter().copied()).collect();
    // Only the admin-token injection: one plain frame to every node, each claiming to come
    // from another member (one of them leads the metadata group and proposes it).
    for (i, target) in targets.iter().enumerate() {
        let claimed = (i as u64 + 1) % 3 + 1;
        let frames = attack_frames(claimed, shard);
        send_attacks(
            &Identity::Plain,
            Path::new("unused"),
            &[*target],
            &frames[..1],
        );
    }
    let took = common::poll_until(Duration::from_secs(10), || {
        (cluster.get(0, "/v1/tenants", INJECTED_ADMIN).0 == 200).then_some(())
    });
    assert!(
        took.is_some(),
        "with --insecure a stranger's frame makes it admin"
    );
}

#[test]
fn a_cluster_node_without_certificates_or_insecure_refuses_to_start_and_says_how() {
    let dir = tempfile::tempdir().unwrap();
    let raft = common::free_addr();
    let out = Command::new(common::BIN)
        .args(["start", "--node-id", "1", "--http", "127.0.0.1:0"])
        .args(["--initial-cluster", &format!("1={raft},2=127.0.0.1:1")])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("meniscus cert create-ca"), "{stderr}");
    assert!(stderr.contains("--insecure"), "{stderr}");
    assert!(
        !dir.path().join("credentials.json").exists(),
        "nothing written"
    );
}

/// How much node 1's RSS may grow while 16 plain and 16 authenticated peer connections each
/// announce a 64 MiB frame and send 64 KiB of it (it grew by a GiB when a frame's buffer was
/// allocated from its header).
const HEADERS_MAX_GROWTH_MIB: u64 = 32;

#[test]
fn frame_headers_announcing_64_mib_cost_only_what_arrives() {
    let certs = common::certs_dir();
    let cluster = start(&common::certs_args());
    cluster.wait_writable();
    // The baseline after node 1 has indexed and committed (a first index commit allocates tens
    // of MiB, which must not count against the frames).
    cluster.wait_total(0, "warm-up", 1);
    let indexed = common::poll_until(Duration::from_secs(20), || {
        (cluster.metric(0, "meniscus_indexing_backlog_bytes") == 0).then_some(())
    });
    assert!(indexed.is_some());
    std::thread::sleep(Duration::from_secs(2));
    let node1 = cluster.rafts[0];
    let before = common::rss_kib(cluster.pids[0]);
    let mut frame = (64u32 * 1024 * 1024).to_be_bytes().to_vec();
    frame.extend(vec![0u8; 64 * 1024]);
    let member = PeerTls::from_dir(certs, 3).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let held = runtime.block_on(async {
        let mut plain = Vec::new();
        let mut tls = Vec::new();
        for _ in 0..16 {
            let mut s = tokio::net::TcpStream::connect(node1).await.unwrap();
            let _ = s.write_all(&frame).await;
            plain.push(s);
            let tcp = tokio::net::TcpStream::connect(node1).await.unwrap();
            let mut s = member
                .connector()
                .connect(PeerTls::server_name(1), tcp)
                .await
                .unwrap();
            s.write_all(&frame).await.unwrap();
            s.flush().await.unwrap();
            tls.push(s);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        (plain, tls)
    });
    let grown = common::rss_kib(cluster.pids[0]).saturating_sub(before) / 1024;
    eprintln!("node 1's RSS grew by {grown} MiB for 32 connections announcing 64 MiB frames");
    assert!(grown < HEADERS_MAX_GROWTH_MIB, "RSS grew by {grown} MiB");
    // The cluster serves on while they hang.
    cluster.wait_writable();
    cluster.wait_total(0, "warm-up", 1);
    drop(held);
}
