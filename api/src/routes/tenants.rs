use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;

use crate::{auth, body, ApiError, AppState};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTenant {
    name: String,
}

/// `POST /v1/tenants`: create a tenant and return its first token (shown once).
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth::admin(&state, &headers).await?;
    let CreateTenant { name } = body::json(body, body::MAX_ADMIN_BODY_BYTES, false).await?;
    match state.node.create_tenant(&name).await? {
        Some(token) => Ok((
            StatusCode::CREATED,
            Json(json!({"name": name, "token": token})),
        )),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("tenant {name:?} already exists"),
        )),
    }
}

/// `GET /v1/tenants`: tenant names.
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::admin(&state, &headers).await?;
    let names = state.node.tenant_names()?;
    Ok(Json(json!({"tenants": names})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rotate {
    /// How long the previous tokens keep working; 0 revokes them now.
    grace_seconds: Option<u64>,
}

/// `POST /v1/tenants/{name}/tokens`: a new token; the old ones expire after the grace period.
pub(crate) async fn rotate(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    auth::admin(&state, &headers).await?;
    let Path(name) = name?;
    let rotate: Rotate = body::json(body, body::MAX_ADMIN_BODY_BYTES, true).await?;
    let grace = rotate
        .grace_seconds
        .map(Duration::from_secs)
        .unwrap_or(state.config.default_token_grace);
    let (token, valid_until) = state.node.rotate_token(&name, grace).await?;
    let valid_until = valid_until.format(&Rfc3339).map_err(ApiError::internal)?;
    Ok(Json(
        json!({"name": name, "token": token, "previous_valid_until": valid_until}),
    ))
}
