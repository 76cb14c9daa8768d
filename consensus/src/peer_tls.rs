//! Mutually authenticated TLS for node-to-node links.
//!
//! A cluster has one certificate authority (`ca.crt`, `ca.key`, kept by the operator) and one
//! certificate per node, signed by it, that names the node's Raft id as the DNS name
//! `meniscus-node-ID`. Every peer connection is TLS with client certificates both ways: the
//! dialling node checks that the answering node's certificate names the id it meant to reach,
//! and the answering node reads the dialler's id from its certificate and believes no other.
//! Addresses are not checked (a node may move, or sit behind a proxy): the id is what Raft
//! trusts, so the id is what the certificate proves.
//!
//! Files in a certificates directory: `ca.crt`, `ca.key` (only where certificates are made),
//! and `node-ID.crt` / `node-ID.key` for each node; a node needs `ca.crt` and its own pair.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use x509_parser::extensions::GeneralName;

/// The DNS-name prefix that makes a certificate a node's.
pub const NODE_NAME_PREFIX: &str = "meniscus-node-";

/// Why certificates could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum PeerTlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate does not name exactly one node.
    #[error("the certificate names no node: {0}")]
    NoNode(String),
    /// The node's own certificate names another node.
    #[error("{path} names node {named}, not node {expected}")]
    WrongNode {
        /// The certificate file.
        path: PathBuf,
        /// The id it names.
        named: u64,
        /// The id this node runs as.
        expected: u64,
    },
    /// A name given for a certificate is not acceptable.
    #[error("{0}")]
    InvalidName(String),
    /// rcgen could not make a certificate.
    #[error("making a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificates or keys.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The client verifier could not be built from the CA.
    #[error("the CA certificate cannot verify peers: {0}")]
    Verifier(String),
}

type Result<T, E = PeerTlsError> = std::result::Result<T, E>;

/// The DNS name a node's certificate carries.
pub fn node_name(id: u64) -> String {
    format!("{NODE_NAME_PREFIX}{id}")
}

/// `DIR/ca.crt`.
pub fn ca_cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.crt")
}

/// `DIR/ca.key`.
pub fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

/// `DIR/node-ID.crt`.
pub fn node_cert_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("node-{id}.crt"))
}

/// `DIR/node-ID.key`.
pub fn node_key_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("node-{id}.key"))
}

/// The node id a certificate names: its one `meniscus-node-ID` DNS name.
pub fn node_id_of(der: &[u8]) -> Result<u64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PeerTlsError::NoNode(format!("cannot parse it: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| PeerTlsError::NoNode(format!("cannot read its names: {e}")))?;
    let mut ids = san
        .iter()
        .flat_map(|san| san.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => dns.strip_prefix(NODE_NAME_PREFIX),
            _ => None,
        });
    let (Some(first), None) = (ids.next(), ids.next()) else {
        return Err(PeerTlsError::NoNode(format!(
            "it must carry exactly one {NODE_NAME_PREFIX}ID name"
        )));
    };
    match first.parse::<u64>() {
        Ok(id) if id > 0 && first == id.to_string() => Ok(id),
        _ => Err(PeerTlsError::NoNode(format!(
            "{NODE_NAME_PREFIX}{first} does not end in a node id"
        ))),
    }
}

/// A cluster's certificate authority: signs node certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl CertificateAuthority {
    /// A new CA with a new key.
    pub fn generate() -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Meniscus cluster CA");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(CertificateAuthority {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA whose certificate and key are `cert_pem` and `key_pem`.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(CertificateAuthority {
            issuer,
            cert_pem: cert_pem.to_owned(),
        })
    }

    /// The CA's certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key (PEM).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A certificate and key (PEM) for node `id`, also valid as an HTTPS server certificate
    /// for `hosts` (DNS names or IP addresses).
    pub fn issue_node(&self, id: u64, hosts: &[String]) -> Result<(String, String)> {
        if id == 0 {
            return Err(PeerTlsError::InvalidName("node ids start at 1".to_owned()));
        }
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, node_name(id));
        let mut names = vec![SanType::DnsName(node_name(id).try_into()?)];
        for host in hosts {
            if host.starts_with(NODE_NAME_PREFIX) {
                return Err(PeerTlsError::InvalidName(format!(
                    "--host {host}: names starting with {NODE_NAME_PREFIX} are node ids, given by the certificate's ID alone"
                )));
            }
            names.push(match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) if rustls::pki_types::DnsName::try_from(host.as_str()).is_ok() => {
                    SanType::DnsName(host.clone().try_into()?)
                }
                Err(_) => {
                    return Err(PeerTlsError::InvalidName(format!(
                        "--host {host:?} is neither an IP address nor a DNS name"
                    )))
                }
            });
        }
        params.subject_alt_names = names;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Node `id`'s side of peer links, with a certificate made for it now (no files: tests and
    /// in-process clusters).
    pub fn node_tls(&self, id: u64) -> Result<PeerTls> {
        let (cert, key) = self.issue_node(id, &[])?;
        let here = Path::new("(in memory)");
        PeerTls::from_pem(
            id,
            (here, self.cert_pem.as_bytes()),
            (here, cert.as_bytes()),
            (here, key.as_bytes()),
        )
    }
}

