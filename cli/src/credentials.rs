//! `DIR/credentials.json`: the tokens `meniscus dev` generates on first start.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Credentials {
    pub admin_token: String,
    pub tenants: BTreeMap<String, String>,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("credentials.json")
}

pub fn load(data_dir: &Path) -> anyhow::Result<Option<Credentials>> {
    let path = path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes atomically (temp file + rename) with mode 0600: the file holds secrets.
pub fn store(data_dir: &Path, credentials: &Credentials) -> anyhow::Result<()> {
    write_private_file(&path(data_dir), &serde_json::to_vec_pretty(credentials)?)
}

/// Writes `bytes` to `path` with mode 0600, atomically (a temporary file beside it, synced,
/// then renamed into place): for secrets (tokens, keys).
pub fn write_private_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
