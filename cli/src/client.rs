//! The client subcommands: tenant admin, send, search. They talk to a node over HTTP.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::credentials;

/// Where the node is, and where to find a token when none is given.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// The node's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "MENISCUS_SERVER")]
    server: String,
    /// Data directory of a local `meniscus dev`, to read tokens from its credentials.json.
    #[arg(long, default_value = "./meniscus-data", env = "MENISCUS_DATA_DIR")]
    data_dir: PathBuf,
    /// PEM file with the CA certificate that signed the node's HTTPS certificate (for an
    /// https:// --server whose certificate the system does not trust, such as one made with
    /// `meniscus cert`).
    #[arg(long, env = "MENISCUS_CACERT")]
    cacert: Option<PathBuf>,
}

impl Conn {
    /// An HTTP client for this node, trusting --cacert as well as the system's CAs.
    fn client(&self) -> anyhow::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(120));
        if let Some(path) = &self.cacert {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the CA certificate {}", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
            builder = builder.add_root_certificate(cert);
        }
        builder.build().context("building the HTTP client")
    }
}

/// Connection for admin commands.
#[derive(Args, Debug, Clone)]
pub struct AdminConn {
    #[command(flatten)]
    conn: Conn,
    /// Admin token (default: from the data directory's credentials.json).
    #[arg(long, env = "MENISCUS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

/// Connection for tenant commands.
#[derive(Args, Debug, Clone)]
pub struct TenantConn {
    #[command(flatten)]
    conn: Conn,
    /// Tenant token (default: the --tenant's token from the data directory's credentials.json).
    #[arg(long, env = "MENISCUS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Tenant whose token to read from credentials.json when --token is not given.
    #[arg(long, default_value = "default")]
    tenant: String,
}

impl AdminConn {
    fn token(&self) -> anyhow::Result<String> {
        if let Some(t) = &self.admin_token {
            return Ok(t.clone());
        }
        match credentials::load(&self.conn.data_dir)? {
            Some(c) => Ok(c.admin_token),
            None => bail!(
                "no admin token: pass --admin-token, set MENISCUS_ADMIN_TOKEN, or point --data-dir at a `meniscus dev` data directory"
            ),
        }
    }
}

impl TenantConn {
    /// A request to `path` on the node, with the tenant's token.
    pub(crate) fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        Ok(self
            .conn
            .client()?
            .request(method, format!("{}{path}", self.conn.server))
            .bearer_auth(self.token()?))
    }

    fn token(&self) -> anyhow::Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        let found = credentials::load(&self.conn.data_dir)?
            .and_then(|c| c.tenants.get(&self.tenant).cloned());
        match found {
            Some(t) => Ok(t),
            None => bail!(
                "no token for tenant {:?}: pass --token, set MENISCUS_TOKEN, or point --data-dir at a `meniscus dev` data directory",
                self.tenant
            ),
        }
    }
}

/// Sends a request; a non-2xx answer becomes an error carrying the server's message.
pub(crate) async fn call(request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let response = request
        .send()
        .await
        .context("cannot reach the Meniscus node")?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        bail!("{status}: {message}");
    }
    Ok(body)
}

