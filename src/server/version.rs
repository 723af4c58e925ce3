//! API version negotiation (capability `api-version`): a client names the version it speaks
//! in `Accept: application/vnd.pulumi+N`; the CLI has sent 8 (v3.150) and 9 (v3.259+).
//! Versions this server does not speak get 406; a request naming none gets the default.
//! What changes with the version: before 8, `GET /api/user/stacks` is not paginated.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::server::error::ApiError;

pub const MIN_API_VERSION: u32 = 1;
pub const MAX_API_VERSION: u32 = 9;
pub const DEFAULT_API_VERSION: u32 = 9;

/// The API version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersion(pub u32);

/// The highest `application/vnd.pulumi+N` in the `Accept` headers, if any.
fn requested(req: &Request) -> Option<Result<u32, String>> {
    let mut best: Option<Result<u32, String>> = None;
    for v in req.headers().get_all(header::ACCEPT) {
        let Ok(v) = v.to_str() else { continue };
        for item in v.split(',') {
            let media = item.split(';').next().unwrap_or("").trim();
            if let Some(n) = media.strip_prefix("application/vnd.pulumi+") {
                let parsed = n.parse::<u32>().map_err(|_| n.to_owned());
                best = match (best, parsed) {
                    (Some(Ok(a)), Ok(b)) => Some(Ok(a.max(b))),
                    (_, p) => Some(p),
                };
            }
        }
    }
    best
}

pub async fn negotiate(mut req: Request, next: Next) -> Response {
    let version = match requested(&req) {
        None => DEFAULT_API_VERSION,
        Some(Ok(n)) if (MIN_API_VERSION..=MAX_API_VERSION).contains(&n) => n,
        Some(other) => {
            let asked = match other {
                Ok(n) => n.to_string(),
                Err(s) => s,
            };
            return ApiError::new(
                StatusCode::NOT_ACCEPTABLE,
                format!(
                    "API version {asked:?} is not supported; this server speaks versions \
                     {MIN_API_VERSION} to {MAX_API_VERSION}"
                ),
            )
            .into_response();
        }
    };
    req.extensions_mut().insert(ApiVersion(version));
    next.run(req).await
}
