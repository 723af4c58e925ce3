//! Stack routes.

use axum::Json as AxumJson;
use axum::extract::State;
use axum::http::StatusCode;

use crate::engine::{CreateStack, StackListQuery};
use axum::extract::Extension;

use crate::server::auth::ApiIdentity;
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::{Json, P, Q, StateBody};
use crate::server::handlers::{OrgPath, StackPath};
use crate::server::state::AppState;
use crate::server::version::ApiVersion;
use crate::server::wire::*;

#[derive(serde::Deserialize)]
pub struct ProjectPath {
    org: String,
    project: String,
}

/// `HEAD /api/stacks/{org}/{project}`: 200 when the project has stacks, 404 otherwise.
pub async fn project_exists(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<ProjectPath>,
) -> ApiResult<StatusCode> {
    let exists = state
        .engine
        .project_exists(&caller, &p.org, &p.project)
        .await?;
    Ok(if exists {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    })
}

pub async fn create_stack(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<ProjectPath>,
    StateBody(body): StateBody,
) -> ApiResult<AxumJson<CreateStackResponse>> {
    let req: CreateStackRequest = body.parse().await?;
    state
        .engine
        .create_stack(
            &caller,
            &p.org,
            &p.project,
            CreateStack {
                name: req.stack_name,
                tags: req.tags.unwrap_or_default(),
                teams: req.teams.unwrap_or_default(),
                initial_state: req.state.map(|s| s.get().as_bytes().to_vec()),
            },
        )
        .await?;
    Ok(AxumJson(CreateStackResponse {}))
}

pub async fn get_stack(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
) -> ApiResult<AxumJson<Stack>> {
    let (stack, running) = state.engine.get_stack(&caller, &p.key()).await?;
    Ok(AxumJson(Stack::from_views(&stack, running.as_ref())))
}

pub async fn delete_stack(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
    Q(q): Q<DeleteStackQuery>,
) -> ApiResult<StatusCode> {
    let force = matches!(q.force.as_deref(), Some("true") | Some("1"));
    state.engine.delete_stack(&caller, &p.key(), force).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/stacks/{org}`: one organization's stacks, as `GET /api/user/stacks` pages them.
pub async fn list_org_stacks(
    state: State<AppState>,
    caller: ApiIdentity,
    version: Extension<ApiVersion>,
    P(p): P<OrgPath>,
    Q(mut q): Q<ListStacksQuery>,
) -> ApiResult<AxumJson<ListStacksResponse>> {
    q.organization = Some(p.org);
    list_stacks(state, caller, version, Q(q)).await
}

/// `GET …/{stack}/config`: the service-managed (ESC) configuration of a stack. This server
/// keeps none, so as the service does for such stacks it answers 404 (after the stack
/// lookup, so a missing stack is named as such).
pub async fn stack_config(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
) -> ApiResult<StatusCode> {
    let key = p.key();
    state.engine.get_stack(&caller, &key).await?;
    Err(ApiError::not_found(format!(
        "stack '{key}' has no service-managed configuration"
    )))
}

pub async fn list_stacks(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    Extension(ApiVersion(version)): Extension<ApiVersion>,
    Q(q): Q<ListStacksQuery>,
) -> ApiResult<AxumJson<ListStacksResponse>> {
    let query = StackListQuery {
        org: q.organization.filter(|s| !s.is_empty()),
        project: q.project.filter(|s| !s.is_empty()),
        tag_name: q.tag_name.filter(|s| !s.is_empty()),
        tag_value: q.tag_value,
        continuation: q.continuation_token.filter(|s| !s.is_empty()),
    };
    // Clients before API version 8 read one page only.
    let list = if version < 8 {
        state.engine.list_all_stacks(&caller, query).await?
    } else {
        state.engine.list_stacks(&caller, query).await?
    };
    Ok(AxumJson(ListStacksResponse {
        stacks: list.stacks.iter().map(StackSummary::from).collect(),
        continuation_token: list.continuation,
    }))
}

pub async fn update_tags(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
    Json(tags): Json<std::collections::BTreeMap<String, String>>,
) -> ApiResult<StatusCode> {
    state.engine.set_stack_tags(&caller, &p.key(), tags).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn rename_stack(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
    Json(req): Json<StackRenameRequest>,
) -> ApiResult<StatusCode> {
    state
        .engine
        .rename_stack(&caller, &p.key(), &req.new_project, &req.new_name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
