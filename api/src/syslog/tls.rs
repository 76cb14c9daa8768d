//! Syslog over TLS (RFC 5425): the TCP stream of octet-counted (or LF-framed) messages inside
//! a TLS session, served by rustls.
//!
//! With a client CA ([`TlsSettings::client_ca`]) every client must present a certificate that
//! CA signed, and the certificate names the connection's tenant: its subject CN, or, without
//! one, its first DNS subject alternative name. Messages then go to that tenant unless they
//! carry `meniscus` credentials of their own, exactly as with a listener's bound tenant.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use meniscus_actors::Node;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use x509_parser::extensions::GeneralName;

use super::ingest::{Ingest, Origin, Sink};
use super::listener;
use super::tcp::serve_stream;
use super::{Result, Shutdown, SyslogConfig, SyslogError, SyslogStats};

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a TLS listener finds its certificates (PEM files).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that sign client certificates. When set, clients must present one,
    /// and its CN (or first DNS name) is the connection's tenant.
    pub client_ca: Option<PathBuf>,
}

impl TlsSettings {
    /// Reads the files into a rustls server configuration.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = read_certs(&self.cert, "server certificate")?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| SyslogError::Pem {
            what: "server private key",
            path: self.key.clone(),
            reason: e.to_string(),
        })?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(path, "client CA certificate")? {
                    roots.add(cert)?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| SyslogError::ClientCa {
                            path: path.clone(),
                            reason: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        Ok(Arc::new(builder.with_single_cert(chain, key)?))
    }
}

/// Every certificate in a PEM file; at least one.
fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>> {
    let pem_error = |reason: String| SyslogError::Pem {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(e.to_string()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no CERTIFICATE block in the file".into()));
    }
    Ok(certs)
}

/// A bound syslog TLS listener. [`TlsSyslog::run`] serves it.
pub struct TlsSyslog {
    listener: TcpListener,
    addr: SocketAddr,
    ingest: Arc<Ingest>,
    acceptor: TlsAcceptor,
    client_auth: bool,
}

impl TlsSyslog {
    /// Binds `addr` (port 0 picks a free port; see [`TlsSyslog::local_addr`]) with the
    /// certificates of `tls`.
    pub async fn bind(
        addr: SocketAddr,
        node: Arc<Node>,
        config: SyslogConfig,
        tls: &TlsSettings,
    ) -> Result<Self> {
        let server = tls.server_config()?;
        Self::bind_sink(addr, node, config, server, tls.client_ca.is_some()).await
    }

    /// Binds `addr` for events that go to `sink`; `client_auth` says whether `server`
    /// verifies client certificates (whose names are then the tenants).
    pub(crate) async fn bind_sink(
        addr: SocketAddr,
        sink: Arc<dyn Sink>,
        config: SyslogConfig,
        server: Arc<ServerConfig>,
        client_auth: bool,
    ) -> Result<Self> {
        let (listener, addr) = listener::bind(addr, "tls").await?;
        Ok(TlsSyslog {
            listener,
            addr,
            ingest: Ingest::new(sink, config, "syslog-tls"),
            acceptor: TlsAcceptor::from(server),
            client_auth,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<SyslogStats> {
        self.ingest.stats.clone()
    }

    /// Accepts connections until `shutdown`, then waits for every connection to publish what
    /// it has read. The TLS handshake runs on the connection's task, and must be done within
    /// 10 seconds.
    pub async fn run(self, shutdown: Shutdown) {
        let (ingest, acceptor, client_auth) =
            (self.ingest.clone(), self.acceptor, self.client_auth);
        let serve = move |stream, peer: SocketAddr, shutdown| {
            let (ingest, acceptor) = (ingest.clone(), acceptor.clone());
            async move {
                let peer = peer.to_string();
                serve_tls(&ingest, &acceptor, client_auth, stream, &peer, shutdown).await;
            }
        };
        listener::accept_loop(self.listener, self.addr, self.ingest, shutdown, serve).await;
    }
}

/// Completes the handshake, finds the connection's tenant, and serves the stream.
async fn serve_tls(
    ingest: &Ingest,
    acceptor: &TlsAcceptor,
    client_auth: bool,
    stream: TcpStream,
    peer: &str,
    mut shutdown: Shutdown,
) {
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return ingest.stats.protocol_error(peer, &format!("TLS handshake failed: {e}")),
            Err(_) => {
                let error = format!("TLS handshake not done within {HANDSHAKE_TIMEOUT:?}");
                return ingest.stats.protocol_error(peer, &error);
            }
        },
        _ = shutdown.requested() => return,
    };
    let tenant = if client_auth {
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first());
        match leaf.map(|cert| tenant_of_certificate(cert)) {
            Some(Ok(tenant)) => Some(tenant),
            Some(Err(reason)) => {
                let error = format!("client certificate names no tenant: {reason}");
                return ingest.stats.protocol_error(peer, &error);
            }
            None => {
                let error = "no client certificate";
                return ingest.stats.protocol_error(peer, &error);
            }
        }
    } else {
        ingest.config.tenant.clone()
    };
    tracing::debug!(%peer, tenant = tenant.as_deref().unwrap_or("-"), "syslog-tls session established");
    let origin = Origin {
        peer,
        tenant: tenant.as_deref(),
    };
    let mut stream = stream;
    serve_stream(ingest, &mut stream, origin, shutdown).await;
    // RFC 5425 section 4.4: close with close_notify.
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.shutdown()).await;
}

/// The tenant a client certificate names: its subject CN, or else its first DNS name.
pub(crate) fn tenant_of_certificate(der: &[u8]) -> std::result::Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .map(|cn| cn.as_str().map_err(|e| format!("its CN is not text: {e}")))
        .transpose()?;
    if let Some(cn) = cn.filter(|cn| !cn.is_empty()) {
        return Ok(cn.to_owned());
    }
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("cannot read its subject alternative names: {e}"))?;
    san.and_then(|san| {
        san.value.general_names.iter().find_map(|name| match name {
            GeneralName::DNSName(dns) if !dns.is_empty() => Some((*dns).to_owned()),
            _ => None,
        })
    })
    .ok_or_else(|| "it has neither a subject CN nor a DNS name".to_owned())
}
