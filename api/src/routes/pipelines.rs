//! `/v1/pipelines`: a tenant's processing pipelines (VRL programs), the test endpoint and the
//! library of examples. A tenant token acts for its tenant; the admin token for the tenant
//! named by `?tenant=`.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use meniscus_actors::TestOutcome;
use meniscus_event::publish::{self, EventDraft};
use meniscus_event::syslog::{self, Format};
use meniscus_event::Source;
use meniscus_pipeline::PipelineSpec;
use meniscus_storage::PipelineRecord;
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::{auth, body, ApiError, AppState};

/// Largest body of a pipeline request: a program of 64 KiB, escaped in JSON.
const MAX_PIPELINE_BODY_BYTES: usize = 256 * 1024;
/// Largest body of a test request: a program and sample events.
const MAX_TEST_BODY_BYTES: usize = 1024 * 1024;
/// Most sample events one test request may carry.
const MAX_TEST_EVENTS: usize = 1000;

#[derive(Deserialize, Default)]
pub(crate) struct TenantParam {
    tenant: Option<String>,
}

/// `PUT /v1/pipelines/{name}`: store a pipeline; a program that does not compile is refused
/// with 400 and each error's line and column.
pub(crate) async fn put(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    Query(param): Query<TenantParam>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::acting_tenant(&state, &headers, param.tenant.as_deref()).await?;
    let Path(name) = name?;
    let spec: PipelineSpec = body::json_required(body, MAX_PIPELINE_BODY_BYTES).await?;
    let version = state.node.put_pipeline(&tenant, &name, &spec).await?;
    Ok(Json(
        json!({"tenant": tenant, "name": name, "version": version}),
    ))
}

/// `GET /v1/pipelines`: the tenant's pipelines, in the order they run.
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(param): Query<TenantParam>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::acting_tenant(&state, &headers, param.tenant.as_deref()).await?;
    let mut pipelines = state
        .node
        .pipelines(&tenant)?
        .into_iter()
        .map(describe)
        .collect::<Result<Vec<_>, _>>()?;
    pipelines.sort_by(|a, b| {
        (a["order"].as_i64(), a["name"].as_str()).cmp(&(b["order"].as_i64(), b["name"].as_str()))
    });
    Ok(Json(json!({"tenant": tenant, "pipelines": pipelines})))
}

/// `GET /v1/pipelines/{name}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    Query(param): Query<TenantParam>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::acting_tenant(&state, &headers, param.tenant.as_deref()).await?;
    let Path(name) = name?;
    Ok(Json(describe(state.node.pipeline(&tenant, &name)?)?))
}

/// `DELETE /v1/pipelines/{name}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    Query(param): Query<TenantParam>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::acting_tenant(&state, &headers, param.tenant.as_deref()).await?;
    let Path(name) = name?;
    state.node.delete_pipeline(&tenant, &name).await?;
    Ok(Json(json!({"tenant": tenant, "deleted": name})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestRequest {
    /// A program to try; without it, the stored pipeline `name`, or all of them.
    source: Option<String>,
    when: Option<String>,
    #[serde(default)]
    order: i64,
    name: Option<String>,
    /// Sample events: objects as `POST /v1/events` takes them, or syslog lines.
    events: Vec<Value>,
}

/// `POST /v1/pipelines/test`: what a program (given, or stored) makes of sample events; the
/// same as a publish would store, without storing anything.
pub(crate) async fn test(
    State(state): State<AppState>,
    Query(param): Query<TenantParam>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::acting_tenant(&state, &headers, param.tenant.as_deref()).await?;
    let request: TestRequest = body::json_required(body, MAX_TEST_BODY_BYTES).await?;
    if request.events.len() > MAX_TEST_EVENTS {
        return Err(ApiError::bad_request(
            "too_many_events",
            format!("a test takes at most {MAX_TEST_EVENTS} events"),
        ));
    }
    let spec = request.source.map(|source| PipelineSpec {
        source,
        when: request.when,
        order: request.order,
    });
    let now = OffsetDateTime::now_utc();
    let source = Source {
        transport: "test".into(),
        peer: None,
    };
    let mut events = Vec::with_capacity(request.events.len());
    for (i, sample) in request.events.into_iter().enumerate() {
        let draft = draft_of(sample, state.config.limits, now)
            .map_err(|m| ApiError::bad_request("invalid_event", format!("events[{i}]: {m}")))?;
        events.push(draft.into_event(&tenant, now, source.clone(), || format!("test-{i}")));
    }
    let outcomes = state
        .node
        .test_pipeline(&tenant, spec.as_ref(), request.name.as_deref(), events)
        .await?;
    let results: Vec<Value> = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            TestOutcome::Stored(event) => {
                let error = event.fields.get(meniscus_pipeline::ERROR_FIELD).cloned();
                json!({"stored": event, "error": error})
            }
            TestOutcome::Dropped(pipeline) => json!({"dropped": true, "pipeline": pipeline}),
        })
        .collect();
    Ok(Json(json!({"tenant": tenant, "results": results})))
}

/// `GET /v1/pipelines/examples`: ready-made programs (any valid token).
pub(crate) async fn examples(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::any(&state, &headers).await?;
    Ok(Json(
        json!({"examples": meniscus_pipeline::examples::all()}),
    ))
}

/// A sample event: an object as a publish takes it, or a syslog line (RFC 5424, RFC 3164, or
/// plain text).
fn draft_of(
    sample: Value,
    limits: publish::Limits,
    now: OffsetDateTime,
) -> Result<EventDraft, String> {
    match sample {
        Value::String(line) => Ok(syslog::parse(line.as_bytes(), Format::Auto, now).into_draft()),
        object @ Value::Object(_) => {
            let bytes = serde_json::to_vec(&object).map_err(|e| e.to_string())?;
            let mut drafts = publish::parse_json(&bytes, limits).map_err(|e| e.to_string())?;
            drafts.pop().ok_or_else(|| "an empty event".to_owned())
        }
        _ => Err("expected an event object or a syslog line".into()),
    }
}

fn describe(record: PipelineRecord) -> Result<Value, ApiError> {
    let spec: PipelineSpec = serde_json::from_str(&record.spec_json).map_err(ApiError::internal)?;
    let updated_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(record.updated_at_nanos))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok());
    Ok(json!({
        "name": record.name,
        "version": record.version,
        "order": spec.order,
        "when": spec.when,
        "source": spec.source,
        "updated_at": updated_at,
    }))
}
