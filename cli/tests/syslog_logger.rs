//! Real senders: util-linux `logger` speaking RFC 5424 over TCP with octet counting, and
//! RFC 3164 over UDP, to `meniscus dev`; the events are then found through the search API.

mod syslog_common;

use syslog_common::{logger, marker, Dir, SyslogNode};

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("reading the hostname")
        .trim()
        .to_owned()
}

#[test]
fn logger_rfc5424_over_tcp_with_octet_counting_is_searchable() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let word = marker("tcpfivefour");
    let message = format!("disk almost full {word}");
    let port = node.tcp.port().to_string();
    logger(&[
        "--tcp",
        "--octet-count",
        "--rfc5424",
        "-n",
        "127.0.0.1",
        "-P",
        &port,
        "-t",
        "diskmon",
        "--id=4242",
        "--msgid",
        "DISK7",
        "-p",
        "local3.warning",
        "--sd-id",
        "zoo@32473",
        "--sd-param",
        r#"tiger="hungry \"very\"""#,
        &message,
    ]);

    let found = node.wait_for(&word, 1);
    assert_eq!(found.len(), 1, "{found:?}");
    let e = &found[0];
    assert_eq!(e["message"], message.as_str());
    assert_eq!(e["host"], hostname().as_str());
    assert_eq!(e["app"], "diskmon");
    assert_eq!(e["procid"], "4242");
    assert_eq!(e["msgid"], "DISK7");
    assert_eq!(e["facility"], "local3");
    assert_eq!(e["severity"], "warning");
    assert_eq!(e["tenant"], "default");
    assert_eq!(e["source"]["transport"], "syslog-tcp");
    assert!(e["source"]["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(
        e["structured_data"]["zoo@32473"]["tiger"],
        r#"hungry "very""#
    );
    // logger adds its own RFC 5424 timeQuality element.
    assert!(e["structured_data"]["timeQuality"].is_object(), "{e}");
    assert!(e.get("fields").is_none(), "no parse_error expected: {e}");

    // The keyword fields are searchable as such.
    let by_fields = node.search(&format!("{word} AND severity:warning AND app:diskmon"));
    assert_eq!(by_fields.len(), 1);
}

#[test]
fn logger_rfc3164_over_udp_is_searchable() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let word = marker("udpbsd");
    let message = format!("link down on eth0 {word}");
    let port = node.udp.port().to_string();
    logger(&[
        "--udp",
        "--rfc3164",
        "-n",
        "127.0.0.1",
        "-P",
        &port,
        "-t",
        "netwatch",
        "--id=77",
        "-p",
        "daemon.err",
        &message,
    ]);

    let found = node.wait_for(&word, 1);
    let e = &found[0];
    assert_eq!(e["message"], message.as_str());
    assert_eq!(e["host"], hostname().as_str());
    assert_eq!(e["app"], "netwatch");
    assert_eq!(e["procid"], "77");
    assert_eq!(e["facility"], "daemon");
    assert_eq!(e["severity"], "err");
    assert_eq!(e["source"]["transport"], "syslog-udp");
    assert!(e.get("fields").is_none(), "no parse_error expected: {e}");
    assert!(node.search(&format!("{word} AND facility:daemon")).len() == 1);
}

#[test]
fn logger_sends_many_lines_on_one_connection_and_all_are_stored() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let word = marker("many");
    let file = dir.path.join("lines.txt");
    let lines: String = (0..500).map(|i| format!("line {i} {word}\n")).collect();
    std::fs::write(&file, lines).unwrap();
    let port = node.tcp.port().to_string();
    logger(&[
        "--tcp",
        "--octet-count",
        "--rfc5424",
        "-n",
        "127.0.0.1",
        "-P",
        &port,
        "-t",
        "bulk",
        "-f",
        file.to_str().unwrap(),
    ]);
    let found = node.wait_for(&word, 500);
    assert_eq!(found.len(), 500);
    let mut numbers: Vec<u64> = found
        .iter()
        .map(|e| {
            let m = e["message"].as_str().unwrap();
            m.split(' ').nth(1).unwrap().parse().unwrap()
        })
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..500).collect::<Vec<_>>());
}

#[test]
fn a_meniscus_token_from_logger_routes_to_its_tenant_and_is_never_stored() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let acme = node.create_tenant("acme");
    let word = marker("routed");
    let port = node.tcp.port().to_string();
    let token_param = format!(r#"token="{acme}""#);
    logger(&[
        "--tcp",
        "--octet-count",
        "--rfc5424",
        "-n",
        "127.0.0.1",
        "-P",
        &port,
        "-t",
        "billing",
        "--sd-id",
        "meniscus@32473",
        "--sd-param",
        r#"tenant="acme""#,
        "--sd-param",
        &token_param,
        "--sd-id",
        "order@32473",
        "--sd-param",
        r#"id="17""#,
        &format!("invoice sent {word}"),
    ]);

    let found = node.wait_for_as(&acme, &word, 1);
    let e = &found[0];
    assert_eq!(e["tenant"], "acme");
    assert_eq!(e["app"], "billing");
    assert_eq!(e["structured_data"]["order@32473"]["id"], "17");
    assert!(
        e["structured_data"].get("meniscus@32473").is_none(),
        "the credentials element must be removed: {e}"
    );
    assert!(!e.to_string().contains(&acme), "the token was stored: {e}");
    assert!(node.search_as(&acme, &format!("\"{acme}\"")).is_empty());
    // Bound to `default`, but the token said acme: nothing went to default.
    assert!(node.search(&word).is_empty());
}

#[test]
fn a_message_sent_again_with_the_same_meniscus_id_is_stored_once() {
    let dir = Dir::new();
    let node = SyslogNode::start(&dir);
    let word = marker("resent");
    let port = node.tcp.port().to_string();
    let send = |id: &str, text: &str| {
        logger(&[
            "--tcp",
            "--octet-count",
            "--rfc5424",
            "-n",
            "127.0.0.1",
            "-P",
            &port,
            "-t",
            "orders",
            "--sd-id",
            "meniscus@32473",
            "--sd-param",
            &format!(r#"id="{id}""#),
            &format!("{text} {word}"),
        ]);
    };
    // A sender that lost the acknowledgement sends the same message again; another message
    // with its own id is a different event.
    send("order-42", "first copy");
    node.wait_for(&format!("\"first copy\" AND {word}"), 1);
    send("order-42", "second copy");
    send("order-43", "other order");
    node.wait_for(&format!("\"other order\" AND {word}"), 1);
    // The last copy wins, as an HTTP retry with the same id does.
    let found = node.wait_for(&format!("\"second copy\" AND {word}"), 1);
    assert_eq!(found[0]["id"], "order-42");
    assert!(
        found[0]["structured_data"].get("meniscus@32473").is_none(),
        "the meniscus element must be removed: {}",
        found[0]
    );
    assert!(node
        .search(&format!("\"first copy\" AND {word}"))
        .is_empty());
    assert_eq!(node.count(&word), 2);
    assert_eq!(node.search("id:\"order-43\"").len(), 1);
}
