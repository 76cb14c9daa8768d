use axum::extract::rejection::QueryRejection;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use meniscus_actors::{SearchOptions, SearchOutcome};
use meniscus_storage::{SearchHit, SearchRequest, MAX_LIMIT};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::{auth, ApiError, AppState};

const DEFAULT_LIMIT: usize = 100;
/// How long a search with `min_index` waits for this node to make those writes searchable.
const MIN_INDEX_WAIT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SearchParams {
    q: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    /// Present (`local`): answer from this node's replica only, or fail where it holds none.
    /// Absent: a node without a replica of the tenant's shard asks one that has it.
    read: Option<String>,
    /// Read your writes: the `commit_index` a publish answered. The search waits (up to 10 s)
    /// until every event of the tenant committed at or below it is searchable on this node.
    min_index: Option<u64>,
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
    run(&state, &tenant, params).await
}

/// Largest `POST /v1/search` body.
pub const MAX_SEARCH_BODY_BYTES: usize = 1024 * 1024;

/// `POST /v1/search`: the same, with the parameters as a JSON object (a query too long for a
/// URL fits here). The token is checked before the body is read.
pub(crate) async fn search_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<SearchBody>, ApiError> {
    let tenant = auth::tenant(&state, &headers).await?;
    let bytes = crate::body::read(body, MAX_SEARCH_BODY_BYTES).await?;
    let params: SearchParams = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request("invalid_parameters", format!("the search body: {e}"))
    })?;
    run(&state, &tenant, params).await
}

async fn run(
    state: &AppState,
    tenant: &str,
    params: SearchParams,
) -> Result<Json<SearchBody>, ApiError> {
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
    // Refused here, before waiting for min_index or asking another node.
    meniscus_storage::query_limits::check(&request.query)?;
    if let (Some(from), Some(to)) = (request.from_us, request.to_us) {
        if from > to {
            return Err(ApiError::bad_request(
                "invalid_parameters",
                "from is later than to: the time range is empty",
            ));
        }
    }
    let options = SearchOptions {
        min_index: params.min_index,
        wait: MIN_INDEX_WAIT,
        local_only: params.read.is_some(),
    };
    let response = match state.node.search_with(tenant, request, options).await? {
        SearchOutcome::Found(response) => response,
        SearchOutcome::NotYetSearchable => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_yet_searchable",
                format!(
                    "the writes up to commit index {} were not searchable within {} s; retry, or ask another node",
                    params.min_index.unwrap_or(0),
                    MIN_INDEX_WAIT.as_secs()
                ),
            ));
        }
    };
    Ok(Json(SearchBody {
        total: response.total,
        events: response.hits,
        next: response.next,
    }))
}
