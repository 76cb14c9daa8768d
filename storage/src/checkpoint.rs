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
/// tantivy's list of the files it created and may delete once no segment uses them.
const MANAGED: &str = ".managed.json";
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
    // The copy's segment files must be tantivy's to delete once merged away: without this
    // list, an index installed from a snapshot kept them on disk for ever.
    let managed: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    let managed = serde_json::to_vec(&managed)?;
    std::fs::write(dest.join(MANAGED), &managed)?;
    files.push(CheckpointFile {
        name: MANAGED.to_owned(),
        size: managed.len() as u64,
    });
    std::fs::write(dest.join(META), &meta)?;
    files.push(CheckpointFile {
        name: META.to_owned(),
        size: meta.len() as u64,
    });
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// The Raft index in the commit payload of a `meta.json` (0 when it has none).
pub fn commit_payload(meta: &[u8]) -> Result<u64> {
    let meta: serde_json::Value =
        serde_json::from_slice(meta).map_err(|e| Error::Corrupt(format!("meta.json: {e}")))?;
    crate::tenant_index::raft_index_of_payload(meta["payload"].as_str())
}

/// Which of a checkpoint's `files` the index at `index_dir` lacks (absent, or another size).
/// `meta.json` and the file list always count as lacking: they change with every commit.
pub fn missing_files(index_dir: &Path, files: &[CheckpointFile]) -> Vec<CheckpointFile> {
    files
        .iter()
        .filter(|f| {
            f.name == META
                || f.name == MANAGED
                || std::fs::metadata(index_dir.join(&f.name)).map_or(true, |m| m.len() != f.size)
        })
        .cloned()
        .collect()
}

/// Makes the index at `index_dir` the checkpoint described by `files`, whose files it lacked
/// are in `incoming` (see [`missing_files`]): moves them in, replaces `meta.json` atomically,
/// then removes the segment files the new commit does not use. Does nothing, and returns
/// `None`, when the checkpoint's Raft index is not above the one `index_dir` has committed:
/// a copy never goes back. No writer may be open on the index.
pub fn adopt_checkpoint(
    index_dir: &Path,
    incoming: &Path,
    files: &[CheckpointFile],
) -> Result<Option<u64>> {
    let meta = std::fs::read(incoming.join(META))?;
    let offered = commit_payload(&meta)?;
    let held = match std::fs::read(index_dir.join(META)) {
        Ok(current) => commit_payload(&current)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e.into()),
    };
    if offered <= held {
        return Ok(None);
    }
    std::fs::create_dir_all(index_dir)?;
    for file in files.iter().filter(|f| f.name != META) {
        let fetched = incoming.join(&file.name);
        if fetched.exists() {
            std::fs::rename(&fetched, index_dir.join(&file.name))?;
        } else if std::fs::metadata(index_dir.join(&file.name))?.len() != file.size {
            return Err(Error::Corrupt(format!(
                "{} is not the size the checkpoint says",
                file.name
            )));
        }
    }
    let staged = index_dir.join(format!("{META}.staged"));
    std::fs::write(&staged, &meta)?;
    std::fs::File::open(&staged)?.sync_all()?;
    std::fs::rename(&staged, index_dir.join(META))?;
    std::fs::File::open(index_dir)?.sync_all()?;
    for entry in std::fs::read_dir(index_dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if is_segment_file(&name) && !files.iter().any(|f| f.name == name) {
            // Searches still reading an old segment keep their mapping of it.
            std::fs::remove_file(index_dir.join(&name))?;
        }
    }
    Ok(Some(offered))
}

