use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use meniscus_event::publish::{self, PublishError};
use meniscus_event::Source;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::{auth, ApiError, AppState};

enum BodyFormat {
    Json,
    Ndjson,
}

fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let unsupported = |what: &str| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("{what}; send Content-Type: application/json (an object or an array) or application/x-ndjson (one object per line)"),
        )
    };
    let value = headers
        .get(header::CONTENT_TYPE)
        .ok_or_else(|| unsupported("missing Content-Type"))?
        .to_str()
        .map_err(|_| unsupported("unreadable Content-Type"))?;
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(BodyFormat::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines" => Ok(BodyFormat::Ndjson),
        other => Err(unsupported(&format!(
            "Content-Type {other:?} is not supported"
        ))),
    }
}

/// `POST /v1/events`: publish a JSON object, a JSON array, or NDJSON. Answers only after the
/// batch is committed (fsync'd); a rejected request stores nothing. The token and the content
/// type are checked before the body is read: a stranger's body costs nothing.
pub(crate) async fn publish(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let tenant = auth::tenant(&state, &headers).await?;
    let format = body_format(&headers)?;
    let max = state.config.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body exceeds {max} bytes; split it into smaller requests"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large());
    }
    let body = crate::body::read(body, max).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            e
        }
    })?;
    // Under back-pressure the answer is 503 whatever the body holds: say it before parsing.
    state.node.admit(&tenant).await?;
    let limits = state.config.limits;
    let drafts = match format {
        BodyFormat::Json => publish::parse_json(&body, limits),
        BodyFormat::Ndjson => publish::parse_ndjson(&body, limits),
    }
    .map_err(|e| match e {
        PublishError::Invalid(m) => ApiError::bad_request("invalid_event", m),
        PublishError::EventTooLarge(m) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "event_too_large", m)
        }
        PublishError::TooManyEvents(m) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_many_events", m)
        }
    })?;
    let received_at = OffsetDateTime::now_utc();
    let source = Source {
        transport: "http".into(),
        peer: Some(peer.to_string()),
    };
    let events: Vec<_> = drafts
        .into_iter()
        .map(|d| {
            d.into_event(&tenant, received_at, source.clone(), || {
                uuid::Uuid::now_v7().to_string()
            })
        })
        .collect();
    if events.is_empty() {
        // Nothing to store: no Raft entry for it.
        return Ok(Json(json!({"accepted": 0, "commit_index": 0})));
    }
    let commit_index = state.node.publish(&tenant, &events).await?;
    Ok(Json(
        json!({"accepted": events.len(), "commit_index": commit_index}),
    ))
}
