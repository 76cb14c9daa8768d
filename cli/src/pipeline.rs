//! `meniscus pipeline`: a tenant's processing pipelines (VRL programs) over the HTTP API.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{call, TenantConn};

#[derive(Subcommand, Debug)]
pub enum PipelineCommand {
    /// Store a pipeline (replacing one of the same name): a VRL program run on each of the
    /// tenant's events before it is stored. A program that does not compile is refused with
    /// the line and column of each error.
    Put {
        /// The pipeline's name: 1 to 64 of a-z, A-Z, 0-9, '-' and '_'.
        name: String,
        /// File with the VRL program ('-': standard input).
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// A VRL boolean expression: the program runs on the events for which it holds.
        #[arg(long)]
        when: Option<String>,
        /// Pipelines run in ascending order, then by name.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        order: i64,
        #[command(flatten)]
        conn: TenantConn,
    },
    /// List the tenant's pipelines, in the order they run.
    List {
        #[command(flatten)]
        conn: TenantConn,
    },
    /// Print one pipeline (JSON: name, version, order, when, source).
    Get {
        /// The pipeline's name.
        name: String,
        #[command(flatten)]
        conn: TenantConn,
    },
    /// Remove a pipeline: events are stored without it from then on.
    Delete {
        /// The pipeline's name.
        name: String,
        #[command(flatten)]
        conn: TenantConn,
    },
    /// Run a program on sample lines (syslog, or plain text) and print what would be stored,
    /// one JSON object per line; nothing is stored.
    Test {
        /// File with a VRL program to try (default: the stored pipeline --name, or all of the
        /// tenant's pipelines in order).
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
        /// A `when` for --file's program.
        #[arg(long, requires = "file")]
        when: Option<String>,
        /// The stored pipeline to run.
        #[arg(long, conflicts_with = "file")]
        name: Option<String>,
        /// File of sample lines ('-' or absent: standard input).
        #[arg(long)]
        input: Option<PathBuf>,
        #[command(flatten)]
        conn: TenantConn,
    },
}

/// Most sample lines one `pipeline test` sends (the API's limit).
const MAX_SAMPLES: usize = 1000;

pub async fn run(command: PipelineCommand) -> anyhow::Result<()> {
    match command {
        PipelineCommand::Put {
            name,
            file,
            when,
            order,
            conn,
        } => {
            let source = read_text(&file)?;
            let body = json!({"source": source, "when": when, "order": order});
            let answer = call(
                conn.request(Method::PUT, &format!("/v1/pipelines/{name}"))?
                    .json(&body),
            )
            .await?;
            eprintln!(
                "pipeline {name:?} stored as version {}; it shapes events received from now on",
                answer["version"]
            );
        }
        PipelineCommand::List { conn } => {
            let answer = call(conn.request(Method::GET, "/v1/pipelines")?).await?;
            for p in answer["pipelines"].as_array().into_iter().flatten() {
                println!(
                    "{}\tversion {}\torder {}\twhen {}",
                    p["name"].as_str().unwrap_or_default(),
                    p["version"],
                    p["order"],
                    p["when"].as_str().unwrap_or("(always)")
                );
            }
        }
        PipelineCommand::Get { name, conn } => {
            let answer = call(conn.request(Method::GET, &format!("/v1/pipelines/{name}"))?).await?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        PipelineCommand::Delete { name, conn } => {
            call(conn.request(Method::DELETE, &format!("/v1/pipelines/{name}"))?).await?;
            eprintln!("pipeline {name:?} deleted");
        }
        PipelineCommand::Test {
            file,
            when,
            name,
            input,
            conn,
        } => {
            let samples = read_text(input.as_deref().unwrap_or("-".as_ref()))?;
            let lines: Vec<Value> = samples
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| Value::String(l.to_owned()))
                .collect();
            if lines.is_empty() {
                bail!("no sample lines: give --input FILE or pipe lines in");
            }
            if lines.len() > MAX_SAMPLES {
                bail!(
                    "{} sample lines; a test takes at most {MAX_SAMPLES}",
                    lines.len()
                );
            }
            let mut body = json!({"events": lines, "name": name});
            if let Some(file) = file {
                body["source"] = read_text(&file)?.into();
                body["when"] = when.into();
            }
            let answer = call(
                conn.request(Method::POST, "/v1/pipelines/test")?
                    .json(&body),
            )
            .await?;
            for result in answer["results"].as_array().into_iter().flatten() {
                println!("{}", serde_json::to_string(result)?);
            }
        }
    }
    Ok(())
}

fn read_text(path: &std::path::Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
