//! Compiling and running programs: errors with positions, failures that keep the event,
//! drops on purpose, limits, and what a program may change.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use meniscus_event::{Event, Severity, Source};
use meniscus_pipeline::{
    compile, CompileError, Limits, PipelineCounters, PipelineSpec, Processed, TenantPipelines,
};
use serde_json::json;
use time::OffsetDateTime;

fn event(message: &str) -> Event {
    let now = OffsetDateTime::now_utc();
    meniscus_event::publish::EventDraft {
        message: message.into(),
        app: Some("web".into()),
        ..Default::default()
    }
    .into_event(
        "acme",
        now,
        Source {
            transport: "http".into(),
            peer: None,
        },
        || "id-1".into(),
    )
}

fn spec(source: &str) -> PipelineSpec {
    PipelineSpec {
        source: source.into(),
        when: None,
        order: 0,
    }
}

fn pipelines(stages: &[(&str, u64, PipelineSpec)]) -> TenantPipelines {
    TenantPipelines::new(
        stages
            .iter()
            .map(|(name, version, spec)| {
                Arc::new(compile(name, *version, spec, Arc::default()).expect("compiles"))
            })
            .collect(),
    )
}

fn stored(outcome: Processed) -> Event {
    match outcome {
        Processed::Store(event) => event,
        Processed::Dropped { pipeline } => panic!("dropped by {pipeline}"),
    }
}

fn compile_error(source: &str) -> CompileError {
    compile("p", 1, &spec(source), Arc::default()).expect_err("must not compile")
}

#[test]
fn syntax_and_type_errors_say_where() {
    let syntax = compile_error(".a = 1\n.b = parse_json(.message\n");
    assert_eq!(syntax.part, "source");
    let first = &syntax.diagnostics[0];
    assert_eq!(first.line, 3, "{syntax:?}");
    assert!(
        syntax.rendered.contains("syntax error"),
        "{}",
        syntax.rendered
    );

    let typed = compile_error(".a = 1\n.b = 1 + \"x\"\n");
    assert_eq!(typed.diagnostics[0].line, 2, "{typed:?}");
    assert_eq!(typed.diagnostics[0].column, 6, "{typed:?}");

    // Unhandled errors are type errors too, before anything runs.
    let fallible = compile_error(".fields.x = parse_json(.message)");
    assert_eq!(fallible.diagnostics[0].line, 1);
    assert!(fallible.to_string().contains("fallible"), "{fallible}");

    let when = compile(
        "p",
        1,
        &PipelineSpec {
            when: Some(".app".into()),
            ..spec(".a = 1")
        },
        Arc::default(),
    )
    .expect_err("a `when` that is not boolean");
    assert_eq!(when.part, "when");
    let writes = compile(
        "p",
        1,
        &PipelineSpec {
            when: Some(".x = true".into()),
            ..spec(".a = 1")
        },
        Arc::default(),
    )
    .expect_err("a `when` may not change the event");
    assert_eq!(writes.part, "when");
}

#[test]
fn functions_that_read_files_or_decompress_are_not_there() {
    for source in [
        r#".x = decode_gzip!(.message)"#,
        r#".x = parse_etld!(.message, psl: "/etc/passwd")"#,
        r#".x = parse_groks!(.message, patterns: ["%{GREEDYDATA:x}"], alias_sources: ["/etc/passwd"])"#,
        r#"log(.message)"#,
        r#".x = get_env_var!("HOME")"#,
        r#".x = http_request!("http://127.0.0.1/")"#,
    ] {
        let e = compile_error(source);
        assert!(
            e.rendered.contains("undefined function"),
            "{source}: {}",
            e.rendered
        );
    }
}

#[test]
fn keys_that_are_not_event_fields_land_under_fields_and_identity_stays() {
    let p = pipelines(&[(
        "shape",
        5,
        spec(
            r#".user = "bob"
.fields.n = 2
.severity = "warn"
.host = "web-1"
.tenant = "someone-else"
.id = "forged"
.timestamp = parse_timestamp!("2026-12-08T10:00:00Z", "%+")
del(.app)"#,
        ),
    )]);
    let original = event("hello");
    let e = stored(p.process(original.clone(), &Limits::default()));
    assert_eq!(e.fields["user"], "bob");
    assert_eq!(e.fields["n"], 2);
    assert_eq!(e.fields["pipelines"], json!({"shape": 5}));
    assert_eq!(e.severity, Some(Severity::Warning));
    assert_eq!(e.host.as_deref(), Some("web-1"));
    assert_eq!(e.app, None);
    assert_eq!(
        e.tenant, "acme",
        "a program cannot move an event to another tenant"
    );
    assert_eq!(e.id, original.id);
    assert_eq!(e.received_at, original.received_at);
    assert_eq!(e.timestamp.unix_timestamp(), 1_796_724_000);
}

#[test]
fn a_failing_program_stores_the_event_as_it_came_with_the_error() {
    let counters = Arc::new(PipelineCounters::default());
    let stage = compile(
        "parse",
        9,
        &spec(".fields = merge(.fields, object!(parse_json!(.message)))\n.message = \"changed\""),
        counters.clone(),
    )
    .unwrap();
    let p = TenantPipelines::new(vec![Arc::new(stage)]);
    let original = event("not json");
    let e = stored(p.process(original.clone(), &Limits::default()));
    assert_eq!(e.message, "not json");
    let error = e.fields["pipeline_error"].as_str().unwrap();
    assert!(
        error.starts_with("parse (version 9): ") && error.contains("unable to parse json"),
        "{error}"
    );
    assert_eq!(counters.failed.load(Ordering::Relaxed), 1);
    assert_eq!(counters.events_in.load(Ordering::Relaxed), 1);
}

