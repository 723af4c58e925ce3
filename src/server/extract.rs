//! Request extractors whose failures are Pulumi-shaped errors (axum's own rejections are
//! plain text, which the CLI would show as a bare message with the wrong code).
//!
//! Bodies are read only by these extractors, and so only after the route's access layer has
//! accepted the caller. A `Content-Type` other than JSON is refused (415); a declared length
//! beyond the route's limit gets 413 unread; `Content-Encoding: gzip` is inflated in
//! bounded steps (gzip bombs get 413); every byte read or inflated is charged to the
//! server's budget of body bytes in flight (503 with `Retry-After` when it is spent).

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::engine::blocking::run_sized;
use crate::engine::inflate::{Charge, inflate};
use crate::engine::{EngineError, EngineResult};
use crate::server::error::ApiError;
use crate::server::state::AppState;

/// Path parameters.
pub struct P<T>(pub T);

impl<T> FromRequestParts<AppState> for P<T>
where
    T: DeserializeOwned + Send + 'static,
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
    T: DeserializeOwned + Send + 'static,
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
/// callers storing it compressed need not compress it again. `_held` is this body's share of
/// the server's budget of body bytes in flight, given back when the request is done.
pub struct JsonBody {
    pub json: Vec<u8>,
    pub gz: Option<Vec<u8>>,
    _held: Metered,
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

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than the limit of {max} bytes"),
    )
}

/// A share of the server's budget of request-body bytes in flight (wire and inflated). It
/// grows as a body is read or inflated and is returned whole when dropped; a request that
/// would exceed the budget is refused with 503 and `Retry-After`, which the CLI retries.
pub struct Metered {
    budget: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
}

impl Metered {
    fn new(budget: &Arc<Semaphore>) -> Self {
        Metered {
            budget: budget.clone(),
            held: None,
        }
    }
}

impl Charge for Metered {
    fn charge(&mut self, n: usize) -> EngineResult<()> {
        let n = u32::try_from(n).map_err(|_| EngineError::TooLarge("body chunk".into()))?;
        if n == 0 {
            return Ok(());
        }
        let permit = self.budget.clone().try_acquire_many_owned(n).map_err(|_| {
            EngineError::Unavailable(
                "the server is busy with other large requests; retry shortly".into(),
            )
        })?;
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        Ok(())
    }
}

/// A body as it came over the wire: plain JSON, or gzip not yet inflated.
pub enum RawBody {
    Plain(Bytes),
    Gzip(Bytes),
}

/// Reads a body frame by frame, refusing more than `max` bytes and charging each frame to
/// `meter` before keeping it. A declared `Content-Length` over the limit is refused unread.
async fn read_limited(
    req: Request,
    state: &AppState,
    max: usize,
    meter: &mut Metered,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(max));
    }
    let mut body = req.into_body();
    let mut buf = BytesMut::with_capacity(declared.map_or(0, |n| n as usize).min(1 << 20));
    let deadline = tokio::time::Instant::now() + state.body_deadline;
    let late = || {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        )
    };
    loop {
        let wait = state
            .body_idle_timeout
            .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let frame = match tokio::time::timeout(wait, body.frame()).await {
            Err(_) => return Err(late()),
            Ok(None) => break,
            Ok(Some(frame)) => frame,
        };
        let frame = frame.map_err(|e| {
            ApiError::bad_request(format!("the request body could not be read: {e}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > max {
            return Err(too_large(max));
        }
        meter.charge(data.len())?;
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

impl RawBody {
    /// Reads the body, refusing more than the route's limit of bytes on the wire.
    async fn read_metered(
        req: Request,
        state: &AppState,
        limit: Limit,
        meter: &mut Metered,
    ) -> Result<Self, ApiError> {
        check_content_type(&req)?;
        let max = limit_bytes(state, limit);
        let encoding = req
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase());
        let plain = match encoding.as_deref() {
            None | Some("") | Some("identity") => true,
            Some("gzip") | Some("x-gzip") => false,
            Some(other) => {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("unsupported Content-Encoding {other:?}: use gzip or none"),
                ));
            }
        };
        let raw = read_limited(req, state, max, meter).await?;
        Ok(if plain {
            RawBody::Plain(raw)
        } else {
            RawBody::Gzip(raw)
        })
    }
}

/// The most bytes a body on a route with `limit` may have, on the wire and inflated.
pub fn limit_bytes(state: &AppState, limit: Limit) -> usize {
    match limit {
        Limit::State => state.engine.config().max_state_bytes,
        Limit::Journal => JOURNAL_BATCH_LIMIT.min(state.engine.config().max_state_bytes),
        Limit::Small => SMALL_BODY_LIMIT.min(state.engine.config().max_state_bytes),
    }
}

impl JsonBody {
    pub async fn read(req: Request, state: &AppState, limit: Limit) -> Result<Self, ApiError> {
        let max = limit_bytes(state, limit);
        let mut meter = Metered::new(&state.inflight);
        match RawBody::read_metered(req, state, limit, &mut meter).await? {
            RawBody::Plain(json) => Ok(JsonBody {
                json: json.to_vec(),
                gz: None,
                _held: meter,
            }),
            RawBody::Gzip(raw) => {
                let (json, meter) = inflate(raw.clone(), max, meter).await?;
                Ok(JsonBody {
                    json,
                    gz: Some(raw.to_vec()),
                    _held: meter,
                })
            }
        }
    }

    /// Parses the body as `T`: inline when small, on the blocking pool when large.
    pub async fn parse<T: DeserializeOwned + Send + 'static>(self) -> Result<T, ApiError> {
        let JsonBody { json, _held, .. } = self;
        let parsed = run_sized(json.len(), move || {
            parse_json(&json).map_err(|e| EngineError::Invalid(e.message().to_owned()))
        })
        .await?;
        drop(_held);
        Ok(parsed)
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
    T: DeserializeOwned + Send + 'static,
{
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        let body = JsonBody::read(req, state, Limit::Small).await?;
        body.parse().await.map(Json)
    }
}

/// A JSON body that may be empty (some calls send none), parsed as `T` or defaulted.
pub struct OptionalJson<T>(pub T);

impl<T> FromRequest<AppState> for OptionalJson<T>
where
    T: DeserializeOwned + Default + Send + 'static,
{
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        let body = JsonBody::read(req, state, Limit::Small).await?;
        if body.json.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(OptionalJson(T::default()));
        }
        body.parse().await.map(OptionalJson)
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
pub struct EventsBody(pub RawBody, pub Metered);

impl FromRequest<AppState> for EventsBody {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        let mut meter = Metered::new(&state.inflight);
        let raw = RawBody::read_metered(req, state, Limit::State, &mut meter).await?;
        Ok(EventsBody(raw, meter))
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

/// A small body that is either a form (`application/x-www-form-urlencoded`, as the CLI
/// sends to `/api/oauth/token`) or JSON, parsed as `T`.
pub struct FormBody<T>(pub T);

impl<T> FromRequest<AppState> for FormBody<T>
where
    T: DeserializeOwned + Send + 'static,
{
    type Rejection = ApiError;

    async fn from_request(mut req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        let mime = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let form = mime == "application/x-www-form-urlencoded";
        if form {
            // The body reader accepts JSON media types only; this one is checked here.
            req.headers_mut().remove(header::CONTENT_TYPE);
        }
        let body = JsonBody::read(req, state, Limit::Small).await?;
        if form {
            serde_urlencoded::from_bytes(&body.json)
                .map(FormBody)
                .map_err(|e| ApiError::bad_request(format!("the form is not valid: {e}")))
        } else {
            body.parse().await.map(FormBody)
        }
    }
}
