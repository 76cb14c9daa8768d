//! Every example of the library, run on real sample lines: the fields an operator would search.

use meniscus_event::syslog::{self, Format};
use meniscus_event::{Event, Source};
use meniscus_pipeline::{compile, examples, Limits, PipelineSpec, Processed, TenantPipelines};
use serde_json::{json, Value};
use std::sync::Arc;
use time::OffsetDateTime;

/// The event a syslog listener makes of `line`, with its tag set to `app`.
fn event(app: &str, message: &str) -> Event {
    let now = OffsetDateTime::now_utc();
    let mut draft = syslog::parse(message.as_bytes(), Format::Rfc5424, now).into_draft();
    draft.app = Some(app.into());
    draft.message = message.into();
    draft.fields.clear();
    draft.into_event(
        "acme",
        now,
        Source {
            transport: "syslog-tcp".into(),
            peer: None,
        },
        || "e1".into(),
    )
}

fn run(name: &str, app: &str, line: &str) -> Event {
    let example = examples::find(name).unwrap_or_else(|| panic!("no example {name}"));
    let spec = PipelineSpec {
        source: example.source.into(),
        when: example.when.map(Into::into),
        order: 0,
    };
    let stage = compile(name, 7, &spec, Arc::default())
        .unwrap_or_else(|e| panic!("example {name} does not compile: {}", e.rendered));
    let pipelines = TenantPipelines::new(vec![Arc::new(stage)]);
    match pipelines.process(event(app, line), &Limits::default()) {
        Processed::Store(event) => {
            assert_eq!(
                event.fields.get("pipeline_error"),
                None,
                "example {name} failed on {line:?}"
            );
            assert_eq!(
                event.fields["pipelines"],
                json!({ name: 7 }),
                "example {name} did not run on {line:?} (its `when`?)"
            );
            event
        }
        Processed::Dropped { .. } => panic!("example {name} dropped {line:?}"),
    }
}

fn fields(event: &Event, expected: Value) {
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(
            event.fields.get(key),
            Some(value),
            "fields.{key} of {:?}",
            event.fields
        );
    }
}

#[test]
fn every_example_compiles_and_runs_on_its_sample() {
    let apps = [
        ("nginx-access", "nginx"),
        ("nginx-error", "nginx"),
        ("apache-access", "httpd"),
        ("apache-error", "httpd"),
        ("sshd-auth", "sshd"),
        ("sudo", "sudo"),
        ("iptables", "kernel"),
        ("haproxy", "haproxy"),
        ("postgres", "postgres"),
        ("json-message", "app"),
        ("key-value", "app"),
        ("redact", "app"),
    ];
    assert_eq!(
        apps.len(),
        examples::all().len(),
        "an example without a test"
    );
    for (name, app) in apps {
        run(name, app, examples::find(name).unwrap().sample);
    }
}

#[test]
fn nginx_access_lines_become_status_bytes_path_and_time() {
    let e = run(
        "nginx-access",
        "nginx",
        r#"10.0.0.7 - - [08/Dec/2026:10:15:32 +0000] "GET /missing HTTP/1.1" 404 512 "-" "curl/8.5.0""#,
    );
    fields(
        &e,
        json!({"client": "10.0.0.7", "status": 404, "bytes": 512, "method": "GET",
               "path": "/missing", "protocol": "HTTP/1.1", "user_agent": "curl/8.5.0"}),
    );
    assert_eq!(e.timestamp.unix_timestamp(), 1_796_724_932);
}

#[test]
fn nginx_error_lines_give_severity_and_client() {
    let e = run(
        "nginx-error",
        "nginx",
        examples::find("nginx-error").unwrap().sample,
    );
    assert_eq!(e.severity.map(|s| s.keyword()), Some("err"));
    fields(
        &e,
        json!({"client": "10.0.0.7", "server": "localhost", "pid": 1234}),
    );
}

#[test]
fn apache_lines_give_the_same_fields() {
    let e = run(
        "apache-access",
        "httpd",
        examples::find("apache-access").unwrap().sample,
    );
    fields(
        &e,
        json!({"client": "192.168.1.20", "user": "bob", "method": "POST", "path": "/login",
               "status": 302, "bytes": 0}),
    );
    let e = run(
        "apache-error",
        "httpd",
        examples::find("apache-error").unwrap().sample,
    );
    fields(
        &e,
        json!({"module": "core", "pid": 4242, "client": "10.0.0.9"}),
    );
}

