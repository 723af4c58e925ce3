//! An organization's pages for its admins: the audit log (filters, CSV export) and webhooks
//! (create, ping, deliveries with request and response, delete). Members, teams and tokens
//! are in `access`.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use crate::engine::blocking::run_sized;
use crate::engine::integration::audit::{AuditListing, ExportFormat, TimeSemantics, export};
use crate::engine::integration::webhooks::{HookScope, HookSpec};
use crate::server::console::layout::{self, page, seg, when};
use crate::server::console::{Viewer, failed};
use crate::server::extract::{FormBody, P, Q};
use crate::server::state::AppState;

/// Events one page of the audit log shows ...
const AUDIT_ROWS: i64 = 100;
/// ... and one CSV export carries at most (the API's export limit).
const EXPORT_ROWS: i64 = 10_000;

#[derive(Deserialize)]
pub struct OrgPath {
    org: String,
}

#[derive(Deserialize)]
pub struct HookPath {
    org: String,
    hook: String,
}

#[derive(Deserialize, Default)]
pub struct AuditFilters {
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    before: Option<String>,
}

impl AuditFilters {
    fn listing(&self) -> AuditListing {
        let f = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        AuditListing {
            start_time: None,
            end_time: None,
            event: f(&self.event),
            user: f(&self.user),
            continuation: f(&self.before),
        }
    }

