//! An organization's audit log (filters, paging, CSV export), and what its admin pages share.
//! Webhooks are in `hooks`; members, teams and tokens in `access`.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use crate::engine::blocking::run_sized;
use crate::engine::integration::audit::{AuditListing, ExportFormat, TimeSemantics, export};
use crate::server::console::layout::{self, page, seg, when};
use crate::server::console::{Viewer, failed};
use crate::server::extract::{P, Q};
use crate::server::handlers::OrgPath;
use crate::server::state::AppState;

/// Events one page of the audit log shows ...
const AUDIT_ROWS: i64 = 100;
/// ... and one CSV export carries at most (the API's export limit).
const EXPORT_ROWS: i64 = 10_000;

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
