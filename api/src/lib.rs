//! Meniscus HTTP API (axum): publish, search, tenant administration, health.
//!
//! Every error is JSON: `{"error": {"code": "...", "message": "..."}}`.
//!
//! # Layout
//! - `error`: [`ApiError`] and its HTTP mapping.
//! - `auth`: bearer tokens to principals.
//! - `routes`: one file per resource.
#![deny(missing_docs)]

mod auth;
mod body;
mod error;
mod routes;
mod serve;
pub mod syslog;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use meniscus_actors::Node;
use meniscus_event::publish::Limits;

pub use error::ApiError;
pub use serve::{serve, ServeLimits, DEFAULT_MAX_CONNECTIONS};
pub use syslog::SyslogStats;

/// API settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Per-event and per-batch limits.
    pub limits: Limits,
    /// How long a rotated-out token keeps working when the request does not say.
    pub default_token_grace: Duration,
    /// The counters of the syslog listeners running beside the API, which `GET /metrics`
    /// exports with a `listener` label (`tcp`, `udp`, `tls`, `relp`). Empty when none runs.
    pub syslog: Vec<Arc<SyslogStats>>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 32 * 1024 * 1024,
            limits: Limits::default(),
            default_token_grace: Duration::from_secs(3600),
            syslog: Vec::new(),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub node: Arc<Node>,
    pub config: Arc<ApiConfig>,
}

/// The API's routes.
pub fn router(node: Arc<Node>, config: ApiConfig) -> Router {
    let max_body = config.max_body_bytes;
    let state = AppState {
        node,
        config: Arc::new(config),
    };
    routes::routes()
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}
