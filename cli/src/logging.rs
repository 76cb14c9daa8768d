//! `tracing` to stderr, human or JSON; `MENISCUS_LOG` (or `RUST_LOG`) sets the filter.

use tracing_subscriber::EnvFilter;

pub fn init(format: &str) {
    let filter = std::env::var("MENISCUS_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,raft=warn,tantivy=warn".into());
    // Colours only for a person at a terminal: not in log files, journald or pipes.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
