//! Syslog over TLS (RFC 5425) to `meniscus dev --syslog-tls`: certificates made in the test
//! with rcgen, a tokio-rustls client sending octet-counted frames, client-certificate tenants,
//! and a real rsyslog forwarding with `omfwd` over gtls.

mod syslog_common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use syslog_common::rsyslog::{rsyslogd, send_lines, Rsyslog};
use syslog_common::{marker, octet_counted, Dir, Listeners, SyslogNode, TlsFiles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// A certificate authority made for one test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
    pem: String,
}

/// A certificate and its key, as DER and as PEM files.
struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
    cert_pem: PathBuf,
    key_pem: PathBuf,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            cert: cert.der().clone(),
            pem: cert.pem(),
        }
    }

    /// Writes the CA certificate to `dir/NAME.pem`.
    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// A certificate with subject CN `cn` (none if empty) and names `sans`, written to
    /// `dir/NAME.crt` and `dir/NAME.key`.
    fn leaf(&self, dir: &Path, name: &str, cn: &str, sans: &[&str]) -> Leaf {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if !cn.is_empty() {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_pem = dir.join(format!("{name}.crt"));
        let key_pem = dir.join(format!("{name}.key"));
        std::fs::write(&cert_pem, cert.pem()).unwrap();
        std::fs::write(&key_pem, key.serialize_pem()).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: key.serialize_der(),
            cert_pem,
            key_pem,
        }
    }
}

/// A client that trusts `ca`, presenting `cert` if given.
fn client_config(ca: &Ca, cert: Option<&Leaf>) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert.clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        None => builder.with_no_client_auth(),
        Some(leaf) => {
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.clone()));
            builder
                .with_client_auth_cert(leaf.chain.clone(), key)
                .unwrap()
        }
    };
    Arc::new(config)
}

/// Connects with TLS, writes `data`, closes, and reads until the server closes too (a refused
/// client certificate shows up there, as the server's alert).
fn send_tls(addr: SocketAddr, config: Arc<ClientConfig>, data: &[u8]) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = TlsConnector::from(config).connect(name, tcp).await?;
        tls.write_all(data).await?;
        tls.shutdown().await?;
        let mut rest = Vec::new();
        tls.read_to_end(&mut rest).await?;
        Ok(())
    })
}

/// A node with `--syslog-tls`, its server certificate signed by `ca`.
fn tls_node(dir: &Dir, ca: &Ca, client_ca: Option<PathBuf>) -> SyslogNode {
    let server = ca.leaf(
        &dir.path,
        "server",
        "localhost",
        &["localhost", "127.0.0.1"],
    );
    let tls = TlsFiles {
        addr: "127.0.0.1:0".parse().unwrap(),
        cert: server.cert_pem,
        key: server.key_pem,
        client_ca,
    };
    SyslogNode::start_with(
        dir,
        &Listeners {
            tls: Some(tls),
            ..Listeners::default()
        },
    )
}

#[test]
fn tls_octet_counted_messages_are_searchable_in_the_default_tenant() {
    let dir = Dir::new();
    let ca = Ca::new("meniscus test CA");
    let node = tls_node(&dir, &ca, None);
    let word = marker("tlsdefault");
    let mut frames = Vec::new();
    for i in 0..100 {
        frames.extend(octet_counted(&format!(
            "<34>1 2026-01-02T03:04:05Z tlshost tlsapp - - - {word} number {i}\nsecond line"
        )));
    }
    send_tls(node.tls(), client_config(&ca, None), &frames).expect("sending over TLS");
    let found = node.wait_for(&word, 100);
    let e = &found[0];
    assert_eq!(e["host"], "tlshost");
    assert_eq!(e["app"], "tlsapp");
    assert_eq!(e["tenant"], "default");
    assert_eq!(e["source"]["transport"], "syslog-tls");
    assert!(e["message"].as_str().unwrap().ends_with("\nsecond line"));
    assert_eq!(node.count(&word), 100);

    // A client that does not trust the server's CA gets nowhere, and nothing is stored.
    let stranger = Ca::new("another CA");
    let frame = octet_counted(&format!("<34>1 - h a - - - {word} untrusted"));
    assert!(send_tls(node.tls(), client_config(&stranger, None), &frame).is_err());
    // Plain TCP to the TLS port is not TLS: the handshake fails and the node goes on.
    syslog_common::send_plain(node.tls(), &frame);
    send_tls(
        node.tls(),
        client_config(&ca, None),
        &octet_counted(&format!("<34>1 - h a - - - {word} after")),
    )
    .expect("sending over TLS");
    node.wait_for(&format!("{word} AND after"), 1);
    assert_eq!(node.count(&format!("{word} AND untrusted")), 0);
}