    fn query(&self) -> String {
        let mut pairs = Vec::new();
        if let Some(e) = self.event.as_deref().filter(|s| !s.is_empty()) {
            pairs.push(("event", e));
        }
        if let Some(u) = self.user.as_deref().filter(|s| !s.is_empty()) {
            pairs.push(("user", u));
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

pub fn org_base(org: &str) -> String {
    format!("/console/orgs/{}", seg(org))
}

pub fn org_crumbs(org: &str) -> Vec<(String, String)> {
    vec![
        ("Stacks".into(), "/".into()),
        (org.to_owned(), format!("/{}", seg(org))),
    ]
}

/// The tabs of an organization's admin pages.
pub fn tabs(org: &str) -> Markup {
    let base = org_base(org);
    html! {
        nav aria-label="Organization" {
            a href=(format!("{base}/audit")) { "Audit log" } " · "
            a href=(format!("{base}/webhooks")) { "Webhooks" } " · "
            a href=(format!("{base}/members")) { "Members and teams" } " · "
            a href=(format!("{base}/tokens")) { "Tokens" }
        }
    }
}

/// `GET /console/orgs/{org}/audit`.
pub async fn audit(
    State(state): State<AppState>,
    viewer: Viewer,
    P(p): P<OrgPath>,
    Q(f): Q<AuditFilters>,
) -> Response {
    let page_ = match state
        .engine
        .audit_log(Some(&p.org), f.listing(), TimeSemantics::V2, AUDIT_ROWS)
        .await
    {
        Ok(pg) => pg,
        Err(e) => return failed(e, Some(&viewer)),
    };
    let base = org_base(&p.org);
    let q = f.query();
    let body = html! {
        (tabs(&p.org))
        form role="search" method="get" {
            label { "Event " input type="text" name="event" value=(f.event.clone().unwrap_or_default()) placeholder="e.g. stack-deleted"; }
            " " label { "User " input type="text" name="user" value=(f.user.clone().unwrap_or_default()); }
            " " input type="submit" value="Filter";
            " " a href=(format!("{base}/audit.csv?{q}")) download { "Export CSV" }
        }
        table #audit {
            thead { tr { th { "When" } th { "Event" } th { "Description" } th { "User" } th { "Source" } th { "Token" } } }
            tbody {
                @for e in &page_.audit_log_events {
                    tr class=(if e.auth_failure { "bad" } else { "" }) {
                        td { (when(e.timestamp)) }
                        td.mono { (e.event) }
                        td { (e.description) }
                        td { (e.user.github_login) }
                        td.mono { (e.source_ip) }
                        td { (e.token_name.clone().unwrap_or_default()) }
                    }
                }
            }
        }
        @if let Some(next) = &page_.continuation_token {
            p { a href=(format!("{base}/audit?{q}&before={}", seg(next))) { "Older events" } }
        }
    };
    layout::ok(page(
        &format!("{}: audit log", p.org),
        Some(&viewer),
        &org_crumbs(&p.org),
        body,
    ))
}

/// `GET /console/orgs/{org}/audit.csv`: the filtered log as the API's CSV export.
pub async fn audit_csv(
    State(state): State<AppState>,
    viewer: Viewer,
    P(p): P<OrgPath>,
    Q(f): Q<AuditFilters>,
) -> Response {
    let events = match state
        .engine
        .audit_log(Some(&p.org), f.listing(), TimeSemantics::V2, EXPORT_ROWS)
        .await
    {
        Ok(pg) => pg,
        Err(e) => return failed(e, Some(&viewer)),
    };
    let size = events.audit_log_events.len() * 200;
    let text = match run_sized(size, move || Ok(export(&events, ExportFormat::Csv))).await {
        Ok(t) => t,
        Err(e) => return failed(e, Some(&viewer)),
    };
    let mut resp = text.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    let disposition = format!("attachment; filename=\"{}-audit.csv\"", seg(&p.org));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

#[derive(Deserialize)]
pub struct HookForm {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    payload_url: String,
    #[serde(default)]
    secret: String,
}

/// `GET /console/orgs/{org}/webhooks`.
pub async fn webhooks(State(state): State<AppState>, viewer: Viewer, P(p): P<OrgPath>) -> Response {
    let scope = HookScope::Org(p.org.clone());
    let hooks = match state.engine.list_hooks(&viewer.identity, &scope).await {
        Ok(h) => h,
        Err(e) => return failed(e, Some(&viewer)),
    };
    let base = org_base(&p.org);
    let body = html! {
        (tabs(&p.org))
        table #hooks {
            thead { tr { th { "Name" } th { "URL" } th { "Format" } th { "Active" } } }
            tbody {
                @for h in &hooks {
                    tr {
                        td { a href=(format!("{base}/webhooks/{}", seg(&h.name))) { (h.display_name) } }
                        td.mono { (h.payload_url) }
                        td { (h.format) }
                        td { (if h.active { "yes" } else { "no" }) }
                    }
                }
            }
        }
        h2 { "New webhook" }
        form.card method="post" action=(format!("{base}/webhooks")) {
            input type="hidden" name="csrf" value=(viewer.csrf);
            p { label for="display_name" { "Name" } br; input #display_name type="text" name="display_name" required maxlength="200"; }
            p { label for="payload_url" { "Payload URL" } br; input #payload_url type="text" name="payload_url" required size="60"; }
            p { label for="secret" { "Secret (signs each delivery; optional)" } br; input #secret type="password" name="secret" autocomplete="off"; }
            input type="submit" value="Create webhook";
        }
    };
    layout::ok(page(
        &format!("{}: webhooks", p.org),
        Some(&viewer),
        &org_crumbs(&p.org),
        body,
    ))
}

/// `POST /console/orgs/{org}/webhooks`.
pub async fn create_webhook(
    State(state): State<AppState>,
    viewer: Viewer,
    P(p): P<OrgPath>,
    FormBody(f): FormBody<HookForm>,
) -> Response {
    let spec = HookSpec {
        organization_name: p.org.clone(),
        display_name: f.display_name.trim().to_owned(),
        payload_url: f.payload_url.trim().to_owned(),
        active: true,
        secret: Some(f.secret).filter(|s| !s.is_empty()),
        ..Default::default()
    };
    let scope = HookScope::Org(p.org.clone());
    match state
        .engine
        .create_hook(&viewer.identity, &scope, spec)
        .await
    {
        Ok(h) => {
            Redirect::to(&format!("{}/webhooks/{}", org_base(&p.org), seg(&h.name))).into_response()
        }
        Err(e) => failed(e, Some(&viewer)),
    }
}

/// `GET /console/orgs/{org}/webhooks/{hook}`: the hook and its deliveries.
pub async fn webhook(State(state): State<AppState>, viewer: Viewer, P(p): P<HookPath>) -> Response {
    let scope = HookScope::Org(p.org.clone());
    let hook = match state
        .engine
        .get_hook(&viewer.identity, &scope, &p.hook)
        .await
    {
        Ok(h) => h,
        Err(e) => return failed(e, Some(&viewer)),
    };
    let deliveries = match state
        .engine
        .hook_deliveries(&viewer.identity, &scope, &p.hook)
        .await
    {
        Ok(d) => d,
        Err(e) => return failed(e, Some(&viewer)),
    };
    let href = format!("{}/webhooks/{}", org_base(&p.org), seg(&hook.name));
    let body = html! {
        (tabs(&p.org))
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
        &org_crumbs(&p.org),
        body,
    ))
}

/// `POST /console/orgs/{org}/webhooks/{hook}/ping`: delivers a ping now.
pub async fn ping_webhook(
    State(state): State<AppState>,
    viewer: Viewer,
    P(p): P<HookPath>,
) -> Response {
    let scope = HookScope::Org(p.org.clone());
    match state
        .engine
        .ping_hook(&viewer.identity, &scope, &p.hook)
        .await
    {
        Ok(_) => {
            Redirect::to(&format!("{}/webhooks/{}", org_base(&p.org), seg(&p.hook))).into_response()
        }
        Err(e) => failed(e, Some(&viewer)),
    }
}

/// `POST /console/orgs/{org}/webhooks/{hook}/delete`.
pub async fn delete_webhook(
    State(state): State<AppState>,
    viewer: Viewer,
    P(p): P<HookPath>,
) -> Response {
    let scope = HookScope::Org(p.org.clone());
    match state
        .engine
        .delete_hook(&viewer.identity, &scope, &p.hook)
        .await
    {
        Ok(()) => Redirect::to(&format!("{}/webhooks", org_base(&p.org))).into_response(),
        Err(e) => failed(e, Some(&viewer)),
    }
}
