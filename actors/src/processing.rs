//! Processing on the receiving node: each tenant's pipelines, compiled once per version and
//! run on a batch before it is proposed, so every replica stores the same bytes.
//!
//! The pipelines live in the metadata group. A node notices a change by the index of the last
//! entry that changed any pipeline (one read per batch) and compiles the tenant's pipelines
//! again on its next batch, keeping the versions it has compiled already. A batch runs under
//! one set of versions from start to end: during a change each event is shaped by the old
//! version or the new one, never by neither.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use meniscus_event::Event;
use meniscus_pipeline::{
    CompiledPipeline, Limits, PipelineCounters, PipelineSpec, Processed, TenantPipelines,
};
use meniscus_storage::{
    ApplyOutcome, CommandKind, DeletePipeline, Metadata, PipelineRecord, PutPipeline,
};
use time::OffsetDateTime;

use crate::{Error, Node, Result};

/// One tenant's compiled pipelines, as of a point in the metadata log.
struct Compiled {
    changed_at: u64,
    pipelines: Arc<TenantPipelines>,
}

/// Counters of one pipeline, across its versions.
#[derive(Debug, Clone)]
pub struct PipelineStats {
    /// The tenant.
    pub tenant: String,
    /// The pipeline.
    pub pipeline: String,
    /// Its counts.
    pub counters: Arc<PipelineCounters>,
}

/// Every tenant's compiled pipelines on this node.
pub struct Processing {
    metadata: Metadata,
    limits: Limits,
    compiled: Mutex<HashMap<String, Compiled>>,
    counters: Mutex<HashMap<(String, String), Arc<PipelineCounters>>>,
}

impl Processing {
    pub(crate) fn new(metadata: Metadata, limits: Limits) -> Self {
        Processing {
            metadata,
            limits,
            compiled: Mutex::default(),
            counters: Mutex::default(),
        }
    }

    /// The tenant's compiled pipelines when they are current as of `changed_at`.
    fn cached(&self, tenant: &str, changed_at: u64) -> Option<Arc<TenantPipelines>> {
        let compiled = self.compiled.lock().expect("pipelines lock poisoned");
        compiled
            .get(tenant)
            .filter(|c| c.changed_at == changed_at)
            .map(|c| c.pipelines.clone())
    }

    /// The tenant's pipelines as the metadata group held them at `changed_at`, compiled again
    /// (keeping the versions compiled already). CPU work: called off the async workers, and
    /// without holding the lock other tenants' publishes take.
    fn compile_tenant(&self, tenant: &str, changed_at: u64) -> Result<Arc<TenantPipelines>> {
        let previous = {
            let compiled = self.compiled.lock().expect("pipelines lock poisoned");
            match compiled.get(tenant) {
                Some(c) if c.changed_at == changed_at => return Ok(c.pipelines.clone()),
                Some(c) => Some(c.pipelines.clone()),
                None => None,
            }
        };
        let mut stages = Vec::new();
        for record in self.metadata.pipelines(tenant)? {
            let kept = previous.as_ref().and_then(|p| {
                p.stages()
                    .iter()
                    .find(|s| s.name == record.name && s.version == record.version)
                    .cloned()
            });
            match kept {
                Some(stage) => stages.push(stage),
                None => match self.compile(&record) {
                    Ok(stage) => stages.push(Arc::new(stage)),
                    // Only an entry proposed without the API's check gets here.
                    Err(e) => tracing::error!(
                        tenant, pipeline = record.name, version = record.version,
                        error = %e, "a stored pipeline does not compile; it does not run"
                    ),
                },
            }
        }
        let pipelines = Arc::new(TenantPipelines::new(stages));
        let mut compiled = self.compiled.lock().expect("pipelines lock poisoned");
        // Another batch may have compiled a later change meanwhile: keep the latest.
        if compiled
            .get(tenant)
            .is_none_or(|c| c.changed_at < changed_at)
        {
            compiled.insert(
                tenant.to_owned(),
                Compiled {
                    changed_at,
                    pipelines: pipelines.clone(),
                },
            );
        }
        Ok(pipelines)
    }

    fn compile(&self, record: &PipelineRecord) -> Result<CompiledPipeline> {
        compile_record(record, self.counters_of(&record.tenant, &record.name))
    }

    fn counters_of(&self, tenant: &str, name: &str) -> Arc<PipelineCounters> {
        self.counters
            .lock()
            .expect("pipeline counters lock poisoned")
            .entry((tenant.to_owned(), name.to_owned()))
            .or_default()
            .clone()
    }

    /// Runs the tenant's pipelines on `events`: `None` when it has none (the events are
    /// stored as they are), else what to store, without the events dropped on purpose.
    pub(crate) async fn process(
        self: &Arc<Self>,
        tenant: &str,
        events: &[Event],
    ) -> Result<Option<Vec<Event>>> {
        // The metadata entry that last changed any pipeline: read once, so the whole batch runs
        // under one set of versions.
        let changed_at = self.metadata.pipelines_changed_at()?;
        let cached = self.cached(tenant, changed_at);
        if cached.as_ref().is_some_and(|p| p.is_empty()) {
            return Ok(None);
        }
        let this = Arc::clone(self);
        let tenant = tenant.to_owned();
        let events = events.to_vec();
        // Programs (and compiling them after a change) are CPU work: off the async workers, so
        // one tenant's heavy program does not stall other connections.
        tokio::task::spawn_blocking(move || {
            let pipelines = match cached {
                Some(pipelines) => pipelines,
                None => this.compile_tenant(&tenant, changed_at)?,
            };
            if pipelines.is_empty() {
                return Ok(None);
            }
            let limits = this.limits;
            Ok(Some(
                events
                    .into_iter()
                    .filter_map(|event| match pipelines.process(event, &limits) {
                        Processed::Store(event) => Some(event),
                        Processed::Dropped { .. } => None,
                    })
                    .collect(),
            ))
        })
        .await
        .map_err(|e| Error::Actor(format!("pipeline task failed: {e}")))?
    }

