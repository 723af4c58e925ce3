//! Webhooks, an organization's (`/console/orgs/{org}/webhooks…`, org admins) and a stack's
//! (`/{org}/{project}/{stack}/webhooks…`, stack admins): list, create (with an optional
//! signing secret, never shown again), a hook's deliveries with request and response, ping,
//! delete. One set of pages for both, over the engine's hook scope.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use crate::engine::integration::webhooks::{HookScope, HookSpec};
use crate::server::console::layout::{self, page, seg, when};
use crate::server::console::org::{org_base, org_crumbs, tabs};
use crate::server::console::stacks::{crumbs, stack_href};
use crate::server::console::{Viewer, failed};
use crate::server::extract::{FormBody, P};
use crate::server::handlers::{OrgHookPath, OrgPath, StackHookPath, StackPath};
use crate::server::state::AppState;
use crate::types::StackKey;

#[derive(Deserialize)]
pub struct HookForm {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    payload_url: String,
    #[serde(default)]
    secret: String,
}

/// Whose hooks a page shows, and where its links go.
struct Place {
    scope: HookScope,
    /// `…/webhooks`.
    base: String,
    title: String,
    crumbs: Vec<(String, String)>,
    /// The organization's admin tabs, on its pages.
    tabs: Option<Markup>,
}

fn org_place(org: &str) -> Place {
    Place {
        scope: HookScope::Org(org.to_owned()),
        base: format!("{}/webhooks", org_base(org)),
        title: org.to_owned(),
        crumbs: org_crumbs(org),
        tabs: Some(tabs(org)),
    }
}

fn stack_place(key: StackKey) -> Place {
    Place {
        base: format!("{}/webhooks", stack_href(&key)),
        title: format!("{}/{}", key.project, key.stack),
        crumbs: crumbs(&key),
        tabs: None,
        scope: HookScope::Stack(key),
    }
}