#[test]
fn sshd_logins_give_user_source_and_result() {
    let failed = run(
        "sshd-auth",
        "sshd",
        "Failed password for invalid user admin from 203.0.113.9 port 52214 ssh2",
    );
    fields(
        &failed,
        json!({"user": "admin", "source_ip": "203.0.113.9", "source_port": 52214,
               "auth_method": "password", "result": "failure"}),
    );
    let accepted = run(
        "sshd-auth",
        "sshd",
        "Accepted publickey for alice from 10.0.0.5 port 50000 ssh2: ED25519 SHA256:abc",
    );
    fields(
        &accepted,
        json!({"user": "alice", "source_ip": "10.0.0.5", "result": "success"}),
    );
    let invalid = run(
        "sshd-auth",
        "sshd",
        "Invalid user oracle from 198.51.100.4 port 4444",
    );
    fields(
        &invalid,
        json!({"user": "oracle", "source_ip": "198.51.100.4", "result": "failure"}),
    );
}

#[test]
fn sudo_lines_give_who_ran_what_as_whom() {
    let e = run("sudo", "sudo", examples::find("sudo").unwrap().sample);
    fields(
        &e,
        json!({"user": "alice", "tty": "pts/0", "cwd": "/home/alice", "run_as": "root",
               "command": "/usr/bin/systemctl restart nginx"}),
    );
}

#[test]
fn packet_filter_lines_give_addresses_and_ports() {
    let e = run(
        "iptables",
        "kernel",
        examples::find("iptables").unwrap().sample,
    );
    fields(
        &e,
        json!({"rule": "[UFW BLOCK]", "in_interface": "eth0", "source_ip": "198.51.100.23",
               "destination_ip": "10.0.0.5", "protocol": "TCP", "source_port": 40000,
               "destination_port": 22, "length": 60}),
    );
}

#[test]
fn haproxy_lines_give_backend_status_and_duration() {
    let e = run(
        "haproxy",
        "haproxy",
        examples::find("haproxy").unwrap().sample,
    );
    fields(
        &e,
        json!({"client": "10.0.0.1", "frontend": "www", "backend": "app", "server": "web1",
               "status": 200, "bytes": 2048, "duration_ms": 13, "method": "GET",
               "path": "/index.html"}),
    );
}

#[test]
fn postgres_lines_give_duration_and_statement() {
    let e = run(
        "postgres",
        "postgres",
        examples::find("postgres").unwrap().sample,
    );
    fields(
        &e,
        json!({"pid": 4321, "level": "LOG", "duration_ms": 1523.1,
               "statement": "SELECT * FROM orders WHERE total > 100"}),
    );
    assert_eq!(e.timestamp.unix_timestamp(), 1_796_724_932);
}

#[test]
fn json_and_key_value_messages_become_fields() {
    let e = run(
        "json-message",
        "app",
        examples::find("json-message").unwrap().sample,
    );
    assert_eq!(e.message, "payment failed");
    assert_eq!(e.severity.map(|s| s.keyword()), Some("err"));
    fields(&e, json!({"order_id": 1234, "amount": 99.5}));
    let e = run(
        "key-value",
        "app",
        examples::find("key-value").unwrap().sample,
    );
    fields(
        &e,
        json!({"level": "warn", "msg": "disk almost full", "mount": "/var", "used_pct": "91"}),
    );
}

#[test]
fn redaction_masks_cards_addresses_and_bearer_tokens() {
    let e = run("redact", "app", examples::find("redact").unwrap().sample);
    for secret in ["4111", "jane.doe", "example.com", "eyJhbGciOiJIUzI1NiJ9"] {
        assert!(
            !e.message.contains(secret),
            "{secret} left in {:?}",
            e.message
        );
    }
    assert!(
        e.message.starts_with("charge ok card=[REDACTED]"),
        "{}",
        e.message
    );
}

#[test]
fn the_benchmark_program_shapes_its_lines_without_errors() {
    let spec = PipelineSpec {
        source: examples::BENCH_FIVE_STAGES.into(),
        when: None,
        order: 0,
    };
    let stage = compile("bench", 1, &spec, Arc::default()).expect("compiles");
    let pipelines = TenantPipelines::new(vec![Arc::new(stage)]);
    for n in [0, 1, 3, 4, 12_345] {
        let e = match pipelines.process(
            event("nginx", &examples::bench_access_line(n)),
            &Limits::default(),
        ) {
            Processed::Store(e) => e,
            Processed::Dropped { .. } => panic!("dropped"),
        };
        assert_eq!(e.fields.get("pipeline_error"), None, "{:?}", e.fields);
        assert!(
            e.fields["client"].as_str().unwrap().ends_with(".x"),
            "{:?}",
            e.fields
        );
        assert!(e.fields["status_class"].is_string());
    }
}
