//! The audit log routes: `…/auditlogs` (the v3.259 CLI) and `…/auditlogs/v2` (v3.277 on),
//! each with its `/export`.

use axum::Json as AxumJson;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::engine::blocking::run_sized;
use crate::engine::integration::audit::{
    AUDIT_PAGE, AuditListing, AuditPage, ExportFormat, TimeSemantics, export,
};
use crate::engine::state::deployment::gzip;
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::{P, Q};
use crate::server::handlers::OrgPath;
use crate::server::state::AppState;

/// Events one export carries at most.
const EXPORT_LIMIT: i64 = 10_000;

/// Both clients' names: v3.259 sends `eventType`/`user`, the service and v3.277
/// `eventFilter`/`userFilter`. Times are Unix seconds, sent as strings by the CLI.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuditQuery {
    continuation_token: Option<String>,
    start_time: Option<String>,
    end_time: Option<String>,
    event_filter: Option<String>,
    event_type: Option<String>,
    user_filter: Option<String>,
    user: Option<String>,
    format: Option<String>,
    page_size: Option<i64>,
}

fn unix_time(name: &str, v: Option<String>) -> Result<Option<i64>, ApiError> {
    match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|t| *t >= 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!("invalid {name} {s:?}: expected a Unix timestamp"))
            }),
    }
}

impl AuditQuery {
    fn listing(self) -> Result<(AuditListing, Option<String>, Option<i64>), ApiError> {
        let listing = AuditListing {
            start_time: unix_time("startTime", self.start_time)?,
            end_time: unix_time("endTime", self.end_time)?,
            event: self.event_filter.or(self.event_type),
            user: self.user_filter.or(self.user),
            continuation: self.continuation_token,
        };
        Ok((listing, self.format, self.page_size))
    }
}

async fn list(
    state: AppState,
    org: String,
    q: AuditQuery,
    semantics: TimeSemantics,
) -> ApiResult<AxumJson<AuditPage>> {
    let (listing, format, page_size) = q.listing()?;
    if format
        .as_deref()
        .is_some_and(|f| !f.eq_ignore_ascii_case("json"))
    {
        return Err(ApiError::bad_request(
            "this listing answers JSON only; use …/export for csv or cef",
        ));
    }
    let limit = page_size.unwrap_or(AUDIT_PAGE).clamp(1, 1000);
    let page = state
        .engine
        .audit_log(Some(&org), listing, semantics, limit)
        .await?;
    Ok(AxumJson(page))
}

async fn export_page(
    state: AppState,
    org: String,
    q: AuditQuery,
    semantics: TimeSemantics,
) -> ApiResult<Response> {
    let (listing, format, _) = q.listing()?;
    let format = ExportFormat::parse(format.as_deref())?;
    let page = state
        .engine
        .audit_log(Some(&org), listing, semantics, EXPORT_LIMIT)
        .await?;
    // As the service does, the export is always gzip-compressed; the CLI inflates it.
    let body = run_sized(page.audit_log_events.len() * 200, move || {
        let text = export(&page, format);
        Ok(gzip(text.as_bytes()))
    })
    .await?;
    let content_type = match format {
        ExportFormat::Csv => "text/csv; charset=utf-8",
        ExportFormat::Cef => "text/plain; charset=utf-8",
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    Ok(resp)
}

pub async fn list_audit_log_v1(
    State(state): State<AppState>,
    P(p): P<OrgPath>,
    Q(q): Q<AuditQuery>,
) -> ApiResult<AxumJson<AuditPage>> {
    list(state, p.org, q, TimeSemantics::V1).await
}

pub async fn list_audit_log_v2(
    State(state): State<AppState>,
    P(p): P<OrgPath>,
    Q(q): Q<AuditQuery>,
) -> ApiResult<AxumJson<AuditPage>> {
    list(state, p.org, q, TimeSemantics::V2).await
}

pub async fn export_audit_log_v1(
    State(state): State<AppState>,
    P(p): P<OrgPath>,
    Q(q): Q<AuditQuery>,
) -> ApiResult<Response> {
    export_page(state, p.org, q, TimeSemantics::V1).await
}

pub async fn export_audit_log_v2(
    State(state): State<AppState>,
    P(p): P<OrgPath>,
    Q(q): Q<AuditQuery>,
) -> ApiResult<Response> {
    export_page(state, p.org, q, TimeSemantics::V2).await
}
