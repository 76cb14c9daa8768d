//! Ready-made programs for the logs operators meet most: web servers, sshd, sudo, the kernel's
//! packet filter, haproxy, postgres, JSON or key=value in the message, and redaction. Served
//! at `GET /v1/pipelines/examples`; each is tested on real sample lines (see `tests`).

use serde::Serialize;

/// One ready-made program.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    /// A name to store it under.
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// A suggested `when`.
    pub when: Option<&'static str>,
    /// The VRL program.
    pub source: &'static str,
    /// A line it is meant for.
    pub sample: &'static str,
}

/// The benchmark's program: five stages as a production pipeline has them — parse an nginx
/// access line, coerce types, parse a timestamp, enrich, redact. `meniscus bench --pipeline`
/// and the criterion benchmark run it.
pub const BENCH_FIVE_STAGES: &str = r#"p = parse_nginx_log!(.message, "combined")
.fields.status = to_int!(p.status)
.fields.bytes = to_int!(p.size)
.fields.path = p.request
.fields.user_agent = p.agent
t = parse_regex!(.message, r'\[(?P<t>[^\]]+)\]')
.timestamp = parse_timestamp!(t.t, "%d/%b/%Y:%H:%M:%S %z")
.fields.status_class = if p.status >= 500 { "server_error" } else if p.status >= 400 { "client_error" } else { "ok" }
.fields.environment = "production"
.fields.client = redact(p.client, filters: [r'\d+$'], redactor: {"type": "text", "replacement": "x"})"#;

/// An nginx access line for benchmarks, varied by `n`.
pub fn bench_access_line(n: u64) -> String {
    const PATHS: [&str; 4] = ["/", "/api/orders", "/static/app.js", "/login"];
    const STATUS: [u16; 5] = [200, 200, 304, 404, 502];
    format!(
        r#"10.{}.{}.{} - - [08/Dec/2026:10:{:02}:{:02} +0000] "GET {} HTTP/1.1" {} {} "-" "Mozilla/5.0 (X11; Linux x86_64)""#,
        n % 200,
        n / 7 % 250,
        n / 3 % 250,
        n / 60 % 60,
        n % 60,
        PATHS[(n % 4) as usize],
        STATUS[(n % 5) as usize],
        n * 37 % 40_000,
    )
}

/// Every example.
pub fn all() -> &'static [Example] {
    EXAMPLES
}

/// The example named `name`.
pub fn find(name: &str) -> Option<&'static Example> {
    EXAMPLES.iter().find(|e| e.name == name)
}

