//! Data at rest: a node's data directory is its owner's alone, whatever umask it was started
//! with and however open the directory was before.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

/// Every path below `dir` whose mode is not 0700 (directories) or 0600 (files).
fn too_open(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let wanted = if meta.is_dir() { 0o700 } else { 0o600 };
        if mode != wanted {
            out.push(format!("{} {mode:o}", entry.path().display()));
        }
        if meta.is_dir() {
            too_open(&entry.path(), out);
        }
    }
}

#[test]
fn the_data_directory_is_0700_and_its_files_0600_whatever_the_umask() {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    // An existing directory open to everyone is narrowed too.
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; exec {} dev --http 127.0.0.1:0 --commit-interval-ms 50 --data-dir {}",
            common::BIN,
            data.display()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let _guard = common::KillOnDrop(child);
    let base = format!("http://{}", common::ready_addr(&mut reader));
    let creds: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("credentials.json")).unwrap()).unwrap();
    let token = creds["tenants"]["default"].as_str().unwrap();
    let http = common::client(Duration::from_secs(30));
    let r = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(token)
        .json(&json!({"message": "at rest"}))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    // Once the index has committed, every kind of file exists: sled, the Raft log, segments.
    let indexed = common::poll_until(Duration::from_secs(20), || {
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .ok()?
            .text()
            .ok()?;
        metrics
            .lines()
            .any(|l| l == "meniscus_indexing_backlog_bytes 0")
            .then_some(())
    });
    assert!(indexed.is_some());
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the data directory");
    let mut open = Vec::new();
    too_open(&data, &mut open);
    assert!(open.is_empty(), "open to others: {open:#?}");
}
