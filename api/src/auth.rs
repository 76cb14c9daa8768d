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

/// Linearizable in a cluster: a token created, rotated or revoked anywhere is seen here once
/// that change was acknowledged.
async fn principal(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let token = bearer(headers)?;
    // A removed node can no longer reach the cluster's leader: say so at once rather than
    // wait for a read that never completes.
    if let Some(id) = state.node.removed_from_cluster() {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "removed",
            format!("node {id} was removed from the cluster; send requests to a member"),
        ));
    }
    state
        .node
        .authenticate_linearizable(token)
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid, revoked or expired token"))
}

/// Any valid token's principal.
pub(crate) async fn any(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    principal(state, headers).await
}

/// The admin, or an error.
pub(crate) async fn admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match principal(state, headers).await? {
        Principal::Admin => Ok(()),
        Principal::Tenant(_) => Err(ApiError::forbidden(
            "this route needs the admin token; a tenant token was given",
        )),
    }
}

/// The tenant a token belongs to, or an error.
pub(crate) async fn tenant(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    match principal(state, headers).await? {
        Principal::Tenant(t) => Ok(t),
        Principal::Admin => Err(ApiError::forbidden(
            "this route needs a tenant token; the admin token speaks for no tenant",
        )),
    }
}

/// The tenant a request acts for: the token's tenant, or, for the admin token, the tenant
/// named by `?tenant=` (which must exist).
pub(crate) async fn acting_tenant(
    state: &AppState,
    headers: &HeaderMap,
    named: Option<&str>,
) -> Result<String, ApiError> {
    match principal(state, headers).await? {
        Principal::Tenant(t) => match named {
            Some(other) if other != t => Err(ApiError::forbidden(format!(
                "a tenant token acts for its own tenant only ({t:?}, not {other:?})"
            ))),
            _ => Ok(t),
        },
        Principal::Admin => {
            let name = named.ok_or_else(|| {
                ApiError::bad_request(
                    "missing_tenant",
                    "the admin token acts for a tenant named with ?tenant=<name>",
                )
            })?;
            if !state.node.tenant_exists(name)? {
                return Err(meniscus_actors::Error::UnknownTenant(name.to_owned()).into());
            }
            Ok(name.to_owned())
        }
    }
}
