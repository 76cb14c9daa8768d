//! `GET /metrics` exports every syslog listener's counters, labelled by listener.

mod syslog_common;

use std::io::Write;
use std::net::UdpSocket;
use std::time::Duration;

use syslog_common::{marker, metric, octet_counted, Dir, Listeners, SyslogNode};

const WAIT: Duration = Duration::from_secs(30);

fn rfc5424(sd: &str, msg: &str) -> Vec<u8> {
    octet_counted(&format!(
        "<14>1 2026-11-20T10:00:00Z web01 shop 12 - {sd} {msg}"
    ))
}

#[test]
fn syslog_counters_are_exported_per_listener_and_move_with_traffic() {
    let dir = Dir::new();
    let relp = Some("127.0.0.1:0".parse().unwrap());
    let listeners = Listeners {
        relp,
        ..Listeners::default()
    };
    let node = SyslogNode::start_with(&dir, &listeners);

    let before = node.metrics();
    for line in [
        "# TYPE meniscus_syslog_received_total counter",
        "# TYPE meniscus_syslog_open_connections gauge",
        "# TYPE meniscus_syslog_idle_closed_total counter",
    ] {
        assert!(before.lines().any(|l| l == line), "{line} in:\n{before}");
    }
    for listener in ["tcp", "udp", "relp"] {
        for name in [
            "received_total",
            "stored_total",
            "parse_errors_total",
            "rejected_total",
            "dropped_total",
            "oversized_total",
            "retries_total",
            "protocol_errors_total",
            "connections_total",
            "idle_closed_total",
            "limit_reached_total",
            "open_connections",
        ] {
            let value = metric(&before, &format!("meniscus_syslog_{name}"), listener);
            assert_eq!(value, 0, "{name} of {listener} before any traffic");
        }
    }
    assert!(!before.contains("listener=\"tls\""), "no TLS listener runs");

    // One TCP connection: two valid messages, one with a wrong token, one that is not syslog.
    let word = marker("metricsok");
    let mut stream = node.connect();
    stream.write_all(&rfc5424("-", &word)).unwrap();
    stream.write_all(&rfc5424("-", &word)).unwrap();
    let bad = rfc5424(r#"[meniscus token="msc_not_a_token"]"#, &marker("badtoken"));
    stream.write_all(&bad).unwrap();
    stream.write_all(b"<999>not syslog at all\n").unwrap();
    node.wait_for(&word, 2);
    assert_eq!(
        node.wait_for_metric("meniscus_syslog_open_connections", "tcp", |v| v == 1, WAIT),
        1
    );
    drop(stream);
    // And one datagram.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let datagram = format!(
        "<14>1 2026-11-20T10:00:00Z web01 shop 12 - - {}",
        marker("udp")
    );
    udp.send_to(datagram.as_bytes(), node.udp).unwrap();

    node.wait_for_metric("meniscus_syslog_stored_total", "tcp", |v| v == 3, WAIT);
    node.wait_for_metric("meniscus_syslog_stored_total", "udp", |v| v == 1, WAIT);
    node.wait_for_metric("meniscus_syslog_open_connections", "tcp", |v| v == 0, WAIT);
    let after = node.metrics();
    let tcp = |name: &str| metric(&after, &format!("meniscus_syslog_{name}"), "tcp");
    assert_eq!(tcp("received_total"), 4, "{after}");
    assert_eq!(tcp("rejected_total"), 1, "{after}");
    assert_eq!(tcp("parse_errors_total"), 1, "{after}");
    assert_eq!(tcp("connections_total"), 1, "{after}");
    assert_eq!(tcp("dropped_total"), 0, "{after}");
    assert_eq!(metric(&after, "meniscus_syslog_received_total", "udp"), 1);
    assert_eq!(metric(&after, "meniscus_syslog_received_total", "relp"), 0);
    // The node's own gauges are still there.
    assert!(after.contains("# TYPE meniscus_raft_commit_index gauge"));
}