#[test]
fn tls_client_certificates_name_the_tenant() {
    let dir = Dir::new();
    let ca = Ca::new("meniscus test CA");
    let client_ca = ca.write(&dir.path, "client-ca");
    let node = tls_node(&dir, &ca, Some(client_ca));
    let acme_token = node.create_tenant("acme");
    let initech_token = node.create_tenant("initech");
    let word = marker("tlsclient");
    let frame = |text: &str| octet_counted(&format!("<13>1 - h a - - - {word} {text}"));

    let acme = ca.leaf(&dir.path, "acme", "acme", &[]);
    send_tls(node.tls(), client_config(&ca, Some(&acme)), &frame("by-cn")).expect("acme's client");
    // Without a CN, the first DNS name is the tenant.
    let initech = ca.leaf(&dir.path, "initech", "", &["initech", "other"]);
    send_tls(
        node.tls(),
        client_config(&ca, Some(&initech)),
        &frame("by-dns"),
    )
    .expect("initech's client");

    let found = node.wait_for_as(&acme_token, &word, 1);
    assert_eq!(found[0]["tenant"], "acme");
    assert!(found[0]["message"].as_str().unwrap().ends_with("by-cn"));
    let found = node.wait_for_as(&initech_token, &word, 1);
    assert!(found[0]["message"].as_str().unwrap().ends_with("by-dns"));

    // Refused: no certificate; a certificate from another CA; a tenant that does not exist.
    assert!(send_tls(node.tls(), client_config(&ca, None), &frame("anonymous")).is_err());
    let stranger = Ca::new("another CA").leaf(&dir.path, "stranger", "acme", &[]);
    assert!(send_tls(
        node.tls(),
        client_config(&ca, Some(&stranger)),
        &frame("forged")
    )
    .is_err());
    let ghost = ca.leaf(&dir.path, "ghost", "ghost", &[]);
    let _ = send_tls(
        node.tls(),
        client_config(&ca, Some(&ghost)),
        &frame("ghost"),
    );

    // A marker after the refusals shows they were processed; none of them is stored anywhere.
    send_tls(node.tls(), client_config(&ca, Some(&acme)), &frame("last")).expect("acme's client");
    node.wait_for_as(&acme_token, &format!("{word} AND last"), 1);
    for token in [&acme_token, &initech_token, &node.token] {
        for refused in ["anonymous", "forged", "ghost"] {
            assert_eq!(
                node.search_total_as(token, &format!("{word} AND {refused}"))
                    .0,
                0
            );
        }
    }
    assert_eq!(node.count(&word), 0, "nothing went to the default tenant");
    assert!(
        node.log().contains("TLS handshake failed"),
        "the refusals are logged:\n{}",
        node.log()
    );
}

#[test]
fn rsyslog_omfwd_over_tls_is_searchable() {
    let Some(binary) = rsyslogd() else { return };
    const N: usize = 2_000;
    let dir = Dir::new();
    let ca = Ca::new("meniscus test CA");
    let ca_pem = ca.write(&dir.path, "ca");
    let client_ca = ca.write(&dir.path, "client-ca");
    let node = tls_node(&dir, &ca, Some(client_ca));
    let token = node.create_tenant("relay");
    let relay = ca.leaf(&dir.path, "relay", "relay", &["relay.example"]);
    let modules = format!(
        r#"global(DefaultNetstreamDriverCAFile="{}" DefaultNetstreamDriverCertFile="{}" DefaultNetstreamDriverKeyFile="{}")"#,
        ca_pem.display(),
        relay.cert_pem.display(),
        relay.key_pem.display()
    );
    let action = format!(
        r#"action(type="omfwd" target="127.0.0.1" port="{}" protocol="tcp"
       TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"
       StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name"
       StreamDriverPermittedPeers="localhost")"#,
        node.tls().port()
    );
    let rsyslog = Rsyslog::start(&binary, &dir.path, "rsyslog", &modules, &action);
    let word = marker("gtls");
    send_lines(
        rsyslog.input,
        (0..N).map(|i| format!("<13>1 - gtlshost gtlsapp - - - {word} seq{i}")),
    );
    let deadline = std::time::Instant::now() + syslog_common::SEARCHABLE_TIMEOUT * 2;
    while node.search_total_as(&token, &word).0 < N as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {N} arrived; rsyslog log:\n{}\nnode log:\n{}",
            node.search_total_as(&token, &word).0,
            rsyslog.log(),
            node.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let found = node.search_as(&token, &format!("{word} AND seq7"));
    assert_eq!(found[0]["host"], "gtlshost");
    assert_eq!(found[0]["tenant"], "relay");
    assert_eq!(found[0]["source"]["transport"], "syslog-tls");
}