    /// Every pipeline's counters on this node.
    pub fn stats(&self) -> Vec<PipelineStats> {
        let counters = self
            .counters
            .lock()
            .expect("pipeline counters lock poisoned");
        let mut stats: Vec<PipelineStats> = counters
            .iter()
            .map(|((tenant, pipeline), counters)| PipelineStats {
                tenant: tenant.clone(),
                pipeline: pipeline.clone(),
                counters: counters.clone(),
            })
            .collect();
        stats.sort_by(|a, b| (&a.tenant, &a.pipeline).cmp(&(&b.tenant, &b.pipeline)));
        stats
    }
}

/// What [`Node::test_pipeline`] made of one sample event.
#[allow(clippy::large_enum_variant)] // as `Processed`: nearly every sample is stored
#[derive(Debug)]
pub enum TestOutcome {
    /// What would be stored.
    Stored(Event),
    /// Dropped on purpose by this pipeline.
    Dropped(String),
}

impl Node {
    /// Stores a pipeline for `tenant` once its program compiles; returns its version (the
    /// metadata index that stored it).
    pub async fn put_pipeline(&self, tenant: &str, name: &str, spec: &PipelineSpec) -> Result<u64> {
        meniscus_pipeline::validate_name(name).map_err(Error::InvalidArgument)?;
        meniscus_pipeline::check(spec)?;
        let kind = CommandKind::PutPipeline(PutPipeline {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            spec_json: serde_json::to_string(spec).expect("a spec serializes"),
            updated_at_nanos: OffsetDateTime::now_utc().unix_timestamp_nanos() as i64,
        });
        match self.meta.propose(kind).await? {
            (_, ApplyOutcome::UnknownTenant) => Err(Error::UnknownTenant(tenant.to_owned())),
            (index, _) => Ok(index),
        }
    }

    /// Removes a pipeline; `NotFound` when the tenant has none by that name.
    pub async fn delete_pipeline(&self, tenant: &str, name: &str) -> Result<()> {
        let kind = CommandKind::DeletePipeline(DeletePipeline {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
        });
        match self.meta.propose(kind).await? {
            (_, ApplyOutcome::NoSuchPipeline) => Err(no_such_pipeline(tenant, name)),
            _ => Ok(()),
        }
    }

    /// The tenant's pipelines, as this node has applied them (linearizable after a
    /// [`Node::authenticate_linearizable`] of the same request).
    pub fn pipelines(&self, tenant: &str) -> Result<Vec<PipelineRecord>> {
        Ok(self.meta.metadata.pipelines(tenant)?)
    }

    /// One of the tenant's pipelines.
    pub fn pipeline(&self, tenant: &str, name: &str) -> Result<PipelineRecord> {
        self.meta
            .metadata
            .pipeline(tenant, name)?
            .ok_or_else(|| no_such_pipeline(tenant, name))
    }

    /// Runs a program on sample events as a publish would: `spec` when given, else the
    /// tenant's stored pipeline `name`, else every pipeline of the tenant, in order.
    pub async fn test_pipeline(
        &self,
        tenant: &str,
        spec: Option<&PipelineSpec>,
        name: Option<&str>,
        events: Vec<Event>,
    ) -> Result<Vec<TestOutcome>> {
        let pipelines = match (spec, name) {
            (Some(spec), _) => {
                let name = name.unwrap_or("test");
                let stage = meniscus_pipeline::compile(name, 0, spec, Arc::default())?;
                TenantPipelines::new(vec![Arc::new(stage)])
            }
            (None, Some(name)) => {
                let record = self.pipeline(tenant, name)?;
                let stage = compile_record(&record, Arc::default())?;
                TenantPipelines::new(vec![Arc::new(stage)])
            }
            (None, None) => {
                let stages = self
                    .pipelines(tenant)?
                    .iter()
                    .map(|record| compile_record(record, Arc::default()).map(Arc::new))
                    .collect::<Result<Vec<_>>>()?;
                TenantPipelines::new(stages)
            }
        };
        let limits = self.processing.limits;
        tokio::task::spawn_blocking(move || {
            events
                .into_iter()
                .map(|event| match pipelines.process(event, &limits) {
                    Processed::Store(event) => TestOutcome::Stored(event),
                    Processed::Dropped { pipeline } => TestOutcome::Dropped(pipeline),
                })
                .collect()
        })
        .await
        .map_err(|e| Error::Actor(format!("pipeline task failed: {e}")))
    }

    /// Every pipeline's counters on this node.
    pub fn pipeline_stats(&self) -> Vec<PipelineStats> {
        self.processing.stats()
    }
}

/// A stored pipeline, compiled, counting into `counters`.
fn compile_record(
    record: &PipelineRecord,
    counters: Arc<PipelineCounters>,
) -> Result<CompiledPipeline> {
    let spec: PipelineSpec = serde_json::from_str(&record.spec_json)
        .map_err(|e| Error::InvalidArgument(format!("stored pipeline: {e}")))?;
    Ok(meniscus_pipeline::compile(
        &record.name,
        record.version,
        &spec,
        counters,
    )?)
}

fn no_such_pipeline(tenant: &str, name: &str) -> Error {
    Error::NotFound(format!("tenant {tenant:?} has no pipeline {name:?}"))
}
