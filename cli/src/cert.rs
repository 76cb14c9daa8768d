//! `meniscus cert`: the certificates that let nodes prove who they are to each other.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use meniscus_consensus::peer_tls::{self, CertificateAuthority};

use crate::credentials::write_private_file as write_file;

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Make the cluster's certificate authority: DIR/ca.crt, which every node needs, and
    /// DIR/ca.key, which only makes node certificates (keep it off the nodes).
    CreateCa {
        /// Where to write them (created if missing, mode 0700).
        #[arg(long)]
        certs_dir: PathBuf,
        /// Replace an existing CA (every node certificate it signed stops working).
        #[arg(long)]
        overwrite: bool,
    },
    /// Make node ID's certificate and key, signed by the CA in DIR: DIR/node-ID.crt and
    /// DIR/node-ID.key. The certificate names the node id, which is what peers check; give
    /// a node its file pair and ca.crt, and start it with `--certs-dir`.
    CreateNode {
        /// The node's id (its --node-id).
        id: u64,
        /// The directory holding ca.crt and ca.key; the node's files are written there.
        #[arg(long)]
        certs_dir: PathBuf,
        /// A DNS name or IP address clients use to reach the node's HTTPS API (with
        /// --http-tls-cert); repeat for several. Peer links check the node id, not these.
        #[arg(long = "host", value_name = "NAME_OR_IP")]
        hosts: Vec<String>,
        /// Replace the node's existing certificate and key.
        #[arg(long)]
        overwrite: bool,
    },
}

pub fn run(command: CertCommand) -> anyhow::Result<()> {
    match command {
        CertCommand::CreateCa {
            certs_dir,
            overwrite,
        } => {
            let (cert, key) = (
                peer_tls::ca_cert_path(&certs_dir),
                peer_tls::ca_key_path(&certs_dir),
            );
            refuse_to_overwrite(&[&cert, &key], overwrite)?;
            let ca = CertificateAuthority::generate()?;
            create_private_dir(&certs_dir)?;
            write_file(&key, ca.key_pem().as_bytes())?;
            write_file(&cert, ca.cert_pem().as_bytes())?;
            println!("wrote {} and {}", cert.display(), key.display());
        }
        CertCommand::CreateNode {
            id,
            certs_dir,
            hosts,
            overwrite,
        } => {
            if id == 0 {
                bail!("node ids start at 1");
            }
            let read = |path: PathBuf| {
                std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "reading {} (make the CA first: meniscus cert create-ca --certs-dir {})",
                        path.display(),
                        certs_dir.display()
                    )
                })
            };
            let ca_cert = read(peer_tls::ca_cert_path(&certs_dir))?;
            let ca_key = read(peer_tls::ca_key_path(&certs_dir))?;
            let ca = CertificateAuthority::from_pem(&ca_cert, &ca_key)
                .context("reading the CA's certificate and key")?;
            let (cert_path, key_path) = (
                peer_tls::node_cert_path(&certs_dir, id),
                peer_tls::node_key_path(&certs_dir, id),
            );
            refuse_to_overwrite(&[&cert_path, &key_path], overwrite)?;
            let (cert, key) = ca.issue_node(id, &hosts)?;
            write_file(&key_path, key.as_bytes())?;
            write_file(&cert_path, cert.as_bytes())?;
            println!("wrote {} and {}", cert_path.display(), key_path.display());
        }
    }
    Ok(())
}

fn refuse_to_overwrite(paths: &[&Path], overwrite: bool) -> anyhow::Result<()> {
    if overwrite {
        return Ok(());
    }
    if let Some(existing) = paths.iter().find(|p| p.exists()) {
        bail!(
            "{} exists; pass --overwrite to replace it",
            existing.display()
        );
    }
    Ok(())
}

/// Makes `dir` (and its parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}
