//! Running a tenant's pipelines on events, within limits.

use std::cell::Cell;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meniscus_event::Event;
use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::{TargetValue, TimeZone};
use vrl::value::{ObjectMap, Secrets, Value};

use crate::program::{CompiledPipeline, PipelineCounters};
use crate::{convert, memory};

/// The `fields` key where a failed event says which pipeline failed and why.
pub const ERROR_FIELD: &str = "pipeline_error";
/// The `fields` key that records, per pipeline that shaped the event, the version that did.
pub const VERSIONS_FIELD: &str = "pipelines";
/// Deepest nesting of objects and arrays an event may leave a program with.
pub const MAX_DEPTH: usize = 64;

/// How much a program may take of one event.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Run time of every pipeline together on one event.
    pub max_run_time: Duration,
    /// Size of the event after processing (its strings and values, about its JSON size).
    pub max_event_bytes: usize,
    /// Memory every pipeline together may hold while running on one event (counted only where
    /// [`crate::memory::CountingAllocator`] is the global allocator).
    pub max_memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_run_time: Duration::from_millis(50),
            max_event_bytes: 1024 * 1024,
            max_memory_bytes: 16 * 1024 * 1024,
        }
    }
}

/// What became of one event.
// Nearly every event is stored: boxing it would cost an allocation per event to save space in
// the rare drop.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Processed {
    /// Store this (shaped by the pipelines, or as it came with `fields.pipeline_error`).
    Store(Event),
    /// A pipeline dropped the event on purpose (`abort`).
    Dropped {
        /// The pipeline that dropped it.
        pipeline: String,
    },
}

/// A tenant's pipelines, in the order they run.
#[derive(Debug, Default)]
pub struct TenantPipelines {
    stages: Vec<Arc<CompiledPipeline>>,
}

impl TenantPipelines {
    /// The pipelines, run in ascending `order`, then by name.
    pub fn new(mut stages: Vec<Arc<CompiledPipeline>>) -> Self {
        stages.sort_by(|a, b| (a.order, &a.name).cmp(&(b.order, &b.name)));
        TenantPipelines { stages }
    }

    /// Whether there is nothing to run.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// The pipelines, in the order they run.
    pub fn stages(&self) -> &[Arc<CompiledPipeline>] {
        &self.stages
    }

    /// Runs every pipeline whose `when` holds on `event`, in order. A failure anywhere stores
    /// the event as it came, with `fields.pipeline_error`; nothing is lost silently.
    pub fn process(&self, mut event: Event, limits: &Limits) -> Processed {
        if self.stages.is_empty() {
            return Processed::Store(event);
        }
        let mut runtime = Runtime::default();
        let mut target = TargetValue {
            value: convert::to_value(&event),
            metadata: Value::Object(ObjectMap::new()),
            secrets: Secrets::default(),
        };
        let budget = Budget {
            deadline: Instant::now() + limits.max_run_time,
            held_at_start: memory::held_by_this_thread(),
            max_memory: i64::try_from(limits.max_memory_bytes).unwrap_or(i64::MAX),
            checkpoints: Cell::new(0),
        };
        let mut shaped_by = serde_json::Map::new();
        for stage in &self.stages {
            let started = Instant::now();
            let outcome = run_stage(stage, &mut runtime, &mut target, &budget);
            let elapsed = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            PipelineCounters::add(&stage.counters.nanos, elapsed);
            match outcome {
                StageOutcome::Skipped => {}
                StageOutcome::Ran => {
                    shaped_by.insert(stage.name.clone(), stage.version.into());
                }
                StageOutcome::Aborted => {
                    PipelineCounters::add(&stage.counters.dropped, 1);
                    return Processed::Dropped {
                        pipeline: stage.name.clone(),
                    };
                }
                StageOutcome::Failed(error) => {
                    PipelineCounters::add(&stage.counters.failed, 1);
                    return Processed::Store(failed(event, stage, &error));
                }
            }
        }
        if shaped_by.is_empty() {
            return Processed::Store(event);
        }
        let last = self.stages.last().expect("stages is not empty");
        if let Err(error) = check_size(&target.value, limits.max_event_bytes) {
            PipelineCounters::add(&last.counters.failed, 1);
            return Processed::Store(failed(event, last, &error));
        }
        match convert::from_value(target.value, &mut event) {
            Ok(mut shaped) => {
                shaped
                    .fields
                    .insert(VERSIONS_FIELD.into(), serde_json::Value::Object(shaped_by));
                Processed::Store(shaped)
            }
            Err(error) => {
                PipelineCounters::add(&last.counters.failed, 1);
                Processed::Store(failed(event, last, &error))
            }
        }
    }
}