async fn list(state: AppState, viewer: Viewer, place: Place) -> Response {
    let hooks = match state
        .engine
        .list_hooks(&viewer.identity, &place.scope)
        .await
    {
        Ok(h) => h,
        Err(e) => return failed(e, Some(&viewer)),
    };
    let base = &place.base;
    let body = html! {
        @if let Some(t) = &place.tabs { (t) }
        table #hooks {
            thead { tr { th { "Name" } th { "URL" } th { "Format" } th { "Active" } } }
            tbody {
                @for h in &hooks {
                    tr {
                        td { a href=(format!("{base}/{}", seg(&h.name))) { (h.display_name) } }
                        td.mono { (h.payload_url) }
                        td { (h.format) }
                        td { (if h.active { "yes" } else { "no" }) }
                    }
                }
            }
        }
        h2 { "New webhook" }
        form.card method="post" action=(base) {
            input type="hidden" name="csrf" value=(viewer.csrf);
            p { label for="display_name" { "Name" } br; input #display_name type="text" name="display_name" required maxlength="200"; }
            p { label for="payload_url" { "Payload URL" } br; input #payload_url type="text" name="payload_url" required size="60"; }
            p { label for="secret" { "Secret (signs each delivery; optional)" } br; input #secret type="password" name="secret" autocomplete="off"; }
            input type="submit" value="Create webhook";
        }
    };
    layout::ok(page(
        &format!("{}: webhooks", place.title),
        Some(&viewer),
        &place.crumbs,
        body,
    ))
}

async fn create(state: AppState, viewer: Viewer, place: Place, f: HookForm) -> Response {
    let (project_name, stack_name) = match &place.scope {
        HookScope::Stack(k) => (Some(k.project.clone()), Some(k.stack.clone())),
        HookScope::Org(_) => (None, None),
    };
    let org = match &place.scope {
        HookScope::Stack(k) => k.org.clone(),
        HookScope::Org(o) => o.clone(),
    };
    let spec = HookSpec {
        organization_name: org,
        project_name,
        stack_name,
        display_name: f.display_name.trim().to_owned(),
        payload_url: f.payload_url.trim().to_owned(),
        active: true,
        secret: Some(f.secret).filter(|s| !s.is_empty()),
        ..Default::default()
    };
    match state
        .engine
        .create_hook(&viewer.identity, &place.scope, spec)
        .await
    {
        Ok(h) => Redirect::to(&format!("{}/{}", place.base, seg(&h.name))).into_response(),
        Err(e) => failed(e, Some(&viewer)),
    }
}

async fn show(state: AppState, viewer: Viewer, place: Place, name: &str) -> Response {
    let hook = match state
        .engine
        .get_hook(&viewer.identity, &place.scope, name)
        .await
    {
        Ok(h) => h,
        Err(e) => return failed(e, Some(&viewer)),
    };
    let deliveries = match state
        .engine
        .hook_deliveries(&viewer.identity, &place.scope, name)
        .await
    {
        Ok(d) => d,
        Err(e) => return failed(e, Some(&viewer)),
    };
    let href = format!("{}/{}", place.base, seg(&hook.name));
    let body = html! {
        @if let Some(t) = &place.tabs { (t) }
        div.card {
            div { "URL " span.mono { (hook.payload_url) } }
            div { "Format " (hook.format) " · " (if hook.active { "active" } else { "inactive" }) " · " (if hook.has_secret { "signed" } else { "unsigned" }) }
            @if !hook.filters.is_empty() { div { "Events " (hook.filters.join(", ")) } }
        }
        div.actions {
            form method="post" action=(format!("{href}/ping")) {
                input type="hidden" name="csrf" value=(viewer.csrf);
                button.primary type="submit" { "Ping" }
            }
            form method="post" action=(format!("{href}/delete")) {
                input type="hidden" name="csrf" value=(viewer.csrf);
                button.danger type="submit" { "Delete webhook" }
            }
        }
        h2 { "Deliveries" }
        @if deliveries.is_empty() { p.muted { "None yet." } }
        @for d in &deliveries {
            details.card.delivery {
                summary {
                    span class=(if (200..300).contains(&d.response_code) { "ok" } else { "bad" }) { (d.response_code) }
                    " " strong { (d.kind) } " · " (when(d.timestamp)) " · " (d.duration) " ms"
                }
                h3 { "Request" }
                pre { "POST " (d.request_url) "\n" (d.request_headers) "\n\n" (d.payload) }
                h3 { "Response" }
                pre { (d.response_headers) "\n\n" (d.response_body) }
            }
        }
    };
    layout::ok(page(
        &format!("Webhook {}", hook.display_name),
        Some(&viewer),
        &place.crumbs,
        body,
    ))
}

async fn ping(state: AppState, viewer: Viewer, place: Place, name: &str) -> Response {
    match state
        .engine
        .ping_hook(&viewer.identity, &place.scope, name)
        .await
    {
        Ok(_) => Redirect::to(&format!("{}/{}", place.base, seg(name))).into_response(),
        Err(e) => failed(e, Some(&viewer)),
    }
}

async fn delete(state: AppState, viewer: Viewer, place: Place, name: &str) -> Response {
    match state
        .engine
        .delete_hook(&viewer.identity, &place.scope, name)
        .await
    {
        Ok(()) => Redirect::to(&place.base).into_response(),
        Err(e) => failed(e, Some(&viewer)),
    }
}

/// `GET /console/orgs/{org}/webhooks`.
pub async fn org_list(State(s): State<AppState>, v: Viewer, P(p): P<OrgPath>) -> Response {
    list(s, v, org_place(&p.org)).await
}

/// `POST /console/orgs/{org}/webhooks`.
pub async fn org_create(
    State(s): State<AppState>,
    v: Viewer,
    P(p): P<OrgPath>,
    FormBody(f): FormBody<HookForm>,
) -> Response {
    create(s, v, org_place(&p.org), f).await
}

/// `GET /console/orgs/{org}/webhooks/{hook}`.
pub async fn org_show(State(s): State<AppState>, v: Viewer, P(p): P<OrgHookPath>) -> Response {
    show(s, v, org_place(&p.org), &p.hook).await
}

/// `POST /console/orgs/{org}/webhooks/{hook}/ping`.
pub async fn org_ping(State(s): State<AppState>, v: Viewer, P(p): P<OrgHookPath>) -> Response {
    ping(s, v, org_place(&p.org), &p.hook).await
}

/// `POST /console/orgs/{org}/webhooks/{hook}/delete`.
pub async fn org_delete(State(s): State<AppState>, v: Viewer, P(p): P<OrgHookPath>) -> Response {
    delete(s, v, org_place(&p.org), &p.hook).await
}

/// `GET /{org}/{project}/{stack}/webhooks`.
pub async fn stack_list(State(s): State<AppState>, v: Viewer, P(p): P<StackPath>) -> Response {
    list(s, v, stack_place(p.key())).await
}

/// `POST /{org}/{project}/{stack}/webhooks`.
pub async fn stack_create(
    State(s): State<AppState>,
    v: Viewer,
    P(p): P<StackPath>,
    FormBody(f): FormBody<HookForm>,
) -> Response {
    create(s, v, stack_place(p.key()), f).await
}

/// `GET /{org}/{project}/{stack}/webhooks/{hook}`.
pub async fn stack_show(State(s): State<AppState>, v: Viewer, P(p): P<StackHookPath>) -> Response {
    let (key, hook) = p.split();
    show(s, v, stack_place(key), &hook).await
}

/// `POST /{org}/{project}/{stack}/webhooks/{hook}/ping`.
pub async fn stack_ping(State(s): State<AppState>, v: Viewer, P(p): P<StackHookPath>) -> Response {
    let (key, hook) = p.split();
    ping(s, v, stack_place(key), &hook).await
}

/// `POST /{org}/{project}/{stack}/webhooks/{hook}/delete`.
pub async fn stack_delete(
    State(s): State<AppState>,
    v: Viewer,
    P(p): P<StackHookPath>,
) -> Response {
    let (key, hook) = p.split();
    delete(s, v, stack_place(key), &hook).await
}
