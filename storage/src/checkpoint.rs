//! Consistent copies of a tenant index for snapshots, made of hard links.
//!
//! tantivy's files are immutable once written, except `meta.json`, which each commit replaces
//! atomically. A checkpoint therefore reads `meta.json` once, hard-links every file of the
//! segments it lists, and writes that same `meta.json` beside them. A merge may delete a
//! listed file between the read and the link; the checkpoint then starts over.

use std::path::Path;

use crate::{Error, Result};

/// One file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointFile {
    /// Its name, relative to the index directory.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

const META: &str = "meta.json";
const ATTEMPTS: usize = 10;

/// Copies the last commit of the tenant index in `index_dir` into `dest` (created; must not
/// exist), hard-linking its files. Returns the files, `meta.json` included.
pub fn checkpoint_index(index_dir: &Path, dest: &Path) -> Result<Vec<CheckpointFile>> {
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        match try_checkpoint(index_dir, dest) {
            Ok(files) => return Ok(files),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A merge removed a file of the commit we read: read the newer commit.
                let _ = std::fs::remove_dir_all(dest);
                last_error = Some(e);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(dest);
                return Err(e.into());
            }
        }
    }
    Err(Error::Corrupt(format!(
        "cannot checkpoint {}: its files kept changing ({last_error:?})",
        index_dir.display()
    )))
}

fn try_checkpoint(index_dir: &Path, dest: &Path) -> std::io::Result<Vec<CheckpointFile>> {
    let meta = std::fs::read(index_dir.join(META))?;
    let segments = segment_prefixes(&meta)?;
    std::fs::create_dir_all(dest)?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(index_dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if segments
            .iter()
            .any(|prefix| name.starts_with(prefix.as_str()))
        {
            std::fs::hard_link(index_dir.join(&name), dest.join(&name))?;
            let size = std::fs::metadata(dest.join(&name))?.len();
            files.push(CheckpointFile { name, size });
        }
    }
    // Every segment must have its files here; a missing one means a merge got in between.
    for prefix in &segments {
        if !files.iter().any(|f| f.name.starts_with(prefix.as_str())) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("segment {prefix} vanished"),
            ));
        }
    }
    std::fs::write(dest.join(META), &meta)?;
    files.push(CheckpointFile {
        name: META.to_owned(),
        size: meta.len() as u64,
    });
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// `"{segment id without dashes}."` for every segment `meta.json` lists.
fn segment_prefixes(meta: &[u8]) -> std::io::Result<Vec<String>> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let meta: serde_json::Value =
        serde_json::from_slice(meta).map_err(|e| invalid(format!("meta.json: {e}")))?;
    let segments = meta["segments"]
        .as_array()
        .ok_or_else(|| invalid("meta.json has no segments".into()))?;
    segments
        .iter()
        .map(|s| {
            s["segment_id"]
                .as_str()
                .map(|id| format!("{}.", id.replace('-', "")))
                .ok_or_else(|| invalid("a segment without segment_id".into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TenantIndex;
    use meniscus_event::{Event, Source};
    use time::OffsetDateTime;

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| Event {
                id: format!("e{i}"),
                tenant: "acme".into(),
                received_at: OffsetDateTime::now_utc(),
                timestamp: OffsetDateTime::now_utc(),
                host: None,
                app: None,
                procid: None,
                msgid: None,
                facility: None,
                severity: None,
                message: format!("checkpointed {i}"),
                structured_data: Default::default(),
                fields: Default::default(),
                source: Source::default(),
                id_from_publisher: true,
            })
            .collect()
    }

    #[test]
    fn a_checkpoint_opens_as_the_committed_index() {
        let dir = tempfile::tempdir().unwrap();
        let index = TenantIndex::open_or_create(&dir.path().join("acme"), "acme").unwrap();
        let mut writer = index.writer(15_000_000, 1).unwrap();
        writer.add_entry(7, &events(100)).unwrap();
        writer.commit().unwrap();
        // Added but not committed: not part of the checkpoint.
        writer.add_entry(8, &events(5)).unwrap();

        let dest = dir.path().join("copy");
        let files = checkpoint_index(&dir.path().join("acme"), &dest).unwrap();
        assert!(files.iter().any(|f| f.name == "meta.json"));
        assert!(files.iter().all(|f| dest.join(&f.name).exists()));

        let copy = TenantIndex::open_or_create(&dest, "acme").unwrap();
        assert_eq!(copy.committed_raft_index().unwrap(), 7);
        let all = copy
            .search(&crate::SearchRequest {
                query: "*".into(),
                limit: 1,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.total, 100);
        assert!(checkpoint_index(&dir.path().join("missing"), &dir.path().join("x")).is_err());
    }
}
