//! Compiling a tenant's VRL program: the functions it may call, and errors with positions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vrl::compiler::{self, CompileConfig, Function, Program};
use vrl::diagnostic::DiagnosticList;

/// Longest program (or `when` expression) accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 64 * 1024;
/// How deeply a program may nest: brackets, plus the operators of the expressions around a
/// point (`1 + 1 + ...` nests as deep as it is long). VRL compiles, runs and drops a program
/// by recursion; past this a thread's stack could overflow and take the node down.
pub const MAX_NESTING: usize = 64;
/// Longest pipeline name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// VRL functions a tenant's program may not call: those that read files on the node (a path
/// argument), decompress (a small event could expand to gigabytes), or write to the node's
/// own log. VRL's environment, system and network functions are not built in at all
/// (`stdlib-base`).
const REFUSED_FUNCTIONS: &[&str] = &[
    "parse_groks",          // alias_sources: files read at compile time
    "parse_etld",           // psl: a file read at compile time
    "parse_proto",          // desc_file
    "encode_proto",         // desc_file
    "validate_json_schema", // schema_definition: a file
    "decode_gzip",
    "decode_zlib",
    "decode_zstd",
    "decode_snappy",
    "decode_lz4",
    "log",
];

/// What a tenant stores for one pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// The VRL program run on each event.
    pub source: String,
    /// A VRL boolean expression: the program runs on events for which it holds (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Pipelines run in ascending order (then by name).
    #[serde(default)]
    pub order: i64,
}

/// One error a compiler found, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// What is wrong.
    pub message: String,
    /// 1-based line of the error's first byte.
    pub line: usize,
    /// 1-based column (in characters) of the error's first byte.
    pub column: usize,
    /// Byte offsets of the offending text.
    pub start: usize,
    /// See `start`.
    pub end: usize,
}

/// A program or `when` expression that does not compile.
#[derive(Debug, Clone, thiserror::Error, Serialize)]
#[error("{part}: {rendered}")]
pub struct CompileError {
    /// `source` or `when`.
    pub part: &'static str,
    /// Each error with its position.
    pub diagnostics: Vec<Diagnostic>,
    /// The compiler's report, with the source lines quoted.
    pub rendered: String,
}

impl CompileError {
    fn single(part: &'static str, message: String) -> Self {
        CompileError {
            part,
            diagnostics: vec![Diagnostic {
                message: message.clone(),
                line: 1,
                column: 1,
                start: 0,
                end: 0,
            }],
            rendered: message,
        }
    }
}

/// Counts of what one pipeline did, kept across its versions.
#[derive(Debug, Default)]
pub struct PipelineCounters {
    /// Events the program ran on (its `when` held).
    pub events_in: AtomicU64,
    /// Events it dropped on purpose (`abort`).
    pub dropped: AtomicU64,
    /// Events it failed on (stored as they came, with `fields.pipeline_error`).
    pub failed: AtomicU64,
    /// Time spent in the program and its `when`, in nanoseconds.
    pub nanos: AtomicU64,
}

impl PipelineCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A pipeline ready to run: its programs compiled.
pub struct CompiledPipeline {
    /// Its name.
    pub name: String,
    /// Its version: the metadata Raft index that stored it.
    pub version: u64,
    /// Where it runs among the tenant's pipelines.
    pub order: i64,
    pub(crate) program: Program,
    pub(crate) when: Option<Program>,
    pub(crate) counters: Arc<PipelineCounters>,
}

impl std::fmt::Debug for CompiledPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPipeline")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("order", &self.order)
            .finish_non_exhaustive()
    }
}

/// Whether `name` may name a pipeline: 1 to 64 of `a-z A-Z 0-9 _ -`, not starting with `-`
/// or `_`, and not one of the names the API uses for itself.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !ok {
        return Err(format!(
            "pipeline name {name:?}: use 1 to {MAX_NAME_BYTES} letters, digits, '-' or '_', \
             starting with a letter or digit"
        ));
    }
    if matches!(name, "test" | "examples") {
        return Err(format!("pipeline name {name:?} is reserved"));
    }
    Ok(())
}

/// Compiles `spec` as pipeline `name` at `version`, counting into `counters`.
pub fn compile(
    name: &str,
    version: u64,
    spec: &PipelineSpec,
    counters: Arc<PipelineCounters>,
) -> Result<CompiledPipeline, CompileError> {
    let program = compile_part("source", &spec.source, false)?;
    let when = match spec.when.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(when) => Some(compile_part("when", when, true)?),
    };
    Ok(CompiledPipeline {
        name: name.to_owned(),
        version,
        order: spec.order,
        program,
        when,
        counters,
    })
}

/// Checks that `spec` compiles, without keeping the result.
pub fn check(spec: &PipelineSpec) -> Result<(), CompileError> {
    compile("check", 0, spec, Arc::default()).map(|_| ())
}

