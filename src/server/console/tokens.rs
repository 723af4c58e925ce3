//! A person's own access tokens (`/user/settings/tokens`, the page `pulumi login` points
//! to): list, create (the value is shown once), revoke.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use crate::server::console::layout::{self, opt_when, page, seg, when};
use crate::server::console::{Viewer, failed};
use crate::server::extract::{FormBody, P};
use crate::server::state::AppState;

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
pub struct TokenPath {
    token: String,
}

fn tokens_page(
    state_tokens: Vec<crate::engine::TokenView>,
    viewer: &Viewer,
    created: Option<String>,
) -> Response {
    let crumbs = vec![("Stacks".to_owned(), "/".to_owned())];
    layout::ok(page(
        "Access tokens",
        Some(viewer),
        &crumbs,
        html! {
            @if let Some(value) = &created {
                div.card role="status" {
                    p { strong { "Your new token (shown this once; copy it now):" } }
                    pre #new-token { (value) }
                }
            }
            form.card method="post" action="/user/settings/tokens" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                label for="description" { "Description " }
                input #description type="text" name="description" required maxlength="200";
                " " input type="submit" value="Create token";
            }
            table #tokens {
                thead { tr { th { "Description" } th { "Created" } th { "Last used" } th { "Expires" } th { "" } } }
                tbody {
                    @for t in &state_tokens {
                        tr {
                            td { (t.description) }
                            td { (when(t.created_at)) }
                            td { (opt_when(t.last_used_at)) }
                            td { (opt_when(t.expires_at)) }
                            td {
                                @if t.revoked_at.is_some() { span.muted { "revoked" } }
                                @else {
                                    form method="post" action=(format!("/user/settings/tokens/{}/revoke", seg(&t.id))) {
                                        input type="hidden" name="csrf" value=(viewer.csrf);
                                        button.danger type="submit" aria-label=(format!("Revoke {}", t.description)) { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// `GET /user/settings/tokens`.
pub async fn list(State(state): State<AppState>, viewer: Viewer) -> Response {
    match state.engine.my_tokens(&viewer.identity).await {
        Ok(t) => tokens_page(t, &viewer, None),
        Err(e) => failed(e, Some(&viewer)),
    }
}

/// `POST /user/settings/tokens`.
pub async fn create(
    State(state): State<AppState>,
    viewer: Viewer,
    FormBody(f): FormBody<CreateForm>,
) -> Response {
    let value = match state
        .engine
        .create_my_token(&viewer.identity, f.description.trim(), 0)
        .await
    {
        Ok((_, value)) => value,
        Err(e) => return failed(e, Some(&viewer)),
    };
    match state.engine.my_tokens(&viewer.identity).await {
        Ok(t) => tokens_page(t, &viewer, Some(value)),
        Err(e) => failed(e, Some(&viewer)),
    }
}

/// `POST /user/settings/tokens/{token}/revoke`.
pub async fn revoke(State(state): State<AppState>, viewer: Viewer, P(p): P<TokenPath>) -> Response {
    match state
        .engine
        .delete_my_token(&viewer.identity, &p.token)
        .await
    {
        Ok(()) => Redirect::to("/user/settings/tokens").into_response(),
        Err(e) => failed(e, Some(&viewer)),
    }
}
