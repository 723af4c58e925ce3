//! What an operator does from a stack's page: roll back to a kept version, unlock (cancel
//! the update holding the stack), delete. Each asks for confirmation on a page of its own
//! (no script needed), then calls the engine, which checks the permission again and writes
//! the audit event with the change.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use crate::server::console::layout::{self, page, seg};
use crate::server::console::stacks::{crumbs, stack_href};
use crate::server::console::{Viewer, failed};
use crate::server::extract::{FormBody, P};
use crate::server::handlers::StackPath;
use crate::server::state::AppState;
use crate::types::StackKey;

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    confirm: Option<String>,
}

impl ActionForm {
    fn confirmed(&self) -> bool {
        self.confirm.as_deref() == Some("yes")
    }
}

fn confirm_page(
    viewer: &Viewer,
    key: &StackKey,
    action: &str,
    question: String,
    button: &str,
    version: Option<i64>,
) -> Response {
    let href = format!("{}/{action}", stack_href(key));
    layout::ok(page(
        "Confirm",
        Some(viewer),
        &crumbs(key),
        html! {
            div.card {
                p { (question) }
                form method="post" action=(href) {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    input type="hidden" name="confirm" value="yes";
                    @if let Some(v) = version { input type="hidden" name="version" value=(v); }
                    button.danger type="submit" { (button) }
                    " " a href=(stack_href(key)) { "Cancel" }
                }
            }
        },
    ))
}

/// `POST …/rollback`: the version's state becomes the newest version.
pub async fn rollback(
    State(state): State<AppState>,
    viewer: Viewer,
    P(path): P<StackPath>,
    FormBody(f): FormBody<ActionForm>,
) -> Response {
    let key = path.key();
    let Some(version) = f
        .version
        .as_deref()
        .and_then(|v| v.trim().parse::<i64>().ok())
    else {
        return layout::error_page(
            axum::http::StatusCode::BAD_REQUEST,
            "Name the version to roll back to.",
            Some(&viewer),
        );
    };
    if !f.confirmed() {
        return confirm_page(
            &viewer,
            &key,
            "rollback",
            format!(
                "Roll {key} back to version {version}? Its state becomes the stack's newest \
                 version; the versions in between stay in the history."
            ),
            &format!("Roll back to version {version}"),
            Some(version),
        );
    }
    match state.engine.rollback(&viewer.identity, &key, version).await {
        Ok(_) => Redirect::to(&stack_href(&key)).into_response(),
        Err(e) => failed(e, Some(&viewer)),
    }
}

/// `POST …/unlock`: cancels the update holding the stack, keeping the state it reached.
pub async fn unlock(
    State(state): State<AppState>,
    viewer: Viewer,
    P(path): P<StackPath>,
    FormBody(f): FormBody<ActionForm>,
) -> Response {
    let key = path.key();
    if !f.confirmed() {
        return confirm_page(
            &viewer,
            &key,
            "unlock",
            format!(
                "Cancel the update holding {key}? The state it reached is kept; the CLI \
                 running it will fail."
            ),
            "Cancel the update",
            None,
        );
    }
    let running = match state.engine.get_stack(&viewer.identity, &key).await {
        Ok((_, running)) => running,
        Err(e) => return failed(e, Some(&viewer)),
    };
    if let Some(u) = running
        && let Err(e) = state
            .engine
            .cancel_update(&viewer.identity, &key, &u.id)
            .await
    {
        return failed(e, Some(&viewer));
    }
    Redirect::to(&stack_href(&key)).into_response()
}

/// `POST …/delete`: deletes the stack; refused while it has resources, as `pulumi stack rm`
/// without `--force` is.
pub async fn delete(
    State(state): State<AppState>,
    viewer: Viewer,
    P(path): P<StackPath>,
    FormBody(f): FormBody<ActionForm>,
) -> Response {
    let key = path.key();
    if !f.confirmed() {
        return confirm_page(
            &viewer,
            &key,
            "delete",
            format!("Delete {key} and its whole history? This cannot be undone."),
            "Delete the stack",
            None,
        );
    }
    match state
        .engine
        .delete_stack(&viewer.identity, &key, false)
        .await
    {
        Ok(()) => Redirect::to(&format!("/{}", seg(&key.org))).into_response(),
        Err(e) => failed(e, Some(&viewer)),
    }
}
