//! Programs nested deeper than VRL's recursion can take on a thread's stack are refused from
//! their text; the deepest accepted compile, run and drop on a 2 MiB stack (a tokio thread's).

use std::sync::Arc;

use meniscus_pipeline::{
    compile, Limits, PipelineSpec, Processed, TenantPipelines, MAX_NESTING, MAX_SOURCE_BYTES,
};

fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .expect("no overflow");
}

fn spec(source: String) -> PipelineSpec {
    PipelineSpec {
        source,
        when: None,
        order: 0,
    }
}

fn compile_and_run(source: String) -> Result<(), String> {
    let stage = compile("deep", 1, &spec(source), Arc::default()).map_err(|e| e.rendered)?;
    let pipelines = TenantPipelines::new(vec![Arc::new(stage)]);
    let event = meniscus_event::publish::EventDraft {
        message: "x".into(),
        ..Default::default()
    }
    .into_event(
        "t",
        time::OffsetDateTime::now_utc(),
        Default::default(),
        || "id".into(),
    );
    match pipelines.process(event, &Limits::default()) {
        Processed::Store(e) => match e.fields.get("pipeline_error") {
            Some(error) => Err(error.to_string()),
            None => Ok(()),
        },
        Processed::Dropped { .. } => Err("dropped".into()),
    }
}

#[test]
fn the_longest_programs_of_chains_and_brackets_are_refused_before_compiling() {
    let n = (MAX_SOURCE_BYTES - 16) / 4;
    let chain = format!(".fields.n = 1{}", " + 1".repeat(n));
    let error = compile_and_run(chain).expect_err("too deep");
    assert!(error.contains("nests deeper"), "{error}");
    for (open, close) in [("(", ")"), ("[", "]"), ("{", "}"), ("!", "")] {
        let n = (MAX_SOURCE_BYTES - 16) / 2;
        let source = format!(".fields.n = {}1{}", open.repeat(n), close.repeat(n));
        let error = compile_and_run(source).expect_err("too deep");
        assert!(error.contains("nests deeper"), "{open}: {error}");
    }
    // Nested brackets each holding a chain add up.
    let source = format!(
        ".fields.n = {}1{}",
        "(1 + 1 + 1 + ".repeat(60),
        ")".repeat(60)
    );
    assert!(compile_and_run(source).is_err());
}

#[test]
fn the_deepest_accepted_programs_run_on_a_small_stack() {
    let half = MAX_NESTING / 2 - 2;
    on_small_stack(move || {
        let chain = format!(".fields.n = 1{}", " + 1".repeat(MAX_NESTING - 2));
        compile_and_run(chain).expect("a chain at the limit runs");
        let brackets = format!(
            ".fields.n = {}1{}",
            "(".repeat(MAX_NESTING - 2),
            ")".repeat(MAX_NESTING - 2)
        );
        compile_and_run(brackets).expect("brackets at the limit run");
        let mixed = format!(".fields.n = {}1{}", "(1 + ".repeat(half), ")".repeat(half));
        compile_and_run(mixed).expect("mixed nesting at the limit runs");
        let array = format!(
            ".fields.n = {}1{}",
            "[".repeat(MAX_NESTING - 2),
            "]".repeat(MAX_NESTING - 2)
        );
        // Values nested past MAX_DEPTH are refused when stored, not by the stack.
        let _ = compile_and_run(array);
    });
}

#[test]
fn ordinary_programs_are_far_from_the_limit() {
    for example in meniscus_pipeline::examples::all() {
        compile("e", 1, &spec(example.source.into()), Arc::default())
            .unwrap_or_else(|e| panic!("{}: {}", example.name, e.rendered));
    }
    let many_lines = ".fields.a = 1 + 2\n".repeat(2_000);
    compile("lines", 1, &spec(many_lines), Arc::default()).expect("statements do not nest");
}

#[test]
fn a_condition_of_thirty_alternatives_is_accepted() {
    let alternatives: Vec<String> = (0..30).map(|i| format!(".app == \"a{i}\"")).collect();
    let when = alternatives.join(" || ");
    let spec = PipelineSpec {
        source: ".fields.x = 1".into(),
        when: Some(when),
        order: 0,
    };
    compile("when", 1, &spec, Arc::default()).unwrap_or_else(|e| panic!("{}", e.rendered));
}
