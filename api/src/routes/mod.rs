//! One file per resource.

mod cluster;
mod events;
mod health;
mod metrics;
mod pipelines;
mod search;
mod tenants;

use axum::routing::{delete, get, post};
use axum::Router;

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::livez))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/tenants", post(tenants::create).get(tenants::list))
        .route("/v1/tenants/{name}/tokens", post(tenants::rotate))
        .route("/v1/events", post(events::publish))
        .route("/v1/pipelines", get(pipelines::list))
        .route("/v1/pipelines/test", post(pipelines::test))
        .route("/v1/pipelines/examples", get(pipelines::examples))
        .route(
            "/v1/pipelines/{name}",
            get(pipelines::get)
                .put(pipelines::put)
                .delete(pipelines::delete),
        )
        .route("/v1/search", get(search::search).post(search::search_post))
        .route("/v1/cluster", get(cluster::status))
        .route("/v1/cluster/nodes", post(cluster::add_node))
        .route("/v1/cluster/nodes/{id}", delete(cluster::remove_node))
        .fallback(|| async {
            crate::ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such route",
            )
        })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            crate::ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed on this route"),
            )
        })
}
