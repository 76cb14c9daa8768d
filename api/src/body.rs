//! Request bodies, read only after the request's token was checked, with a limit, and refused
//! in the JSON error envelope (400 for malformed or invalid JSON, 413 past the limit).

use axum::body::Body;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// Largest body of an administrative request (tenants, tokens, members).
pub(crate) const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;

/// Reads at most `limit` bytes of `body`.
pub(crate) async fn read(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body exceeds {limit} bytes"),
            )
        } else {
            ApiError::bad_request("bad_body", format!("reading the request body: {e}"))
        }
    })
}

/// Reads `body` as a JSON `T`; an empty body is `T::default()` when `empty_ok`.
pub(crate) async fn json<T: DeserializeOwned + Default>(
    body: Body,
    limit: usize,
    empty_ok: bool,
) -> Result<T, ApiError> {
    let bytes = read(body, limit).await?;
    if empty_ok && bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse(&bytes)
}

/// Reads `body` as a JSON `T`, which it must hold.
pub(crate) async fn json_required<T: DeserializeOwned>(
    body: Body,
    limit: usize,
) -> Result<T, ApiError> {
    parse(&read(body, limit).await?)
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the request body: {e}")))
}