#[test]
fn abort_drops_on_purpose_and_is_counted() {
    let counters = Arc::new(PipelineCounters::default());
    let stage = compile(
        "drop-debug",
        3,
        &PipelineSpec {
            source: "abort".into(),
            when: Some(r#"contains(.message, "debug")"#.into()),
            order: 0,
        },
        counters.clone(),
    )
    .unwrap();
    let p = TenantPipelines::new(vec![Arc::new(stage)]);
    assert!(
        matches!(p.process(event("debug: x"), &Limits::default()), Processed::Dropped { pipeline } if pipeline == "drop-debug")
    );
    let kept = stored(p.process(event("error: y"), &Limits::default()));
    assert_eq!(kept.message, "error: y");
    assert!(
        !kept.fields.contains_key("pipelines"),
        "no pipeline ran on it"
    );
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 1);
    assert_eq!(counters.events_in.load(Ordering::Relaxed), 1);
}

#[test]
fn pipelines_run_in_order_each_recording_its_version() {
    let p = pipelines(&[
        (
            "second",
            20,
            PipelineSpec {
                order: 2,
                ..spec(r#".message = .message + " b""#)
            },
        ),
        (
            "first",
            10,
            PipelineSpec {
                order: 1,
                ..spec(r#".message = .message + " a""#)
            },
        ),
        (
            "never",
            30,
            PipelineSpec {
                order: 3,
                when: Some(r#".app == "db""#.into()),
                ..spec("abort")
            },
        ),
    ]);
    let e = stored(p.process(event("x"), &Limits::default()));
    assert_eq!(e.message, "x a b");
    assert_eq!(e.fields["pipelines"], json!({"first": 10, "second": 20}));
}

#[test]
fn a_program_that_runs_too_long_is_stopped_and_the_event_kept() {
    let p = pipelines(&[(
        "spin",
        4,
        spec(
            r#"n = 0
for_each(range!(0, 100000)) -> |_i, _a| {
  for_each(range!(0, 100000)) -> |_j, _b| { n = n + 1 }
}
.fields.n = n"#,
        ),
    )]);
    let limits = Limits {
        max_run_time: Duration::from_millis(20),
        ..Limits::default()
    };
    let started = std::time::Instant::now();
    let e = stored(p.process(event("x"), &limits));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(e.message, "x");
    let error = e.fields["pipeline_error"].as_str().unwrap();
    assert!(error.contains("time limit"), "{error}");
}

#[test]
fn an_event_grown_past_the_limit_is_kept_as_it_came() {
    let p = pipelines(&[(
        "grow",
        2,
        spec(
            r#".fields.big = join!([.message, .message, .message, .message, .message, .message, .message, .message])"#,
        ),
    )]);
    let limits = Limits {
        max_event_bytes: 4096,
        ..Limits::default()
    };
    let e = stored(p.process(event(&"x".repeat(1000)), &limits));
    assert!(!e.fields.contains_key("big"));
    let error = e.fields["pipeline_error"].as_str().unwrap();
    assert!(error.contains("4096 bytes"), "{error}");
}

#[test]
fn fields_a_program_does_not_touch_come_back_as_they_were() {
    let p = pipelines(&[("touch", 3, spec(".fields.seen = true"))]);
    let mut original = event("hello");
    let fields = json!({
        "small": -7,
        "large": u64::MAX,
        "float": 2.5,
        "flag": false,
        "nothing": null,
        "list": [1, "two", {"three": 3.0}],
        "nested": {"deeper": {"text": "ünïcode ✓"}},
    });
    original.fields = fields.as_object().unwrap().clone();
    original.structured_data.insert(
        "origin@1".into(),
        [("ip".to_owned(), "10.0.0.1".to_owned())].into(),
    );
    let e = stored(p.process(original.clone(), &Limits::default()));
    for (key, value) in fields.as_object().unwrap() {
        // A u64 beyond i64 reaches VRL as text, as VRL's own conversion makes it.
        let expected = match key.as_str() {
            "large" => json!(u64::MAX.to_string()),
            _ => value.clone(),
        };
        assert_eq!(e.fields[key], expected, "{key}");
    }
    assert_eq!(e.fields["seen"], true);
    assert_eq!(e.structured_data, original.structured_data);
    assert_eq!(e.source, original.source);
    assert_eq!(e.message, original.message);
}

#[test]
fn bytes_that_are_not_utf8_are_stored_lossily_and_a_shape_error_keeps_the_original() {
    let p = pipelines(&[(
        "bytes",
        1,
        spec(".fields.raw = decode_base64!(\"/w==\")\n.top = decode_base64!(\"/w==\")"),
    )]);
    let e = stored(p.process(event("x"), &Limits::default()));
    assert_eq!(e.fields["raw"], "\u{fffd}");
    assert_eq!(e.fields["top"], "\u{fffd}");

    // `.facility` must name a facility: found only once the program has run.
    let p = pipelines(&[(
        "facility",
        2,
        spec(".facility = \"nonsense\"\n.message = \"changed\""),
    )]);
    let original = event("as it came");
    let e = stored(p.process(original.clone(), &Limits::default()));
    assert_eq!(e.message, "as it came");
    assert_eq!(e.id, original.id);
    assert_eq!(e.tenant, original.tenant);
    assert_eq!(e.source, original.source);
    let error = e.fields["pipeline_error"].as_str().unwrap();
    assert!(
        error.starts_with("facility (version 2): ") && error.contains("facility"),
        "{error}"
    );
}