fn compile_part(
    part: &'static str,
    source: &str,
    read_only: bool,
) -> Result<Program, CompileError> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(CompileError::single(
            part,
            format!(
                "{} bytes; a program may have at most {MAX_SOURCE_BYTES}",
                source.len()
            ),
        ));
    }
    check_nesting(source).map_err(|message| CompileError::single(part, message))?;
    let mut config = CompileConfig::default();
    if read_only {
        config.set_read_only();
    }
    let result = compiler::compile_with_external(source, functions(), &event_type(), config)
        .map_err(|diagnostics| error(part, source, diagnostics))?;
    if read_only && !result.program.final_type_info().result.is_boolean() {
        return Err(CompileError::single(
            part,
            "`when` must be a boolean expression (`.app == \"nginx\"`, `exists(.fields.user)`)"
                .into(),
        ));
    }
    Ok(result.program)
}

/// What a program knows of `.` before it runs (see `convert::to_value`): `.message` is a
/// string and `.fields` an object, so `upcase(.message)` needs no error handling while
/// `parse_json(.message)` still does.
fn event_type() -> compiler::state::ExternalEnv {
    use vrl::value::kind::{Collection, Field};
    use vrl::value::Kind;
    let text = Kind::bytes;
    let optional_text = || Kind::bytes().or_undefined();
    let event = Collection::<Field>::from_unknown(Kind::any())
        .with_known("id", text())
        .with_known("tenant", text())
        .with_known("message", text())
        .with_known("timestamp", Kind::timestamp())
        .with_known("received_at", Kind::timestamp())
        .with_known("host", optional_text())
        .with_known("app", optional_text())
        .with_known("procid", optional_text())
        .with_known("msgid", optional_text())
        .with_known("facility", optional_text())
        .with_known("severity", optional_text())
        .with_known(
            "structured_data",
            Kind::object(Collection::from_unknown(Kind::object(
                Collection::from_unknown(Kind::bytes()),
            )))
            .or_undefined(),
        )
        .with_known("fields", Kind::object(Collection::any()))
        .with_known(
            "source",
            Kind::object(
                Collection::<Field>::empty()
                    .with_known("transport", text())
                    .with_known("peer", optional_text()),
            ),
        );
    compiler::state::ExternalEnv::new_with_kind(
        Kind::object(event),
        Kind::object(Collection::empty()),
    )
}

/// The VRL standard library without [`REFUSED_FUNCTIONS`], built once.
fn functions() -> &'static [Box<dyn Function>] {
    static FUNCTIONS: std::sync::OnceLock<Vec<Box<dyn Function>>> = std::sync::OnceLock::new();
    FUNCTIONS.get_or_init(|| {
        vrl::stdlib::all()
            .into_iter()
            .filter(|f| !REFUSED_FUNCTIONS.contains(&f.identifier()))
            .collect()
    })
}

fn error(part: &'static str, source: &str, diagnostics: DiagnosticList) -> CompileError {
    let rendered = vrl::diagnostic::Formatter::new(source, diagnostics.clone()).to_string();
    let diagnostics = diagnostics
        .iter()
        .filter(|d| d.is_problem())
        .map(|d| {
            let span = d
                .labels
                .iter()
                .find(|l| l.primary)
                .or(d.labels.first())
                .map(|l| l.span);
            let (start, end) = span.map_or((0, 0), |s| (s.start(), s.end()));
            let (line, column) = line_and_column(source, start);
            Diagnostic {
                message: d.message.clone(),
                line,
                column,
                start,
                end,
            }
        })
        .collect();
    CompileError {
        part,
        diagnostics,
        rendered,
    }
}

/// Refuses a program that nests deeper than [`MAX_NESTING`], from its text alone: strings
/// and comments are skipped, brackets count one level each, and so does each operator
/// of the expressions that enclose a point (reset by `,`, `;` and line ends that do
/// not continue an expression).
fn check_nesting(source: &str) -> Result<(), String> {
    let bytes = source.as_bytes();
    // Operator characters of each enclosing bracket level's expression, and of the current one.
    let mut enclosing: Vec<usize> = Vec::new();
    let mut enclosing_sum = 0;
    let mut current = 0;
    let mut last_significant = b'\n';
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'(' | b'[' | b'{' => {
                enclosing.push(current);
                enclosing_sum += current;
                current = 0;
            }
            b')' | b']' | b'}' => {
                let outer = enclosing.pop().unwrap_or(0);
                enclosing_sum -= outer;
                current = outer;
            }
            b',' | b';' => current = 0,
            b'\n' if !is_operator(last_significant) => current = 0,
            // `!` nests once each (`!!!!x`); any other run of operator characters (`==`,
            // `||`, `??`) is one operator.
            b'!' => current += 1,
            _ if is_operator(b) && !is_operator(last_significant) => current += 1,
            _ => {}
        }
        if !b.is_ascii_whitespace() {
            last_significant = b;
        }
        let nesting = enclosing.len() + enclosing_sum + current;
        if nesting > MAX_NESTING {
            return Err(format!(
                "the program nests deeper than {MAX_NESTING} levels (brackets, and operators \
                 chained in one expression) at byte {i}; split it into steps with variables"
            ));
        }
        i += 1;
    }
    Ok(())
}

fn is_operator(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-' | b'*' | b'/' | b'<' | b'>' | b'=' | b'!' | b'&' | b'|' | b'?' | b'%'
    )
}

fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset.min(source.len())).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}