static EXAMPLES: &[Example] = &[
    Example {
        name: "nginx-access",
        description: "nginx access log (combined format): client, method, path, status, bytes, \
                      referer, user agent; the event time from the line",
        when: Some(r#".app == "nginx""#),
        source: r#"parsed = parse_nginx_log!(.message, "combined")
.timestamp = parsed.timestamp
.fields.client = parsed.client
.fields.user = parsed.user
.fields.status = parsed.status
.fields.bytes = parsed.size
.fields.referer = parsed.referer
.fields.user_agent = parsed.agent
.fields.request = parsed.request
request, err = parse_regex(parsed.request, r'^(?P<method>\S+) (?P<path>\S+)(?: (?P<protocol>\S+))?$')
if err == null {
  .fields.method = request.method
  .fields.path = request.path
  .fields.protocol = request.protocol
}"#,
        sample: r#"10.0.0.7 - - [08/Dec/2026:10:15:32 +0000] "GET /missing HTTP/1.1" 404 512 "-" "curl/8.5.0""#,
    },
    Example {
        name: "nginx-error",
        description: "nginx error log: severity, pid, client, server, request and the message",
        when: Some(r#".app == "nginx""#),
        source: r#"parsed = parse_nginx_log!(.message, "error")
.timestamp = parsed.timestamp
.severity = parsed.severity
.message = parsed.message
.fields.pid = parsed.pid
.fields.client = parsed.client
.fields.server = parsed.server
.fields.request = parsed.request"#,
        sample: r#"2026/12/08 10:15:32 [error] 1234#1234: *5 open() "/usr/share/nginx/html/missing" failed (2: No such file or directory), client: 10.0.0.7, server: localhost, request: "GET /missing HTTP/1.1", host: "localhost""#,
    },
    Example {
        name: "apache-access",
        description: "Apache httpd access log (combined format): the same fields as nginx-access",
        when: Some(r#".app == "httpd" || .app == "apache2""#),
        source: r#"parsed = parse_apache_log!(.message, "combined")
.timestamp = parsed.timestamp
.fields.client = parsed.host
.fields.user = parsed.user
.fields.method = parsed.method
.fields.path = parsed.path
.fields.protocol = parsed.protocol
.fields.status = parsed.status
.fields.bytes = parsed.size
.fields.referer = parsed.referrer
.fields.user_agent = parsed.agent"#,
        sample: r#"192.168.1.20 - bob [08/Dec/2026:10:15:32 +0000] "POST /login HTTP/1.1" 302 0 "https://example.com/" "Mozilla/5.0""#,
    },
    Example {
        name: "apache-error",
        description: "Apache httpd error log: module, severity, pid, client and the message",
        when: Some(r#".app == "httpd" || .app == "apache2""#),
        source: r#"parsed = parse_apache_log!(.message, "error", timestamp_format: "%a %b %d %H:%M:%S%.f %Y")
.timestamp = parsed.timestamp
.severity = parsed.severity
.message = parsed.message
.fields.module = parsed.module
.fields.pid = parsed.pid
.fields.client = parsed.client"#,
        sample: r#"[Tue Dec 08 10:15:32.123456 2026] [core:error] [pid 4242:tid 140000] [client 10.0.0.9:51234] AH00126: Invalid URI in request GET /%%% HTTP/1.1"#,
    },
    Example {
        name: "sshd-auth",
        description: "sshd logins: user, source IP and port, method, and result (success or failure)",
        when: Some(r#".app == "sshd""#),
        source: r#"m, err = parse_regex(.message, r'^(?P<result>Accepted|Failed) (?P<method>\S+) for (?:invalid user )?(?P<user>\S+) from (?P<ip>\S+) port (?P<port>\d+)')
if err == null {
  .fields.user = m.user
  .fields.source_ip = m.ip
  .fields.source_port = to_int!(m.port)
  .fields.auth_method = m.method
  .fields.result = if m.result == "Accepted" { "success" } else { "failure" }
} else {
  m, err = parse_regex(.message, r'^Invalid user (?P<user>\S*) from (?P<ip>\S+)(?: port (?P<port>\d+))?')
  if err == null {
    .fields.user = m.user
    .fields.source_ip = m.ip
    .fields.result = "failure"
  }
}"#,
        sample: "Failed password for invalid user admin from 203.0.113.9 port 52214 ssh2",
    },
    Example {
        name: "sudo",
        description: "sudo commands: who ran what as whom, from where",
        when: Some(r#".app == "sudo""#),
        source: r#"m, err = parse_regex(.message, r'^\s*(?P<user>\S+) : (?P<rest>.*)$')
if err == null {
  .fields.user = m.user
  kv = {}
  for_each(parse_regex_all!(m.rest, r'(?P<key>[A-Z]+)=(?P<value>[^;]*?)\s*(?:;|$)')) -> |_i, pair| {
    kv = set!(kv, [pair.key], pair.value)
  }
  .fields.tty = kv.TTY
  .fields.cwd = kv.PWD
  .fields.run_as = kv.USER
  .fields.command = kv.COMMAND
}"#,
        sample: "alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx",
    },
    Example {
        name: "iptables",
        description: "kernel packet filter (iptables/nftables/ufw LOG): interface, addresses, ports, protocol",
        when: Some(r#".app == "kernel" && contains(.message, "SRC=")"#),
        source: r#"m = parse_regex!(.message, r'^(?:\[\s*\d+\.\d+\]\s*)?(?P<rule>.*?)\s*IN=(?P<in>\S*) OUT=(?P<out>\S*)(?: MAC=\S*)? SRC=(?P<src>\S+) DST=(?P<dst>\S+) LEN=(?P<len>\d+).*?PROTO=(?P<proto>\S+)(?: SPT=(?P<spt>\d+) DPT=(?P<dpt>\d+))?')
.fields.rule = m.rule
.fields.in_interface = m.in
.fields.out_interface = m.out
.fields.source_ip = m.src
.fields.destination_ip = m.dst
.fields.protocol = m.proto
.fields.length = to_int(m.len) ?? null
.fields.source_port = to_int(m.spt) ?? null
.fields.destination_port = to_int(m.dpt) ?? null"#,
        sample: "[UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56 SRC=198.51.100.23 DST=10.0.0.5 LEN=60 TOS=0x00 PREC=0x00 TTL=52 ID=54321 DF PROTO=TCP SPT=40000 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0",
    },
    Example {
        name: "haproxy",
        description: "haproxy HTTP log: client, frontend, backend, server, timings, status, bytes, request",
        when: Some(r#".app == "haproxy""#),
        source: r#"m = parse_regex!(.message, r'^(?P<client>[^:\s]+):(?P<port>\d+) \[(?P<accepted>[^\]]+)\] (?P<frontend>\S+) (?P<backend>[^/\s]+)/(?P<server>\S+) (?P<tq>-?\d+)/(?P<tw>-?\d+)/(?P<tc>-?\d+)/(?P<tr>-?\d+)/(?P<tt>\+?\d+) (?P<status>\d+) (?P<bytes>\d+) \S+ \S+ (?P<state>\S+) \S+ \S+ "(?P<method>\S+) (?P<path>\S+)')
.fields.client = m.client
.fields.frontend = m.frontend
.fields.backend = m.backend
.fields.server = m.server
.fields.status = to_int!(m.status)
.fields.bytes = to_int!(m.bytes)
.fields.duration_ms = to_int!(replace(m.tt, "+", ""))
.fields.termination_state = m.state
.fields.method = m.method
.fields.path = m.path"#,
        sample: r#"10.0.0.1:50123 [08/Dec/2026:10:15:32.123] www app/web1 0/0/1/12/13 200 2048 - - ---- 5/5/0/1/0 0/0 "GET /index.html HTTP/1.1""#,
    },
    Example {
        name: "postgres",
        description: "PostgreSQL server log: level, pid, query duration and statement",
        when: Some(r#"starts_with(to_string(.app), "postgres")"#),
        source: r#"m = parse_regex!(.message, r'^(?P<ts>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?) (?P<tz>\S+) \[(?P<pid>\d+)\] (?P<level>[A-Z0-9]+):\s+(?P<text>.*)$')
.timestamp = parse_timestamp(m.ts + " +0000", "%Y-%m-%d %H:%M:%S%.f %z") ?? .timestamp
.fields.pid = to_int!(m.pid)
.fields.level = m.level
.message = m.text
d, err = parse_regex(m.text, r'^duration: (?P<ms>[\d.]+) ms(?:\s+(?:statement|execute [^:]*): (?P<statement>.*))?')
if err == null {
  .fields.duration_ms = to_float!(d.ms)
  .fields.statement = d.statement
}"#,
        sample: "2026-12-08 10:15:32.123 UTC [4321] LOG:  duration: 1523.100 ms  statement: SELECT * FROM orders WHERE total > 100",
    },
    Example {
        name: "json-message",
        description: "a JSON object in the message: its keys become fields; `msg` or `message` becomes the message",
        when: Some(r#"starts_with(strip_whitespace(.message), "{")"#),
        source: r#"parsed = object!(parse_json!(.message, max_depth: 16))
.fields = merge(.fields, parsed)
text = parsed.message || parsed.msg
if is_string(text) { .message = text }
level = parsed.level || parsed.severity
if is_string(level) { .severity = to_syslog_level(to_syslog_severity(downcase!(level)) ?? 6) ?? .severity }"#,
        sample: r#"{"level":"error","msg":"payment failed","order_id":1234,"amount":99.5}"#,
    },
    Example {
        name: "key-value",
        description: "key=value pairs or logfmt in the message: each pair becomes a field",
        when: None,
        source: r#"pairs = parse_logfmt(.message) ?? {}
.fields = merge(.fields, pairs)"#,
        sample: r#"level=warn msg="disk almost full" mount=/var used_pct=91"#,
    },
    Example {
        name: "redact",
        description: "masks card numbers, e-mail addresses and bearer tokens in the message",
        when: None,
        source: r#".message = redact(.message, filters: [
  r'\b(?:\d[ -]?){12,18}\d\b',
  r'[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}',
  r'(?i)bearer\s+[A-Za-z0-9._~+/-]+=*'
])"#,
        sample: "charge ok card=4111 1111 1111 1111 for jane.doe@example.com, Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc",
    },
];
