//! `--config FILE`: a node started from a TOML file uses its settings; flags override them.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn a_node_starts_from_a_toml_file_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-file");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "data-dir = {:?}\nhttp = \"127.0.0.1:1\"\ncommit-interval-ms = 100\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    // The file's port 1 would fail to bind: the flag wins.
    let mut child = Command::new(env!("CARGO_BIN_EXE_meniscus"))
        .args(["dev", "--config"])
        .arg(&config)
        .args(["--http", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("meniscus: http listening on 127.0.0.1:"),
        "{line}"
    );
    assert!(
        data.join("credentials.json").exists(),
        "the data directory comes from the file"
    );

    std::fs::write(&config, "http = [").unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_meniscus"))
        .args(["dev", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("is not valid TOML"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn an_advertised_raft_address_that_contradicts_the_initial_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meniscus"))
        .args(["start", "--node-id", "1"])
        .args(["--initial-cluster", "1=127.0.0.1:7001,2=127.0.0.1:7002"])
        .args(["--raft-advertise", "127.0.0.1:7999"])
        .args(["--http", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--raft-advertise 127.0.0.1:7999 differs from node 1's address in --initial-cluster (127.0.0.1:7001)"),
        "{stderr}"
    );
}
