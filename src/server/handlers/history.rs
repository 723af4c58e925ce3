//! History, export and import routes.

use axum::Json as AxumJson;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::engine::Export;
use crate::engine::blocking::run_sized;
use crate::engine::state::deployment::gunzip_stored;
use crate::server::auth::ApiIdentity;
use crate::server::error::ApiResult;
use crate::server::extract::{P, Q, StateBody};
use crate::server::handlers::{StackPath, VersionPath};
use crate::server::state::AppState;
use crate::server::wire::*;

pub async fn history(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
    Q(q): Q<HistoryQuery>,
) -> ApiResult<AxumJson<GetHistoryResponse>> {
    let rows = state
        .engine
        .history(
            &caller,
            &p.key(),
            q.page.unwrap_or(1),
            q.page_size.unwrap_or(0),
        )
        .await?;
    Ok(AxumJson(GetHistoryResponse {
        updates: rows.iter().map(UpdateInfo::from).collect(),
    }))
}

pub async fn latest_update(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
) -> ApiResult<AxumJson<UpdateDetail>> {
    let row = state.engine.latest_update(&caller, &p.key()).await?;
    Ok(AxumJson(UpdateDetail {
        info: UpdateInfo::from(&row),
        update_id: row.id.clone(),
        version: row.version,
    }))
}

pub async fn update_by_version(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<VersionPath>,
) -> ApiResult<AxumJson<UpdateDetail>> {
    let (key, version) = p.split()?;
    let row = state
        .engine
        .update_by_version(&caller, &key, version)
        .await?;
    Ok(AxumJson(UpdateDetail {
        info: UpdateInfo::from(&row),
        update_id: row.id.clone(),
        version: row.version,
    }))
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

/// Sends a stored deployment: as stored (gzip) when the client takes gzip, else inflated.
async fn send_deployment(export: Export, headers: &HeaderMap) -> ApiResult<Response> {
    let json = HeaderValue::from_static("application/json");
    match (export.gz, export.plain) {
        (Some(gz), _) if accepts_gzip(headers) => Ok((
            [
                (header::CONTENT_TYPE, json),
                (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
            ],
            gz,
        )
            .into_response()),
        (Some(gz), _) => {
            let body = run_sized(gz.len(), move || gunzip_stored(&gz)).await?;
            Ok(([(header::CONTENT_TYPE, json)], body).into_response())
        }
        (None, plain) => {
            Ok(([(header::CONTENT_TYPE, json)], plain.unwrap_or(b"{}")).into_response())
        }
    }
}

/// The bytes of a deployment, inflated (for embedding in another answer).
pub async fn deployment_bytes(export: Export) -> ApiResult<Vec<u8>> {
    match (export.gz, export.plain) {
        (Some(gz), _) => Ok(run_sized(gz.len(), move || gunzip_stored(&gz)).await?),
        (None, plain) => Ok(plain.unwrap_or(b"{}").to_vec()),
    }
}

pub async fn export(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let export = state.engine.export(&caller, &p.key(), None).await?;
    send_deployment(export, &headers).await
}

pub async fn export_version(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<VersionPath>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (key, version) = p.split()?;
    let export = state.engine.export(&caller, &key, Some(version)).await?;
    send_deployment(export, &headers).await
}

pub async fn import(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
    StateBody(body): StateBody,
) -> ApiResult<AxumJson<ImportStackResponse>> {
    let id = state
        .engine
        .import(&caller, &p.key(), body.json, body.gz)
        .await?;
    Ok(AxumJson(ImportStackResponse { update_id: id }))
}
