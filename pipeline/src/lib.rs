//! Processing & enhancement: each tenant's VRL programs (Vector Remap Language, the `vrl`
//! crate), compiled when stored and run on the node that receives an event, before it is
//! proposed, so every replica stores the same bytes.
//!
//! A program sees the event as the search API shows it (see [`convert`]), changes it, or drops
//! it with `abort`. One that fails stores the event as it came, with `fields.pipeline_error`;
//! every shaped event records the versions of the pipelines that shaped it in
//! `fields.pipelines`. Pure: no I/O, no clock but the run-time limit.

pub mod convert;
pub mod examples;
pub mod memory;
mod program;
mod run;

pub use program::{
    check, compile, validate_name, CompileError, CompiledPipeline, Diagnostic, PipelineCounters,
    PipelineSpec, MAX_NAME_BYTES, MAX_NESTING, MAX_SOURCE_BYTES,
};
pub use run::{Limits, Processed, TenantPipelines, ERROR_FIELD, MAX_DEPTH, VERSIONS_FIELD};
