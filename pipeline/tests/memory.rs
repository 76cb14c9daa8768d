//! A program that grows its event without end is stopped by its memory limit, long before the
//! machine runs out, and the event is kept as it came.

use std::alloc::System;
use std::sync::Arc;

use meniscus_event::Source;
use meniscus_pipeline::memory::{self, CountingAllocator};
use meniscus_pipeline::{compile, Limits, PipelineSpec, Processed, TenantPipelines};
use time::OffsetDateTime;

#[global_allocator]
static GLOBAL: CountingAllocator<System> = CountingAllocator(System);

fn pipelines(source: &str) -> TenantPipelines {
    let spec = PipelineSpec {
        source: source.into(),
        when: None,
        order: 0,
    };
    TenantPipelines::new(vec![Arc::new(
        compile("grow", 4, &spec, Arc::default()).expect("compiles"),
    )])
}

fn event(message: String) -> meniscus_event::Event {
    meniscus_event::publish::EventDraft {
        message,
        ..Default::default()
    }
    .into_event("acme", OffsetDateTime::now_utc(), Source::default(), || {
        "id-1".into()
    })
}

#[test]
fn the_allocator_counts_what_this_thread_holds() {
    let before = memory::held_by_this_thread();
    let block = vec![0u8; 10 << 20];
    let during = memory::held_by_this_thread();
    drop(block);
    let after = memory::held_by_this_thread();
    assert!(during - before >= 10 << 20, "{before} -> {during}");
    assert!(after < during, "{during} -> {after}");
}

#[test]
fn doubling_the_message_without_end_is_stopped_at_the_memory_limit() {
    // 48 doublings of 1 KiB would be 256 TiB; each line is one expression, and the run looks
    // at the thread's memory between expressions.
    let program = ".message = .message + .message\n".repeat(48);
    let p = pipelines(&program);
    let limits = Limits {
        max_memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let before = memory::held_by_this_thread();
    let original = "x".repeat(1024);
    let Processed::Store(e) = p.process(event(original.clone()), &limits) else {
        panic!("nothing drops");
    };
    assert_eq!(e.message, original, "kept as it came");
    let error = e.fields["pipeline_error"].as_str().unwrap();
    assert!(
        error.starts_with("grow (version 4): ") && error.contains("memory"),
        "{error}"
    );
    // Everything the run held is given back.
    assert!(memory::held_by_this_thread() - before < 1 << 20);

    // A program within the limit runs as ever.
    let p = pipelines(&".message = .message + .message\n".repeat(4));
    let Processed::Store(e) = p.process(event(original.clone()), &limits) else {
        panic!("nothing drops");
    };
    assert!(!e.fields.contains_key("pipeline_error"));
    assert_eq!(e.message.len(), 16 * 1024);
}
