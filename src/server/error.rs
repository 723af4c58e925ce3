//! The server's one error type and its single rendering: every failure leaves as
//! `{"code": <status>, "message": "<Status Text>: <detail>"}` (the Pulumi `ErrorResponse`),
//! with `code` equal to the HTTP status because the CLI trusts the body's code over the
//! status line. Internal details never reach the client; they go to the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::engine::EngineError;
use crate::server::wire::ErrorResponse;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds for `Retry-After` when it is not the default.
    retry_after: Option<u64>,
}

/// Seconds a client is asked to wait before retrying a 503 or 429. The CLI honours
/// `Retry-After` on 429 and retries 5xx with its own backoff (1 s, then doubling).
const RETRY_AFTER_SECS: &str = "1";

impl ApiError {
    pub fn new(status: StatusCode, detail: impl std::fmt::Display) -> Self {
        let reason = status.canonical_reason().unwrap_or("Error");
        ApiError {
            status,
            message: format!("{reason}: {detail}"),
            retry_after: None,
        }
    }

    /// A message that must be exactly `message` (strings the CLI compares for equality).
    fn exact(status: StatusCode, message: &str) -> Self {
        ApiError {
            status,
            message: message.to_owned(),
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl std::fmt::Display) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn not_found(detail: impl std::fmt::Display) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, detail)
    }

    /// 429: over a rate limit; `Retry-After` says when the next request is allowed.
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError {
            retry_after: Some(secs.max(1)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "request rate limit exceeded; retry after the time in Retry-After",
            )
        }
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "No credentials provided or are invalid.",
        )
    }

    /// A failure that is ours, not the client's: logged, and answered without detail.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        ApiError::from(EngineError::Internal(detail.to_string()))
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(d) => ApiError::new(StatusCode::NOT_FOUND, d),
            EngineError::AlreadyExists(d) => ApiError::new(StatusCode::CONFLICT, d),
            EngineError::Conflict(d) => ApiError::new(StatusCode::CONFLICT, d),
            EngineError::UpdateInProgress => ApiError::exact(
                StatusCode::CONFLICT,
                "Conflict: Another update is currently in progress.",
            ),
            EngineError::StackHasResources => ApiError::exact(
                StatusCode::BAD_REQUEST,
                "Bad Request: Stack still contains resources.",
            ),
            EngineError::Invalid(d) => ApiError::new(StatusCode::BAD_REQUEST, d),
            EngineError::Unauthenticated(d) => ApiError::new(StatusCode::UNAUTHORIZED, d),
            EngineError::Forbidden(d) => ApiError::new(StatusCode::FORBIDDEN, d),
            EngineError::TooLarge(d) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, d),
            EngineError::Unavailable(d) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, d),
            EngineError::Internal(detail) => {
                // The request span carries the request id that the client also receives.
                tracing::error!(error = %detail, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the server failed to handle the request; its log has the details",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&ErrorResponse {
            code: self.status.as_u16(),
            message: &self.message,
        })
        .unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (self.status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            let value = match self.retry_after {
                Some(s) => HeaderValue::from(s),
                None => HeaderValue::from_static(RETRY_AFTER_SECS),
            };
            headers.insert(header::RETRY_AFTER, value);
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_never_reach_the_client() {
        let detail = "UNIQUE constraint failed: stacks.org, stacks.name (/var/lib/pbackend.db)";
        let err = ApiError::from(EngineError::Internal(detail.into()));
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        for leak in ["UNIQUE", "constraint", "stacks.", "/var/lib"] {
            assert!(!err.message().contains(leak), "{}", err.message());
        }
    }

    #[test]
    fn busy_answers_carry_retry_after() {
        let resp = ApiError::from(EngineError::Unavailable("busy".into())).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers().contains_key(header::RETRY_AFTER));
    }
}
