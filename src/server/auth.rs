//! Authentication: turns the `Authorization` header into an identity. API calls carry
//! `token <t>` and yield the engine's [`Caller`]; update-scoped calls carry
//! `update-token <lease>`, which the engine checks against that very update inside the write.
//! Credentials are never logged.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use crate::engine::{Caller, LeaseToken};
use crate::server::error::ApiError;
use crate::server::state::AppState;

fn credential<'a>(parts: &'a Parts, scheme: &str) -> Option<&'a str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme)
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// The authenticated caller of an API call.
pub struct ApiCaller(pub Caller);

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = credential(parts, "token").ok_or_else(ApiError::unauthorized)?;
        state
            .engine
            .authenticate(token)
            .await
            .map(ApiCaller)
            .map_err(ApiError::from)
    }
}

/// The lease token presented on an update-scoped call.
pub struct UpdateLease(pub LeaseToken);

impl FromRequestParts<AppState> for UpdateLease {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, ApiError> {
        credential(parts, "update-token")
            .map(|t| UpdateLease(LeaseToken(t.to_owned())))
            .ok_or_else(ApiError::unauthorized)
    }
}
