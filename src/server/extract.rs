//! Request extractors whose failures are Pulumi-shaped errors (axum's own rejections are
//! plain text, which the CLI would show as a bare message with the wrong code).
//!
//! Bodies: a `Content-Type` other than JSON is refused (415); `Content-Encoding: gzip` is
//! decompressed with a cap on the inflated size (gzip bombs get 413); anything beyond the
//! route's limit gets 413 before it is read.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::engine::blocking::run_sized;
use crate::engine::deployment::gunzip;
use crate::server::error::ApiError;
use crate::server::state::AppState;

/// Path parameters.
pub struct P<T>(pub T);

impl<T> FromRequestParts<AppState> for P<T>
where
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| P(p.0))
            .map_err(|e| ApiError::bad_request(format!("invalid path: {}", e.body_text())))
    }
}

/// Query-string parameters.
pub struct Q<T>(pub T);

impl<T> FromRequestParts<AppState> for Q<T>
where
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Q(q.0))
            .map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))
    }
}

/// A JSON body, decompressed. `gz` keeps the body as received when it came gzipped, so that
/// callers storing it compressed need not compress it again.
pub struct JsonBody {
    pub json: Vec<u8>,
    pub gz: Option<Vec<u8>>,
}

/// Which limit a body gets.
#[derive(Clone, Copy)]
pub enum Limit {
    /// Whole deployments (checkpoints, import).
    State,
    /// A journal batch: beyond this the CLI gets 413 and splits the batch in halves.
    Journal,
    /// Everything else.
    Small,
}

pub const SMALL_BODY_LIMIT: usize = 32 * 1024 * 1024;
pub const JOURNAL_BATCH_LIMIT: usize = 64 * 1024 * 1024;

fn check_content_type(req: &Request) -> Result<(), ApiError> {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime == "application/json" || mime.ends_with("+json") || mime.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected a JSON body (Content-Type: application/json), got {mime:?}"),
        ))
    }
}

/// A body as it came over the wire: plain JSON, or gzip not yet inflated.
pub enum RawBody {
    Plain(Vec<u8>),
    Gzip(Vec<u8>),
}

impl RawBody {
    /// Reads the body, refusing more than the route's limit of bytes on the wire.
    pub async fn read(req: Request, state: &AppState, limit: Limit) -> Result<Self, ApiError> {
        check_content_type(&req)?;
        let max = limit_bytes(state, limit);
        let encoding = req
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase());
        let raw = axum::body::to_bytes(req.into_body(), max)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is larger than the limit of {max} bytes"),
                )
            })?;
        match encoding.as_deref() {
            None | Some("") | Some("identity") => Ok(RawBody::Plain(raw.to_vec())),
            Some("gzip") | Some("x-gzip") => Ok(RawBody::Gzip(raw.to_vec())),
            Some(other) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding {other:?}: use gzip or none"),
            )),
        }
    }
}

/// The most bytes a body on a route with `limit` may have, on the wire and inflated.
pub fn limit_bytes(state: &AppState, limit: Limit) -> usize {
    match limit {
        Limit::State => state.engine.config().max_state_bytes,
        Limit::Journal => JOURNAL_BATCH_LIMIT.min(state.engine.config().max_state_bytes),
        Limit::Small => SMALL_BODY_LIMIT,
    }
}

impl JsonBody {
    pub async fn read(req: Request, state: &AppState, limit: Limit) -> Result<Self, ApiError> {
        let max = limit_bytes(state, limit);
        match RawBody::read(req, state, limit).await? {
            RawBody::Plain(json) => Ok(JsonBody { json, gz: None }),
            RawBody::Gzip(raw) => {
                let (json, raw) = run_sized(raw.len(), move || {
                    let json = gunzip(&raw, max)?;
                    Ok((json, raw))
                })
                .await?;
                Ok(JsonBody {
                    json,
                    gz: Some(raw),
                })
            }
        }
    }

    /// Parses the body as `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json(&self.json)
    }
}

pub fn parse_json<T: DeserializeOwned>(json: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(json)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid: {e}")))
}

/// A small JSON body parsed as `T`.
pub struct Json<T>(pub T);

impl<T> FromRequest<AppState> for Json<T>
where
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        let body = JsonBody::read(req, state, Limit::Small).await?;
        body.parse().map(Json)
    }
}

/// A JSON body that may be empty (some calls send none), parsed as `T` or defaulted.
pub struct OptionalJson<T>(pub T);

impl<T> FromRequest<AppState> for OptionalJson<T>
where
    T: DeserializeOwned + Default + Send,
{
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        let body = JsonBody::read(req, state, Limit::Small).await?;
        if body.json.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(OptionalJson(T::default()));
        }
        body.parse().map(OptionalJson)
    }
}

/// A whole-deployment body (large limit), kept as bytes.
pub struct StateBody(pub JsonBody);

impl FromRequest<AppState> for StateBody {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        JsonBody::read(req, state, Limit::State)
            .await
            .map(StateBody)
    }
}

/// A small body kept as bytes.
pub struct SmallBody(pub JsonBody);

impl FromRequest<AppState> for SmallBody {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        JsonBody::read(req, state, Limit::Small)
            .await
            .map(SmallBody)
    }
}

/// An engine-event batch, left compressed: the engine inspects it without inflating it whole.
pub struct EventsBody(pub RawBody);

impl FromRequest<AppState> for EventsBody {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        RawBody::read(req, state, Limit::State)
            .await
            .map(EventsBody)
    }
}

/// A journal batch body.
pub struct JournalBody(pub JsonBody);

impl FromRequest<AppState> for JournalBody {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        JsonBody::read(req, state, Limit::Journal)
            .await
            .map(JournalBody)
    }
}
