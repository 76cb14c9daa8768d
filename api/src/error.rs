//! API errors and how they map to HTTP.

use axum::extract::rejection::PathRejection;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use meniscus_actors::Error as NodeError;
use meniscus_consensus::Error as RaftError;
use meniscus_storage::Error as StorageError;
use serde_json::json;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// More about the error, under `error.details` (a program's diagnostics).
    details: Option<serde_json::Value>,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    /// The same error, with `details` under `error.details`.
    pub(crate) fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(crate) fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(error = %message, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            message.to_string(),
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(details) = self.details {
            error["details"] = details;
        }
        let body = Json(json!({ "error": error }));
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                (self.status, [(header::RETRY_AFTER, "1")], body).into_response()
            }
            // The rest of an oversize body is not read, so the connection cannot be reused:
            // say so, or keep-alive clients send their next request into a closed socket.
            StatusCode::PAYLOAD_TOO_LARGE => {
                (self.status, [(header::CONNECTION, "close")], body).into_response()
            }
            _ => (self.status, body).into_response(),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::bad_request("invalid_parameters", e.body_text())
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let unavailable =
            |m: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m);
        match e {
            NodeError::Overloaded(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", m)
            }
            NodeError::UnknownTenant(t) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("tenant {t:?} does not exist"),
            ),
            NodeError::Consensus(RaftError::Overloaded) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                RaftError::Overloaded.to_string(),
            ),
            NodeError::Consensus(
                e @ (RaftError::NotLeader { .. }
                | RaftError::Dropped
                | RaftError::Forwarded(_)
                | RaftError::Stopped),
            ) => unavailable(e.to_string()),
            NodeError::Unavailable(m) => unavailable(m),
            NodeError::InvalidMember(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            NodeError::InvalidArgument(m) => ApiError::bad_request("invalid_parameters", m),
            NodeError::InvalidPipeline(e) => {
                let details = json!({"part": e.part, "diagnostics": e.diagnostics});
                ApiError::bad_request("invalid_program", e.to_string()).with_details(details)
            }
            NodeError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            NodeError::Storage(e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::InvalidQuery(m) => ApiError::bad_request("invalid_query", m),
            StorageError::InvalidCursor(m) => ApiError::bad_request("invalid_cursor", m),
            StorageError::InvalidTenantName(m) => {
                ApiError::bad_request("invalid_name", format!("invalid tenant name {m}"))
            }
            other => ApiError::internal(other),
        }
    }
}
