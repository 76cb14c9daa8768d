//! The HTTP API over HTTPS with a certificate from `meniscus cert`, reached by the CLI with
//! `--cacert` and by curl.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

fn meniscus(args: &[&str]) -> std::process::Output {
    Command::new(common::BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_api_serves_https_with_a_node_certificate_and_the_cli_trusts_cacert() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let certs_s = certs.to_str().unwrap();
    ok(&meniscus(&["cert", "create-ca", "--certs-dir", certs_s]));
    ok(&meniscus(&[
        "cert",
        "create-node",
        "1",
        "--certs-dir",
        certs_s,
        "--host",
        "127.0.0.1",
        "--host",
        "localhost",
    ]));
    let data = dir.path().join("data");
    let mut child = Command::new(common::BIN)
        .args(["dev", "--http", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--http-tls-cert")
        .arg(certs.join("node-1.crt"))
        .arg("--http-tls-key")
        .arg(certs.join("node-1.key"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let _node = common::KillOnDrop(child);
    let addr = common::ready_addr(&mut reader);
    let server = format!("https://{addr}");
    let ca = certs.join("ca.crt");
    let data_s = data.to_str().unwrap();
    let client = |extra: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> = ["--server", server.as_str(), "--data-dir", data_s]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let ca_s: &'static str = Box::leak(ca.to_str().unwrap().to_owned().into_boxed_str());

    // The CLI, trusting the cluster CA.
    let mut send = Command::new(common::BIN)
        .arg("send")
        .args(client(&["--cacert", ca_s, "-"]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    send.stdin
        .take()
        .unwrap()
        .write_all(b"{\"message\": \"over https\"}\n")
        .unwrap();
    ok(&send.wait_with_output().unwrap());
    let found = common::poll_until(std::time::Duration::from_secs(20), || {
        let mut args = vec!["search".to_owned(), "https".to_owned()];
        args.extend(client(&["--cacert", ca_s]));
        let out = Command::new(common::BIN).args(&args).output().unwrap();
        let text = ok(&out);
        text.contains("over https").then_some(())
    });
    assert!(found.is_some(), "the event is found over HTTPS");

    // Without the CA the CLI refuses the certificate, and says it could not connect.
    let mut args = vec!["search".to_owned(), "*".to_owned()];
    args.extend(client(&[]));
    let out = Command::new(common::BIN).args(&args).output().unwrap();
    assert!(!out.status.success());

    // curl, the way an operator checks it.
    if Path::new("/usr/bin/curl").exists() {
        let out = Command::new("curl")
            .args(["-sS", "--cacert", ca.to_str().unwrap()])
            .arg(format!("{server}/readyz"))
            .output()
            .unwrap();
        let body = ok(&out);
        assert!(body.contains("\"ready\":true"), "{body}");
        // Plain HTTP to the HTTPS port gets no answer.
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .arg(format!("http://{addr}/readyz"))
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&out.stdout).contains("ready"));
    }
}
