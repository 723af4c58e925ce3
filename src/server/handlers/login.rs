//! Logging in: the OAuth token endpoint (token exchange and refresh, form-encoded as the CLI
//! sends them) and the browser login the CLI opens (`/cli-login` → the identity provider →
//! `/api/auth/callback` → the CLI's local port → `/welcome/cli`).

use axum::Json as AxumJson;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::engine::EngineError;
use crate::engine::access::login::{EXCHANGE_GRANT, ExchangeRequest, GrantError, LoginEnd};
use crate::server::error::ApiError;
use crate::server::extract::{FormBody, Q};
use crate::server::state::AppState;
use crate::server::wire::access::*;

fn grant_error(e: GrantError) -> Response {
    let status = match e.error {
        "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        AxumJson(OAuthError {
            error: e.error,
            error_description: e.description,
        }),
    )
        .into_response()
}

/// `POST /api/oauth/token`.
pub async fn oauth_token(
    State(state): State<AppState>,
    FormBody(req): FormBody<OAuthTokenRequest>,
) -> Response {
    let outcome = match req.grant_type.as_str() {
        EXCHANGE_GRANT => {
            let expiration = match req.expiration.as_deref().filter(|e| !e.is_empty()) {
                None => None,
                Some(e) => match e.parse::<i64>() {
                    Ok(v) if v > 0 => Some(v),
                    _ => {
                        return grant_error(GrantError {
                            error: "invalid_request",
                            description: format!("expiration must be seconds, got {e:?}"),
                        });
                    }
                },
            };
            state
                .engine
                .exchange(ExchangeRequest {
                    subject_token: req.subject_token,
                    subject_token_type: req.subject_token_type,
                    requested_token_type: req.requested_token_type,
                    audience: req.audience,
                    scope: req.scope,
                    expiration,
                })
                .await
        }
        "refresh_token" => state.engine.refresh(&req.refresh_token).await,
        other => Err(GrantError {
            error: "unsupported_grant_type",
            description: format!("grant_type {other:?} is not supported"),
        }),
    };
    match outcome {
        Ok(g) => (
            [(header::CACHE_CONTROL, "no-store")],
            AxumJson(OAuthTokenResponse {
                access_token: g.access_token,
                issued_token_type: g.issued_token_type,
                token_type: "token",
                expires_in: g.expires_in,
                scope: g.scope,
                refresh_token: g.refresh_token,
            }),
        )
            .into_response(),
        Err(e) => grant_error(e),
    }
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    (
        status,
        Html(format!(
            "<!doctype html><meta charset=utf-8><title>{t} · pbackend</title>\
             <body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\">\
             <h1>{t}</h1><p>{x}</p></body>",
            t = esc(title),
            x = esc(text)
        )),
    )
        .into_response()
}

fn login_failed(e: EngineError) -> Response {
    let err = ApiError::from(e);
    page(err.status(), "Login failed", err.message())
}

/// `GET /cli-login`: where `pulumi login` sends the browser.
pub async fn cli_login(State(state): State<AppState>, Q(q): Q<CliLoginQuery>) -> Response {
    match state
        .engine
        .start_browser_login(q.port, &q.nonce, &q.description)
        .await
    {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => login_failed(e),
    }
}

/// `GET /api/auth/callback`: the identity provider's redirect back.
pub async fn callback(State(state): State<AppState>, Q(q): Q<CallbackQuery>) -> Response {
    if let Some(err) = q.error {
        let detail = q.error_description.unwrap_or_default();
        return page(
            StatusCode::FORBIDDEN,
            "Login failed",
            &format!("the identity provider answered {err}: {detail}"),
        );
    }
    let (Some(code), Some(st)) = (q.code, q.state) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Login failed",
            "the identity provider sent no code",
        );
    };
    match state.engine.finish_browser_login(&code, &st).await {
        Ok(LoginEnd::Cli(url)) => Redirect::to(&url).into_response(),
        Ok(LoginEnd::Console { token, next }) => {
            crate::server::console::session::start_after_provider(
                &token,
                &next,
                state.secure_cookies,
            )
        }
        Err(e) => login_failed(e),
    }
}

/// `GET /welcome/cli`: the page the CLI sends the browser to once it has its token.
pub async fn welcome() -> Response {
    page(
        StatusCode::OK,
        "You are logged in",
        "The Pulumi CLI has its access token. You can close this window and return to your \
         terminal.",
    )
}