/// This node's side of mutually authenticated peer links.
#[derive(Clone)]
pub struct PeerTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

impl PeerTls {
    /// Reads `DIR/ca.crt` and node `id`'s certificate and key from `dir`.
    pub fn from_dir(dir: &Path, id: u64) -> Result<Self> {
        let read = |path: PathBuf| {
            std::fs::read(&path)
                .map(|bytes| (path.clone(), bytes))
                .map_err(|source| PeerTlsError::Io { path, source })
        };
        let ca = read(ca_cert_path(dir))?;
        let cert = read(node_cert_path(dir, id))?;
        let key = read(node_key_path(dir, id))?;
        Self::from_pem(id, (&ca.0, &ca.1), (&cert.0, &cert.1), (&key.0, &key.1))
    }

    /// Node `id`'s TLS from PEM bytes (each with the path it came from, for errors).
    pub fn from_pem(
        id: u64,
        ca: (&Path, &[u8]),
        cert: (&Path, &[u8]),
        key: (&Path, &[u8]),
    ) -> Result<Self> {
        let pem_error = |path: &Path, reason: String| PeerTlsError::Pem {
            path: path.to_owned(),
            reason,
        };
        let certs = |(path, bytes): (&Path, &[u8])| {
            let certs = CertificateDer::pem_slice_iter(bytes)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| pem_error(path, e.to_string()))?;
            if certs.is_empty() {
                return Err(pem_error(path, "no CERTIFICATE in it".to_owned()));
            }
            Ok(certs)
        };
        let mut roots = RootCertStore::empty();
        for ca_cert in certs(ca)? {
            roots.add(ca_cert)?;
        }
        let roots = Arc::new(roots);
        let chain = certs(cert)?;
        let named = node_id_of(&chain[0]).map_err(|e| pem_error(cert.0, e.to_string()))?;
        if named != id {
            return Err(PeerTlsError::WrongNode {
                path: cert.0.to_owned(),
                named,
                expected: id,
            });
        }
        let key_der =
            PrivateKeyDer::from_pem_slice(key.1).map_err(|e| pem_error(key.0, e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| PeerTlsError::Verifier(e.to_string()))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key_der.clone_key())?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key_der)?;
        Ok(PeerTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// Accepts connections from nodes with certificates from the cluster's CA.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Dials nodes, presenting this node's certificate.
    pub fn connector(&self) -> &TlsConnector {
        &self.connector
    }

    /// The name the certificate of node `id` must carry for this node to talk to it.
    pub fn server_name(id: u64) -> ServerName<'static> {
        ServerName::try_from(node_name(id)).expect("a node name is a valid DNS name")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_certificate_names_its_node_and_the_hosts_given() {
        let ca = CertificateAuthority::generate().unwrap();
        let (cert, _key) = ca
            .issue_node(7, &["db-7.example".into(), "10.0.0.7".into()])
            .unwrap();
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        assert_eq!(node_id_of(&der).unwrap(), 7);
        let text = format!("{:?}", x509_parser::parse_x509_certificate(&der).unwrap().1);
        assert!(text.contains("db-7.example"), "{text}");
        assert!(ca.issue_node(0, &[]).is_err());
        assert!(ca.issue_node(2, &["meniscus-node-3".into()]).is_err());
        assert!(ca.issue_node(2, &["not a name".into()]).is_err());
    }

    #[test]
    fn a_ca_read_back_from_pem_signs_certificates_the_original_verifies() {
        let ca = CertificateAuthority::generate().unwrap();
        let again = CertificateAuthority::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        let (cert, key) = again.issue_node(3, &[]).unwrap();
        let p = Path::new("x");
        PeerTls::from_pem(
            3,
            (p, ca.cert_pem().as_bytes()),
            (p, cert.as_bytes()),
            (p, key.as_bytes()),
        )
        .unwrap();
        let wrong = PeerTls::from_pem(
            4,
            (p, ca.cert_pem().as_bytes()),
            (p, cert.as_bytes()),
            (p, key.as_bytes()),
        );
        assert!(
            matches!(
                wrong,
                Err(PeerTlsError::WrongNode {
                    named: 3,
                    expected: 4,
                    ..
                })
            ),
            "{wrong:?}"
        );
    }

    #[test]
    fn certificates_without_exactly_one_node_name_name_no_node() {
        let key = KeyPair::generate().unwrap();
        for names in [
            vec!["localhost".to_owned()],
            vec!["meniscus-node-1".to_owned(), "meniscus-node-2".to_owned()],
            vec!["meniscus-node-x".to_owned()],
            vec!["meniscus-node-01".to_owned()],
            vec!["meniscus-node-0".to_owned()],
        ] {
            let cert = CertificateParams::new(names.clone())
                .unwrap()
                .self_signed(&key)
                .unwrap();
            assert!(node_id_of(cert.der()).is_err(), "{names:?}");
        }
        assert!(node_id_of(b"garbage").is_err());
    }
}
