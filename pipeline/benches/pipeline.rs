//! Events per second through the benchmark's five-stage program on one core, next to the cost
//! every event pays without a pipeline (none: `process` returns it as it is) and the cost of
//! only turning an event into VRL's value and back. `cargo bench -p meniscus-pipeline`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use meniscus_event::{Event, Source};
use meniscus_pipeline::{compile, examples, Limits, PipelineSpec, Processed, TenantPipelines};

fn events(n: u64) -> Vec<Event> {
    let now = time::OffsetDateTime::now_utc();
    (0..n)
        .map(|i| {
            meniscus_event::publish::EventDraft {
                message: examples::bench_access_line(i),
                app: Some("nginx".into()),
                host: Some("web-01".into()),
                ..Default::default()
            }
            .into_event(
                "bench",
                now,
                Source {
                    transport: "http".into(),
                    peer: None,
                },
                || format!("e{i}"),
            )
        })
        .collect()
}

fn pipelines(source: Option<&str>) -> TenantPipelines {
    let stages = source
        .map(|source| {
            let spec = PipelineSpec {
                source: source.into(),
                when: None,
                order: 0,
            };
            vec![Arc::new(
                compile("bench", 1, &spec, Arc::default()).expect("compiles"),
            )]
        })
        .unwrap_or_default();
    TenantPipelines::new(stages)
}

fn bench(c: &mut Criterion) {
    const BATCH: u64 = 1_000;
    let batch = events(BATCH);
    let limits = Limits::default();
    let mut group = c.benchmark_group("process_1000_events");
    group.throughput(Throughput::Elements(BATCH));
    for (name, source) in [
        ("no_pipeline", None),
        ("convert_only", Some(".fields.seen = true")),
        ("five_stages", Some(examples::BENCH_FIVE_STAGES)),
        // Each stage alone, to see where the five stages' time goes.
        (
            "stage_parse_nginx_log",
            Some(r#"p = parse_nginx_log!(.message, "combined")"#),
        ),
        (
            "stage_parse_regex",
            Some(r#"t = parse_regex!(.message, r'\[(?P<t>[^\]]+)\]')"#),
        ),
        (
            "stage_parse_timestamp",
            Some(
                r#".timestamp = parse_timestamp!("08/Dec/2026:10:00:00 +0000", "%d/%b/%Y:%H:%M:%S %z")"#,
            ),
        ),
        (
            "stage_redact",
            Some(
                r#".fields.client = redact("10.1.2.3", filters: [r'\d+$'], redactor: {"type": "text", "replacement": "x"})"#,
            ),
        ),
    ] {
        let pipelines = pipelines(source);
        group.bench_with_input(BenchmarkId::from_parameter(name), &batch, |b, batch| {
            b.iter_batched(
                || batch.clone(),
                |batch| {
                    for event in batch {
                        match pipelines.process(event, &limits) {
                            Processed::Store(e) => {
                                assert!(!e.fields.contains_key("pipeline_error"))
                            }
                            Processed::Dropped { .. } => unreachable!("nothing drops"),
                        }
                    }
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
