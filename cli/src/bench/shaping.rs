//! What shapes the bench tenant's events (`--pipeline`): nothing, the five-stage VRL pipeline on
//! the node, or the bench itself before the run ("pre-shaped": the same fields published
//! ready-made). The pre-shaped run separates what running VRL costs from what storing and
//! indexing the fields it extracts costs.

use std::sync::Arc;

use anyhow::Context;
use meniscus_event::publish::{self, Limits};
use meniscus_event::Source;
use meniscus_pipeline::{examples, PipelineSpec, Processed, TenantPipelines};
use serde_json::json;
use time::OffsetDateTime;

/// How the bench tenant's events get their fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shaping {
    /// Stored as published.
    None,
    /// Published already carrying what the pipeline would extract; no pipeline on the node.
    Preshaped,
    /// The node runs the five-stage pipeline.
    Pipeline,
}

impl Shaping {
    /// The suffix of a run's label in the report.
    pub(super) fn label(self) -> &'static str {
        match self {
            Shaping::None => "",
            Shaping::Preshaped => " pre",
            Shaping::Pipeline => " vrl",
        }
    }

    /// The name in the JSON report.
    pub(super) fn name(self) -> &'static str {
        match self {
            Shaping::None => "none",
            Shaping::Preshaped => "preshaped",
            Shaping::Pipeline => "pipeline",
        }
    }
}

/// The benchmark's program, as the node stores it.
pub(super) fn five_stages() -> PipelineSpec {
    PipelineSpec {
        source: examples::BENCH_FIVE_STAGES.into(),
        when: None,
        order: 0,
    }
}

/// Each NDJSON event of `pool` as the five-stage pipeline would store it, written back as an
/// event to publish (its fields, timestamp and message as the program left them).
pub(super) fn preshape(pool: &[String]) -> anyhow::Result<Vec<String>> {
    let stage = meniscus_pipeline::compile("five-stages", 1, &five_stages(), Arc::default())
        .context("compiling the benchmark's program")?;
    let pipelines = TenantPipelines::new(vec![Arc::new(stage)]);
    let limits = meniscus_pipeline::Limits::default();
    let now = OffsetDateTime::now_utc();
    pool.iter()
        .map(|line| {
            let draft = publish::parse_ndjson(line.as_bytes(), Limits::default())
                .map_err(|e| anyhow::anyhow!("a pool event does not parse: {e}"))?
                .pop()
                .context("an empty pool line")?;
            let source = Source {
                transport: "http".into(),
                peer: None,
            };
            let event = draft.into_event("bench", now, source, || "pre".into());
            let Processed::Store(shaped) = pipelines.process(event, &limits) else {
                anyhow::bail!("the benchmark's program dropped a pool event");
            };
            if let Some(error) = shaped.fields.get(meniscus_pipeline::ERROR_FIELD) {
                anyhow::bail!("the benchmark's program failed on a pool event: {error}");
            }
            let timestamp = shaped
                .timestamp
                .format(&time::format_description::well_known::Rfc3339)?;
            Ok(json!({
                "timestamp": timestamp,
                "host": shaped.host,
                "app": shaped.app,
                "severity": shaped.severity.map(|s| s.keyword()),
                "message": shaped.message,
                "fields": shaped.fields,
            })
            .to_string())
        })
        .collect()
}
