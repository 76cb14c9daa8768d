//! Bearer tokens to principals.

use axum::http::{header, HeaderMap};
use meniscus_storage::Principal;

use crate::{ApiError, AppState};

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token> header"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be 'Bearer <token>'")
        })?;
    Ok(token.trim())
}

fn principal(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let token = bearer(headers)?;
    state
        .node
        .authenticate(token)?
        .ok_or_else(|| ApiError::unauthorized("invalid, revoked or expired token"))
}

/// The admin, or an error.
pub(crate) fn admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match principal(state, headers)? {
        Principal::Admin => Ok(()),
        Principal::Tenant(_) => Err(ApiError::forbidden(
            "this route needs the admin token; a tenant token was given",
        )),
    }
}

/// The tenant a token belongs to, or an error.
pub(crate) fn tenant(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    match principal(state, headers)? {
        Principal::Tenant(t) => Ok(t),
        Principal::Admin => Err(ApiError::forbidden(
            "this route needs a tenant token; the admin token speaks for no tenant",
        )),
    }
}