pub async fn tenant_create(admin: &AdminConn, name: &str) -> anyhow::Result<()> {
    let body = call(
        admin
            .conn
            .client()?
            .post(format!("{}/v1/tenants", admin.conn.server))
            .bearer_auth(admin.token()?)
            .json(&serde_json::json!({ "name": name })),
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    // Beside a local node's other tokens, so `--tenant NAME` finds it next time.
    if let (Some(mut saved), Some(token)) = (
        credentials::load(&admin.conn.data_dir)?,
        body["token"].as_str(),
    ) {
        saved.tenants.insert(name.to_owned(), token.to_owned());
        credentials::store(&admin.conn.data_dir, &saved)?;
        eprintln!(
            "saved the token in {} (use --tenant {name})",
            credentials::path(&admin.conn.data_dir).display()
        );
    }
    Ok(())
}

pub async fn tenant_rotate(
    admin: &AdminConn,
    name: &str,
    grace_seconds: Option<u64>,
) -> anyhow::Result<()> {
    let body = call(
        admin
            .conn
            .client()?
            .post(format!("{}/v1/tenants/{name}/tokens", admin.conn.server))
            .bearer_auth(admin.token()?)
            .json(&serde_json::json!({ "grace_seconds": grace_seconds })),
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    // A local node's saved token for this tenant is the new one from now on.
    if let (Some(mut saved), Some(token)) = (
        credentials::load(&admin.conn.data_dir)?,
        body["token"].as_str(),
    ) {
        if let Some(old) = saved.tenants.get_mut(name) {
            *old = token.to_owned();
            credentials::store(&admin.conn.data_dir, &saved)?;
        }
    }
    Ok(())
}

pub async fn tenant_list(admin: &AdminConn) -> anyhow::Result<()> {
    let body = call(
        admin
            .conn
            .client()?
            .get(format!("{}/v1/tenants", admin.conn.server))
            .bearer_auth(admin.token()?),
    )
    .await?;
    for name in body["tenants"].as_array().into_iter().flatten() {
        println!("{}", name.as_str().unwrap_or_default());
    }
    Ok(())
}

/// `meniscus cluster status`: the node's view of the cluster, as JSON.
pub async fn cluster_status(admin: &AdminConn) -> anyhow::Result<()> {
    let body = call(
        admin
            .conn
            .client()?
            .get(format!("{}/v1/cluster", admin.conn.server))
            .bearer_auth(admin.token()?),
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}

/// `meniscus cluster remove NODE`.
pub async fn cluster_remove(admin: &AdminConn, node: u64) -> anyhow::Result<()> {
    call(
        admin
            .conn
            .client()?
            .delete(format!("{}/v1/cluster/nodes/{node}", admin.conn.server))
            .bearer_auth(admin.token()?),
    )
    .await?;
    eprintln!("node {node} is being removed; `meniscus cluster status` shows when it is gone");
    Ok(())
}

/// Arguments of `meniscus send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// File to send; `-` (the default) reads stdin.
    #[arg(default_value = "-")]
    input: String,
    /// Input format: ndjson (one JSON event per line), lines (each line is a message), or auto
    /// (ndjson if the first line starts with '{').
    #[arg(long, default_value = "auto", value_parser = ["auto", "ndjson", "lines"])]
    format: String,
    /// Events per request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Skip lines that are not a JSON object (NDJSON input), saying which, instead of
    /// stopping at the first.
    #[arg(long)]
    skip_invalid: bool,
    #[command(flatten)]
    conn: TenantConn,
}

/// Where a batch's events came from: the file line of each.
#[derive(Default)]
struct Batch {
    body: String,
    lines: Vec<u64>,
    bytes: u64,
}

impl Batch {
    /// The file line of the batch's `n`th line (1-based), as the server numbers them.
    fn file_line(&self, n: usize) -> Option<u64> {
        n.checked_sub(1).and_then(|i| self.lines.get(i)).copied()
    }
}

/// How to send the rest of `input` from `line` on.
fn resume_hint(input: &str, line: u64) -> String {
    if input == "-" {
        format!("send the input again from line {line}")
    } else {
        format!("resume with `tail -n +{line} {input} | meniscus send -`")
    }
}

/// Rewrites the server's "line N" (of the batch) into the line of the input.
fn with_file_lines(message: &str, batch: &Batch, input: &str) -> String {
    let Some(at) = message.find("line ") else {
        return message.to_owned();
    };
    let digits: String = message[at + 5..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    match digits.parse().ok().and_then(|n| batch.file_line(n)) {
        Some(line) => format!(
            "{}line {line} of {input}{}",
            &message[..at],
            &message[at + 5 + digits.len()..]
        ),
        None => message.to_owned(),
    }
}

pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    let token = args.conn.token()?;
    let (reader, size): (Box<dyn Read + Send>, Option<u64>) = if args.input == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let file =
            std::fs::File::open(&args.input).with_context(|| format!("opening {}", args.input))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(file), size)
    };
    let progress = match size {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
                .expect("static template"),
        ),
        None => ProgressBar::new_spinner(),
    };
    let mut lines = BufReader::new(reader).lines();
    let mut ndjson = match args.format.as_str() {
        "ndjson" => Some(true),
        "lines" => Some(false),
        _ => None,
    };
    let input = if args.input == "-" {
        "stdin".to_owned()
    } else {
        args.input.clone()
    };
    let url = format!("{}/v1/events", args.conn.conn.server);
    let client = args.conn.conn.client()?;
    let started = Instant::now();
    let (mut sent, mut skipped, mut line_no) = (0usize, 0usize, 0u64);
    let mut batch = Batch::default();
    loop {
        let line = lines.next().transpose().context("reading input")?;
        let mut stop = None;
        if let Some(line) = &line {
            line_no += 1;
            batch.bytes += line.len() as u64 + 1;
            if !line.trim().is_empty() {
                let is_json = *ndjson.get_or_insert_with(|| line.trim_start().starts_with('{'));
                if !is_json {
                    batch
                        .body
                        .push_str(&serde_json::json!({ "message": line }).to_string());
                    batch.body.push('\n');
                    batch.lines.push(line_no);
                } else {
                    match serde_json::from_str::<serde_json::Map<String, Value>>(line) {
                        Ok(_) => {
                            batch.body.push_str(line);
                            batch.body.push('\n');
                            batch.lines.push(line_no);
                        }
                        Err(e) if args.skip_invalid => {
                            eprintln!(
                                "skipping line {line_no} of {input}: not a JSON object ({e})"
                            );
                            skipped += 1;
                        }
                        Err(e) => {
                            stop = Some(format!(
                                "line {line_no} of {input} is not a JSON object ({e})"
                            ))
                        }
                    }
                }
            }
        }
        let full = batch.lines.len() >= args.batch.max(1);
        if !batch.lines.is_empty() && (full || line.is_none() || stop.is_some()) {
            let body = std::mem::take(&mut batch.body);
            if let Err(e) = post_with_retry(&client, &url, &token, body).await {
                let first = batch.lines.first().copied().unwrap_or(line_no);
                bail!(
                    "{}; the batch of lines {first}-{} was not stored; the {sent} events before it were ({})",
                    with_file_lines(&e.to_string(), &batch, &input),
                    batch.lines.last().copied().unwrap_or(first),
                    resume_hint(&args.input, first),
                );
            }
            sent += batch.lines.len();
            progress.inc(batch.bytes);
            batch = Batch::default();
            progress.set_message(format!("{sent} events"));
        }
        if let Some(reason) = stop {
            progress.finish_and_clear();
            bail!(
                "{reason}; sent the {sent} events before it and none after (fix it and {}, or pass --skip-invalid)",
                resume_hint(&args.input, line_no),
            );
        }
        if line.is_none() {
            break;
        }
    }
    progress.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "sent {sent} events in {secs:.1}s ({:.0} events/s){}",
        sent as f64 / secs.max(1e-9),
        if skipped > 0 {
            format!("; skipped {skipped} invalid lines")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Retries only what is safe and useful to retry: overload answers and lost connections.
async fn post_with_retry(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: String,
) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(100);
    for attempt in 0.. {
        let response = client
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().as_u16() == 503 && attempt < 20 => {}
            Ok(r) => {
                let status = r.status();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                bail!(
                    "{status}: {}",
                    body["error"]["message"].as_str().unwrap_or("no message")
                );
            }
            Err(e) if attempt < 5 => tracing::warn!(error = %e, "publish failed; retrying"),
            Err(e) => return Err(e).context("cannot reach the Meniscus node"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    unreachable!("the loop returns")
}

/// Arguments of `meniscus search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Query in tantivy syntax, e.g. `severity:err AND host:web-1`; `*` matches everything.
    #[arg(default_value = "*")]
    query: String,
    /// Only events at or after this RFC 3339 time.
    #[arg(long)]
    from: Option<String>,
    /// Only events before this RFC 3339 time.
    #[arg(long)]
    to: Option<String>,
    /// Most events to print (follows pages as needed); at least 1 (--count prints only the
    /// total).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    limit: u64,
    /// Print only the total count.
    #[arg(long)]
    count: bool,
    #[command(flatten)]
    conn: TenantConn,
}

pub async fn search(args: SearchArgs) -> anyhow::Result<()> {
    let token = args.conn.token()?;
    let client = args.conn.conn.client()?;
    let mut cursor: Option<String> = None;
    let mut printed = 0;
    loop {
        let page = (args.limit - printed).clamp(1, 10_000);
        let mut query = vec![("q", args.query.clone()), ("limit", page.to_string())];
        if let Some(f) = &args.from {
            query.push(("from", f.clone()));
        }
        if let Some(t) = &args.to {
            query.push(("to", t.clone()));
        }
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let body = call(
            client
                .get(format!("{}/v1/search", args.conn.conn.server))
                .bearer_auth(&token)
                .query(&query),
        )
        .await?;
        if args.count {
            println!("{}", body["total"]);
            return Ok(());
        }
        for event in body["events"].as_array().into_iter().flatten() {
            println!("{event}");
            printed += 1;
        }
        cursor = body["next"].as_str().map(str::to_owned);
        if cursor.is_none() || printed >= args.limit {
            return Ok(());
        }
    }
}
