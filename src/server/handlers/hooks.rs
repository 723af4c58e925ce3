//! Webhook routes: `/api/orgs/{org}/hooks…` and `/api/stacks/{org}/{project}/{stack}/hooks…`
//! (create, list, get, update, delete, ping, deliveries, redeliver).

use axum::Json as AxumJson;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::engine::integration::webhooks::{DeliveryView, HookScope, HookSpec, HookView};
use crate::server::auth::ApiIdentity;
use crate::server::error::ApiResult;
use crate::server::extract::{Json, P};
use crate::server::handlers::{OrgHookPath, OrgPath, StackHookPath, StackPath};
use crate::server::state::AppState;
use crate::types::StackKey;

/// The service's `Webhook` as clients send it (`name` empty or absent on create).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRequest {
    #[serde(default)]
    organization_name: String,
    project_name: Option<String>,
    stack_name: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    payload_url: String,
    #[serde(default)]
    active: bool,
    format: Option<String>,
    #[serde(default)]
    filters: Option<Vec<String>>,
    #[serde(default)]
    groups: Option<Vec<String>>,
    secret: Option<String>,
}

impl From<WebhookRequest> for HookSpec {
    fn from(r: WebhookRequest) -> Self {
        HookSpec {
            organization_name: r.organization_name,
            project_name: r.project_name,
            stack_name: r.stack_name,
            name: r.name,
            display_name: r.display_name,
            payload_url: r.payload_url,
            active: r.active,
            format: r.format,
            // A full replace: an absent list is an empty one (the CLI's edit drops emptied
            // lists from the body).
            filters: r.filters.unwrap_or_default(),
            groups: r.groups.unwrap_or_default(),
            secret: r.secret,
        }
    }
}

#[derive(Deserialize)]
pub struct OrgDeliveryPath {
    org: String,
    hook: String,
    event: String,
}

#[derive(Deserialize)]
pub struct StackDeliveryPath {
    org: String,
    project: String,
    stack: String,
    hook: String,
    event: String,
}

fn stack_scope(org: String, project: String, stack: String) -> HookScope {
    HookScope::Stack(StackKey {
        org,
        project,
        stack,
    })
}

// ------------------------------------------------------------------ organization hooks

pub async fn list_org_hooks(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<OrgPath>,
) -> ApiResult<AxumJson<Vec<HookView>>> {
    let scope = HookScope::Org(p.org);
    Ok(AxumJson(state.engine.list_hooks(&caller, &scope).await?))
}

pub async fn create_org_hook(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<OrgPath>,
    Json(req): Json<WebhookRequest>,
) -> ApiResult<(StatusCode, AxumJson<HookView>)> {
    let scope = HookScope::Org(p.org);
    let hook = state
        .engine
        .create_hook(&caller, &scope, req.into())
        .await?;
    Ok((StatusCode::CREATED, AxumJson(hook)))
}

pub async fn get_org_hook(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<OrgHookPath>,
) -> ApiResult<AxumJson<HookView>> {
    let scope = HookScope::Org(p.org);
    Ok(AxumJson(
        state.engine.get_hook(&caller, &scope, &p.hook).await?,
    ))
}

pub async fn update_org_hook(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<OrgHookPath>,
    Json(req): Json<WebhookRequest>,
) -> ApiResult<AxumJson<HookView>> {
    let scope = HookScope::Org(p.org);
    let hook = state
        .engine
        .update_hook(&caller, &scope, &p.hook, req.into())
        .await?;
    Ok(AxumJson(hook))
}

pub async fn delete_org_hook(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<OrgHookPath>,
) -> ApiResult<StatusCode> {
    let scope = HookScope::Org(p.org);
    state.engine.delete_hook(&caller, &scope, &p.hook).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn ping_org_hook(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<OrgHookPath>,
) -> ApiResult<AxumJson<DeliveryView>> {
    let scope = HookScope::Org(p.org);
    Ok(AxumJson(
        state.engine.ping_hook(&caller, &scope, &p.hook).await?,
    ))
}

pub async fn org_hook_deliveries(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<OrgHookPath>,
) -> ApiResult<AxumJson<Vec<DeliveryView>>> {
    let scope = HookScope::Org(p.org);
    Ok(AxumJson(
        state
            .engine
            .hook_deliveries(&caller, &scope, &p.hook)
            .await?,
    ))
}

pub async fn redeliver_org_hook(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<OrgDeliveryPath>,
) -> ApiResult<AxumJson<DeliveryView>> {
    let scope = HookScope::Org(p.org);
    Ok(AxumJson(
        state
            .engine
            .redeliver(&caller, &scope, &p.hook, &p.event)
            .await?,
    ))
}

// ------------------------------------------------------------------ stack hooks

pub async fn list_stack_hooks(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
) -> ApiResult<AxumJson<Vec<HookView>>> {
    let scope = stack_scope(p.org, p.project, p.stack);
    Ok(AxumJson(state.engine.list_hooks(&caller, &scope).await?))
}

pub async fn create_stack_hook(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
    Json(req): Json<WebhookRequest>,
) -> ApiResult<(StatusCode, AxumJson<HookView>)> {
    let scope = stack_scope(p.org, p.project, p.stack);
    let hook = state
        .engine
        .create_hook(&caller, &scope, req.into())
        .await?;
    Ok((StatusCode::CREATED, AxumJson(hook)))
}

pub async fn get_stack_hook(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackHookPath>,
) -> ApiResult<AxumJson<HookView>> {
    let (key, hook) = p.split();
    let scope = HookScope::Stack(key);
    Ok(AxumJson(
        state.engine.get_hook(&caller, &scope, &hook).await?,
    ))
}

pub async fn update_stack_hook(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackHookPath>,
    Json(req): Json<WebhookRequest>,
) -> ApiResult<AxumJson<HookView>> {
    let (key, hook) = p.split();
    let scope = HookScope::Stack(key);
    Ok(AxumJson(
        state
            .engine
            .update_hook(&caller, &scope, &hook, req.into())
            .await?,
    ))
}

pub async fn delete_stack_hook(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackHookPath>,
) -> ApiResult<StatusCode> {
    let (key, hook) = p.split();
    let scope = HookScope::Stack(key);
    state.engine.delete_hook(&caller, &scope, &hook).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn ping_stack_hook(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackHookPath>,
) -> ApiResult<AxumJson<DeliveryView>> {
    let (key, hook) = p.split();
    let scope = HookScope::Stack(key);
    Ok(AxumJson(
        state.engine.ping_hook(&caller, &scope, &hook).await?,
    ))
}

pub async fn stack_hook_deliveries(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackHookPath>,
) -> ApiResult<AxumJson<Vec<DeliveryView>>> {
    let (key, hook) = p.split();
    let scope = HookScope::Stack(key);
    Ok(AxumJson(
        state.engine.hook_deliveries(&caller, &scope, &hook).await?,
    ))
}

pub async fn redeliver_stack_hook(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackDeliveryPath>,
) -> ApiResult<AxumJson<DeliveryView>> {
    let scope = stack_scope(p.org, p.project, p.stack);
    Ok(AxumJson(
        state
            .engine
            .redeliver(&caller, &scope, &p.hook, &p.event)
            .await?,
    ))
}
