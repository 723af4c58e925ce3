//! Signing in and out. A person signs in at the identity provider (`--auth-mode oidc`, the
//! flow `pulumi login` uses) or pastes an API token (a personal one from `pulumi login`'s
//! credentials, or one an admin made); the engine checks the token as it checks an API call,
//! and the session cookie holds it from then on.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use crate::engine::access::login::local_path;
use crate::server::console::layout::{self, page};
use crate::server::console::{MaybeViewer, Viewer, failed, session};
use crate::server::extract::{FormBody, Q};
use crate::server::state::AppState;

#[derive(Deserialize, Default)]
pub struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
}

struct LoginPage<'a> {
    next: &'a str,
    error: Option<&'a str>,
    viewer: Option<&'a Viewer>,
    /// The identity provider is configured.
    sso: bool,
}

fn login_page(status: StatusCode, p: LoginPage<'_>) -> Response {
    layout::html_response(
        status,
        page(
            "Sign in",
            p.viewer,
            &[],
            html! {
                @if let Some(e) = p.error { p.bad role="alert" { (e) } }
                @if p.sso {
                    p { a.sso href=(format!("/login/sso?next={}", layout::seg(p.next))) { "Sign in with your identity provider" } }
                    p.muted { "or with an access token:" }
                }
                form.card method="post" action="/login" {
                    input type="hidden" name="next" value=(p.next);
                    @if let Some(v) = p.viewer { input type="hidden" name="csrf" value=(v.csrf); }
                    p {
                        label for="token" { "Access token" } br;
                        input #token type="password" name="token" autocomplete="off" size="60" required autofocus;
                    }
                    p.muted {
                        "The token the CLI uses (" code { "pulumi login" } " keeps it in "
                        code { "~/.pulumi/credentials.json" } "), or one made under Tokens. "
                        "The session lasts twelve hours, or until the token is revoked."
                    }
                    input type="submit" value="Sign in";
                }
            },
        ),
    )
}

/// `GET /login`.
pub async fn form(
    State(state): State<AppState>,
    MaybeViewer(viewer): MaybeViewer,
    Q(q): Q<NextQuery>,
) -> Response {
    let next = local_path(q.next.as_deref());
    login_page(
        StatusCode::OK,
        LoginPage {
            next: &next,
            error: None,
            viewer: viewer.as_ref(),
            sso: state.engine.browser_login_enabled(),
        },
    )
}

/// `GET /login/sso`: signing in at the identity provider, as `pulumi login` does; the
/// provider sends the browser back to `/api/auth/callback`, which starts the session.
pub async fn sso(
    State(state): State<AppState>,
    MaybeViewer(viewer): MaybeViewer,
    Q(q): Q<NextQuery>,
) -> Response {
    match state
        .engine
        .start_console_login(&local_path(q.next.as_deref()))
        .await
    {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => failed(e, viewer.as_ref()),
    }
}

/// `POST /login`.
pub async fn submit(
    State(state): State<AppState>,
    MaybeViewer(viewer): MaybeViewer,
    FormBody(f): FormBody<LoginForm>,
) -> Response {
    let next = local_path(f.next.as_deref());
    let token = f.token.trim();
    let refused = |msg: &str| {
        login_page(
            StatusCode::UNAUTHORIZED,
            LoginPage {
                next: &next,
                error: Some(msg),
                viewer: viewer.as_ref(),
                sso: state.engine.browser_login_enabled(),
            },
        )
    };
    if !session::plausible(token) {
        return refused("That is not an access token.");
    }
    match state.engine.authenticate(token).await {
        Ok(identity) => {
            tracing::info!(user = %identity.user, "console sign-in");
            session::start(token, &next, state.secure_cookies)
        }
        Err(e) => {
            state
                .engine
                .note_refusal(None, None, None, format!("console sign-in refused: {e}"))
                .await;
            refused("The token was not accepted: it is unknown, expired or revoked.")
        }
    }
}

/// `POST /logout`.
pub async fn logout(State(state): State<AppState>, _viewer: Viewer) -> Response {
    let mut resp = Redirect::to("/login").into_response();
    if let Ok(v) = session::clear_cookie(state.secure_cookies).parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}
