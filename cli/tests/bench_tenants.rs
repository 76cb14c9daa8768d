//! `meniscus bench-tenants` runs end to end on a few tenants: it starts its node, creates the
//! tenants, checks each finds its own events and none of another's, and reports the node's
//! resources per tenant. (Its figures are for the README; here only that it works.)

mod common;

use std::process::Command;

#[test]
fn bench_tenants_creates_checks_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::BIN)
        .args(["bench-tenants", "--tenants", "12", "--report-every", "5"])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("running meniscus bench-tenants");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A line per report: 0, 5, 10, 12 tenants.
    let reported: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|row| row.len() == 6 && row.iter().all(|w| w.parse::<f64>().is_ok()))
        .map(|row| row[0])
        .collect();
    assert_eq!(reported, ["0", "5", "10", "12"], "{stdout}");
    assert!(
        stdout.contains("12 of them found their own 3 events and none of another's"),
        "{stdout}"
    );
    assert!(stdout.contains("per tenant: "), "{stdout}");
    // The node it started is gone, and so is its data directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
