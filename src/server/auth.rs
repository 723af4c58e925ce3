//! Authentication: one layer in front of every non-public route turns the `Authorization`
//! header (and, for update-scoped routes, the update named in the path) into an identity,
//! before the handler runs and so before any body is read. A request that fails is answered
//! here, having cost one lookup; nothing is read, inflated, stored or cached for it.
//!
//! API calls carry `token <t>` and yield the engine's [`Identity`]; update-scoped calls carry
//! `update-token <lease>` and yield a [`Lease`] for that very update. Handlers take either
//! from the request through the extractors below. Credentials are never logged.

use std::net::IpAddr;

use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::engine::{Identity, Lease, LeaseToken, LeaseUse, Target};
use crate::server::error::ApiError;
use crate::server::extract::P;
use crate::server::handlers::UpdatePath;
use crate::server::routes::Access;
use crate::server::state::AppState;
use crate::types::StackKey;

fn credential<'a>(parts: &'a Parts, scheme: &str) -> Option<&'a str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme)
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// The layer behind [`crate::server::routes::routes`]: enforces a route's [`Access`].
pub async fn require(
    access: Access,
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let ip = source_ip(&parts);
    let outcome = match access {
        Access::Public => Ok(()),
        Access::Token(permission) => match authenticate(&parts, &state).await {
            Ok(mut identity) => {
                identity.source_ip = ip;
                let target = target(&mut parts, &state).await;
                match state.engine.authorize(&identity, permission, &target).await {
                    Ok(()) => match throttle(&parts, &state, &identity) {
                        Ok(()) => {
                            parts.extensions.insert(identity);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                    Err(e) => {
                        let org = match &target {
                            Target::Org(o) => Some(o.as_str()),
                            Target::Stack(k) => Some(k.org.as_str()),
                            Target::None => None,
                        };
                        let reason = format!("{} refused: {e}", call_of(&parts));
                        state
                            .engine
                            .note_refusal(Some(&identity), None, org, reason)
                            .await;
                        Err(ApiError::from(e))
                    }
                }
            }
            Err(e) => {
                let reason = format!("{} refused: {}", call_of(&parts), e.message());
                state.engine.note_refusal(None, ip, None, reason).await;
                Err(e)
            }
        },
        Access::Lease | Access::LeaseOrFinished => {
            let accept = if access == Access::Lease {
                LeaseUse::Live
            } else {
                LeaseUse::OrFinished
            };
            match lease(&mut parts, &state, accept).await {
                Ok(lease) => {
                    parts.extensions.insert(lease.from_address(ip));
                    Ok(())
                }
                Err(e) => {
                    let org = RawPathParams::from_request_parts(&mut parts, &state)
                        .await
                        .ok()
                        .and_then(|p| {
                            p.iter()
                                .find(|(k, _)| *k == "org")
                                .map(|(_, v)| v.to_owned())
                        });
                    let reason = format!("{} refused: {}", call_of(&parts), e.message());
                    state
                        .engine
                        .note_refusal(None, ip, org.as_deref(), reason)
                        .await;
                    Err(e)
                }
            }
        }
    };
    match outcome {
        Ok(()) => next.run(Request::from_parts(parts, body)).await,
        Err(e) => e.into_response(),
    }
}

/// Applies the rate limits to reads (see [`crate::server::ratelimit`] for why reads only).
fn throttle(parts: &Parts, state: &AppState, identity: &Identity) -> Result<(), ApiError> {
    if !state.limiter.enabled() || !matches!(parts.method, Method::GET | Method::HEAD) {
        return Ok(());
    }
    let key = match &identity.token {
        Some(t) => t.id.clone(),
        None => format!("user:{}", identity.user),
    };
    state
        .limiter
        .take(&key, std::time::Instant::now())
        .map_err(ApiError::rate_limited)
}

/// The method and path of a refused call, for its audit event (never the query: it may
/// carry credentials).
fn call_of(parts: &Parts) -> String {
    format!("{} {}", parts.method, parts.uri.path())
}

/// The address the request came from (the peer, or the client a trusted proxy names).
pub(crate) fn source_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<crate::server::client_addr::ClientAddr>()
        .map(|c| c.0)
}

/// What the path names: a stack (`{org}/{project}/{stack}`), an organization, or nothing.
pub(crate) async fn target(parts: &mut Parts, state: &AppState) -> Target {
    let Ok(params) = RawPathParams::from_request_parts(parts, state).await else {
        return Target::None;
    };
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    };
    match (get("org"), get("project"), get("stack")) {
        (Some(org), Some(project), Some(stack)) => Target::Stack(StackKey {
            org,
            project,
            stack,
        }),
        (Some(org), _, _) => Target::Org(org),
        _ => Target::None,
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Identity, ApiError> {
    let token = credential(parts, "token").ok_or_else(ApiError::unauthorized)?;
    state
        .engine
        .authenticate(token)
        .await
        .map_err(ApiError::from)
}

async fn lease(parts: &mut Parts, state: &AppState, accept: LeaseUse) -> Result<Lease, ApiError> {
    let token = credential(parts, "update-token")
        .map(|t| LeaseToken(t.to_owned()))
        .ok_or_else(ApiError::unauthorized)?;
    let P(path) = P::<UpdatePath>::from_request_parts(parts, state).await?;
    let (key, id) = path.split()?;
    state
        .engine
        .verify_lease(&key, &id, &token, accept)
        .await
        .map_err(ApiError::from)
}

/// The authenticated caller of an API call (routes declared [`Access::Token`]).
pub struct ApiIdentity(pub Identity);

impl FromRequestParts<AppState> for ApiIdentity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .map(ApiIdentity)
            .ok_or_else(|| ApiError::internal("route declared without Access::Token(_)"))
    }
}

/// The verified lease of an update-scoped call (routes declared [`Access::Lease`]).
pub struct UpdateLease(pub Lease);

impl FromRequestParts<AppState> for UpdateLease {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Lease>()
            .cloned()
            .map(UpdateLease)
            .ok_or_else(|| ApiError::internal("route declared without Access::Lease"))
    }
}

/// The `update-token` as the client sent it (already verified by the layer).
pub struct LeaseHeader(pub String);

impl FromRequestParts<AppState> for LeaseHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        credential(parts, "update-token")
            .map(|t| LeaseHeader(t.to_owned()))
            .ok_or_else(ApiError::unauthorized)
    }
}