enum StageOutcome {
    Skipped,
    Ran,
    Aborted,
    Failed(String),
}

/// What all of an event's pipelines may take together.
struct Budget {
    deadline: Instant,
    held_at_start: i64,
    max_memory: i64,
    /// Checkpoints so far: VRL asks before every expression it resolves (dozens per event),
    /// and reading the clock each time cost about a tenth of a typical program's run.
    checkpoints: Cell<u32>,
}

/// The clock is read at every this many checkpoints (memory at each): a program overruns its
/// time by at most this many expressions.
const CLOCK_EVERY: u32 = 8;

/// Why a run was stopped between two expressions.
#[derive(Clone, Copy)]
enum Exceeded {
    Time,
    Memory,
}

impl Budget {
    fn exceeded(&self) -> Option<Exceeded> {
        let n = self.checkpoints.get().wrapping_add(1);
        self.checkpoints.set(n);
        // Memory first: when both ran out, it is the one that says what the program did.
        if memory::held_by_this_thread().saturating_sub(self.held_at_start) > self.max_memory {
            Some(Exceeded::Memory)
        } else if n % CLOCK_EVERY == 0 && Instant::now() >= self.deadline {
            Some(Exceeded::Time)
        } else {
            None
        }
    }
}

fn run_stage(
    stage: &CompiledPipeline,
    runtime: &mut Runtime,
    target: &mut TargetValue,
    budget: &Budget,
) -> StageOutcome {
    let timezone = TimeZone::default();
    // VRL asks between expressions and in iterations: a program that runs long or grows big is
    // stopped there, not waited for.
    let mut exceeded = None;
    let mut control = || match budget.exceeded() {
        None => ControlFlow::Continue(()),
        Some(why) => {
            exceeded = Some(why);
            ControlFlow::Break(())
        }
    };
    if let Some(when) = &stage.when {
        let holds = runtime.resolve_with_control(target, when, &timezone, &mut control);
        runtime.clear();
        match holds {
            Ok(Value::Boolean(true)) => {}
            Ok(_) => return StageOutcome::Skipped,
            Err(e) => return StageOutcome::Failed(format!("when: {}", describe(e, exceeded))),
        }
    }
    PipelineCounters::add(&stage.counters.events_in, 1);
    // A panic inside VRL (a bug in one of its functions) fails this event, not the node.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.resolve_with_control(target, &stage.program, &timezone, &mut control)
    }));
    runtime.clear();
    match result {
        Ok(Ok(_)) => StageOutcome::Ran,
        Ok(Err(Terminate::Abort(_))) => StageOutcome::Aborted,
        Ok(Err(e)) => StageOutcome::Failed(describe(e, exceeded)),
        Err(panic) => StageOutcome::Failed(format!("the program panicked: {}", panic_text(&panic))),
    }
}

fn describe(e: Terminate, exceeded: Option<Exceeded>) -> String {
    match e {
        Terminate::Interrupted => match exceeded {
            Some(Exceeded::Memory) => "held more memory than its limit allows".into(),
            Some(Exceeded::Time) | None => "ran past its time limit".into(),
        },
        Terminate::Abort(e) | Terminate::Error(e) => e.to_string(),
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// The event as it came, saying which pipeline (and version) failed and why.
fn failed(mut event: Event, stage: &CompiledPipeline, error: &str) -> Event {
    event.fields.insert(
        ERROR_FIELD.into(),
        format!("{} (version {}): {error}", stage.name, stage.version).into(),
    );
    event
}

/// Refuses a value nested deeper than [`MAX_DEPTH`] or larger than `max_bytes`, before
/// anything recursive (JSON conversion, indexing) walks it.
fn check_size(value: &Value, max_bytes: usize) -> Result<(), String> {
    let mut size = 0usize;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(format!(
                "the event is nested deeper than {MAX_DEPTH} objects or arrays"
            ));
        }
        size += match value {
            Value::Bytes(b) => b.len() + 2,
            Value::String(_) | Value::Regex(_) => value.to_string_lossy().len() + 2,
            Value::Object(map) => {
                for (key, child) in map {
                    size += key.len() + 4;
                    stack.push((child, depth + 1));
                }
                2
            }
            Value::Array(items) => {
                stack.extend(items.iter().map(|child| (child, depth + 1)));
                2 + items.len()
            }
            Value::Timestamp(_) => 32,
            Value::Integer(_) | Value::Float(_) => 20,
            Value::Boolean(_) | Value::Null => 5,
        };
        if size > max_bytes {
            return Err(format!(
                "the event grew past {max_bytes} bytes in the pipelines"
            ));
        }
    }
    Ok(())
}
