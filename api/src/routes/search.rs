use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use meniscus_storage::{SearchHit, SearchRequest, MAX_LIMIT};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::{auth, ApiError, AppState};

const DEFAULT_LIMIT: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchParams {
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    /// `local`: answer from this node's replica. Every search is local for now; the parameter
    /// is accepted so clients can already say what they mean.
    read: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct SearchBody {
    total: u64,
    events: Vec<SearchHit>,
    next: Option<String>,
}

fn micros(name: &str, value: Option<String>) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| {
            OffsetDateTime::parse(&v, &Rfc3339)
                .map(|t| (t.unix_timestamp_nanos() / 1_000) as i64)
                .map_err(|e| {
                    ApiError::bad_request(
                        "invalid_time",
                        format!("{name}: {v:?} is not an RFC 3339 date-time ({e})"),
                    )
                })
        })
        .transpose()
}

/// `GET /v1/search`: the tenant's events, newest first.
pub(crate) async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<SearchBody>, ApiError> {
    let tenant = auth::tenant(&state, &headers).await?;
    let Query(params) =
        params.map_err(|e| ApiError::bad_request("invalid_parameters", e.body_text()))?;
    if let Some(read) = params.read.as_deref().filter(|r| *r != "local") {
        return Err(ApiError::bad_request(
            "invalid_parameters",
            format!("read={read:?}: the only read mode is \"local\""),
        ));
    }
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_parameters",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let request = SearchRequest {
        query: params.q.unwrap_or_else(|| "*".into()),
        from_us: micros("from", params.from)?,
        to_us: micros("to", params.to)?,
        limit,
        cursor: params.cursor,
    };
    let response = state.node.search(&tenant, request).await?;
    Ok(Json(SearchBody {
        total: response.total,
        events: response.hits,
        next: response.next,
    }))
}