/// Adds every segment file in `index_dir` to tantivy's list of the files it manages, so that
/// its garbage collection removes them once no segment uses them. Indexes installed from
/// snapshots made before checkpoints carried that list hold files tantivy never deletes.
/// Run before tantivy opens the directory (it reads the list then).
pub(crate) fn manage_segment_files(index_dir: &Path) -> Result<()> {
    let path = index_dir.join(MANAGED);
    let mut managed: std::collections::BTreeSet<String> = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => return Err(e.into()),
    };
    let mut added = 0;
    for entry in std::fs::read_dir(index_dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if is_segment_file(&name) && managed.insert(name) {
            added += 1;
        }
    }
    if added > 0 {
        let staged = index_dir.join(format!("{MANAGED}.staged"));
        let list = serde_json::to_vec(&managed).map_err(|e| Error::Corrupt(e.to_string()))?;
        std::fs::write(&staged, list)?;
        std::fs::File::open(&staged)?.sync_all()?;
        std::fs::rename(&staged, &path)?;
        tracing::info!(dir = %index_dir.display(), added, "handed segment files to tantivy's garbage collection");
    }
    Ok(())
}

/// `{32 hex digits}.{extension}` (or `.{opstamp}.del`): a file of a tantivy segment.
fn is_segment_file(name: &str) -> bool {
    match name.split_once('.') {
        Some((id, rest)) => {
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !rest.is_empty()
        }
        None => false,
    }
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

    /// Event `i` of tenant `acme`, its id given by the publisher or not.
    pub(super) fn event(i: usize, id_from_publisher: bool) -> Event {
        Event {
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
            id_from_publisher,
        }
    }

    fn events(n: usize) -> Vec<Event> {
        (0..n).map(|i| event(i, true)).collect()
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
        assert!(files.iter().any(|f| f.name == ".managed.json"));
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

#[cfg(test)]
mod gc_tests {
    use super::*;
    use crate::TenantIndex;
    use meniscus_event::Event;

    fn event(i: usize) -> Event {
        super::tests::event(i, false)
    }

    fn total(index: &TenantIndex) -> u64 {
        index
            .search(&crate::SearchRequest {
                query: "*".into(),
                limit: 1,
                ..Default::default()
            })
            .unwrap()
            .total
    }

    /// What a follower does: pull the files it lacks into `incoming`, then adopt.
    fn copy_over(leader: &Path, follower: &Path, work: &Path) -> (Option<u64>, usize) {
        let _ = std::fs::remove_dir_all(work);
        let files = checkpoint_index(leader, &work.join("checkpoint")).unwrap();
        let missing = missing_files(follower, &files);
        let incoming = work.join("incoming");
        std::fs::create_dir_all(&incoming).unwrap();
        for f in &missing {
            std::fs::copy(
                work.join("checkpoint").join(&f.name),
                incoming.join(&f.name),
            )
            .unwrap();
        }
        (
            adopt_checkpoint(follower, &incoming, &files).unwrap(),
            missing.len(),
        )
    }

    #[test]
    fn a_follower_copies_only_new_files_and_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        let (leader_dir, follower_dir) = (dir.path().join("leader"), dir.path().join("follower"));
        let leader = TenantIndex::open_or_create(&leader_dir, "acme").unwrap();
        let follower = TenantIndex::open_or_create(&follower_dir, "acme").unwrap();
        let mut writer = leader.writer(15_000_000, 1).unwrap();
        writer.add_entry(1, &[event(1), event(2)]).unwrap();
        writer.commit().unwrap();
        let old = checkpoint_index(&leader_dir, &dir.path().join("old")).unwrap();

        let (adopted, copied) = copy_over(&leader_dir, &follower_dir, &dir.path().join("w1"));
        assert_eq!(adopted, Some(1));
        assert_eq!(copied, old.len(), "everything the first time");
        assert_eq!(follower.reload().unwrap(), 1);
        assert_eq!(total(&follower), 2);

        writer.add_entry(2, &[event(3)]).unwrap();
        writer.commit().unwrap();
        let (adopted, copied) = copy_over(&leader_dir, &follower_dir, &dir.path().join("w2"));
        assert_eq!(adopted, Some(2));
        // The new segment's files, meta.json and the file list; not the first segment again.
        let per_segment = old.len() - 2;
        assert_eq!(copied, per_segment + 2);
        assert_eq!(follower.reload().unwrap(), 2);
        assert_eq!(total(&follower), 3);
        assert_eq!(follower.searchable_up_to(), 2);

        // An older commit (a leader that is behind) is not adopted.
        let incoming = dir.path().join("old-incoming");
        std::fs::create_dir_all(&incoming).unwrap();
        std::fs::copy(dir.path().join("old").join(META), incoming.join(META)).unwrap();
        assert_eq!(
            adopt_checkpoint(&follower_dir, &incoming, &old).unwrap(),
            None
        );
        assert_eq!(follower.reload().unwrap(), 2);

        // The leader merges: the follower takes the merged segment and drops the old ones.
        let mut raw: tantivy::IndexWriter<tantivy::TantivyDocument> = {
            drop(writer);
            leader
                .index()
                .writer_with_num_threads(1, 15_000_000)
                .unwrap()
        };
        let ids = leader.index().searchable_segment_ids().unwrap();
        raw.merge(&ids).wait().unwrap();
        drop(raw);
        let mut writer = leader.writer(15_000_000, 1).unwrap();
        writer.add_entry(3, &[event(4)]).unwrap();
        writer.commit().unwrap();
        copy_over(&leader_dir, &follower_dir, &dir.path().join("w3"));
        assert_eq!(follower.reload().unwrap(), 3);
        assert_eq!(total(&follower), 4);
        let segment_files = std::fs::read_dir(&follower_dir)
            .unwrap()
            .filter(|e| is_segment_file(&e.as_ref().unwrap().file_name().to_string_lossy()))
            .count();
        assert_eq!(
            segment_files,
            2 * per_segment,
            "the merged segment and the newest"
        );
    }

    /// An index of three one-event commits (three segments) in `dir/acme`, checkpointed to
    /// `dir/copy`; returns the checkpoint's files.
    fn three_segments_checkpointed(dir: &Path) -> Vec<CheckpointFile> {
        let index = TenantIndex::open_or_create(&dir.join("acme"), "acme").unwrap();
        let mut writer = index.writer(15_000_000, 1).unwrap();
        for raft_index in 1..=3 {
            writer
                .add_entry(raft_index, &[event(raft_index as usize)])
                .unwrap();
            writer.commit().unwrap();
        }
        drop(writer);
        checkpoint_index(&dir.join("acme"), &dir.join("copy")).unwrap()
    }

    /// Opens the index at `dir` as a node would, merges all its segments into one and lets
    /// tantivy collect the files no segment uses.
    fn merge_all_and_collect(dir: &Path) {
        let copy = TenantIndex::open_or_create(dir, "acme").unwrap();
        let mut raw: tantivy::IndexWriter<tantivy::TantivyDocument> =
            copy.index().writer_with_num_threads(1, 15_000_000).unwrap();
        let ids = copy.index().searchable_segment_ids().unwrap();
        assert_eq!(ids.len(), 3);
        raw.merge(&ids).wait().unwrap();
        raw.garbage_collect_files().wait().unwrap();
    }

    #[test]
    fn an_index_installed_without_the_list_hands_its_files_to_tantivy_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let copied = three_segments_checkpointed(dir.path());
        let dest = dir.path().join("copy");
        // As a snapshot made by an earlier version left it.
        std::fs::remove_file(dest.join(MANAGED)).unwrap();
        merge_all_and_collect(&dest);
        assert!(copied
            .iter()
            .filter(|f| f.name != META && f.name != MANAGED)
            .all(|f| !dest.join(&f.name).exists()));
        assert!(is_segment_file("07ef68d42e8345ae8639929ac7b853d8.fast"));
        assert!(is_segment_file("07ef68d42e8345ae8639929ac7b853d8.12.del"));
        assert!(!is_segment_file("meta.json"));
        assert!(!is_segment_file(".managed.json"));
    }

    #[test]
    fn a_checkpoints_files_are_removed_once_merged_away() {
        let dir = tempfile::tempdir().unwrap();
        let copied = three_segments_checkpointed(dir.path());
        let dest = dir.path().join("copy");
        // The copy, opened as a snapshot's receiver opens it, merges everything into one segment.
        merge_all_and_collect(&dest);

        let left: Vec<_> = copied
            .iter()
            .filter(|f| f.name != META && f.name != MANAGED && dest.join(&f.name).exists())
            .map(|f| f.name.clone())
            .collect();
        assert!(left.is_empty(), "merged-away files still on disk: {left:?}");
    }
}
