//! Update lifecycle routes: create, start, status, lease renewal, checkpoints, events,
//! complete, cancel.

use axum::Json as AxumJson;
use axum::extract::State;
use axum::http::StatusCode;

use crate::engine::{CreateUpdate, EventBody, StartUpdateOptions, UpdateKind};
use crate::server::auth::{ApiCaller, LeaseHeader, UpdateLease};
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::{
    EventsBody, JournalBody, Json, OptionalJson, P, Q, RawBody, StateBody,
};
use crate::server::handlers::{StackPath, UpdatePath};
use crate::server::state::AppState;
use crate::server::wire::*;

#[derive(serde::Deserialize)]
pub struct CreatePath {
    org: String,
    project: String,
    stack: String,
    kind: String,
}

/// `POST /api/stacks/{o}/{p}/{s}/{update|preview|refresh|destroy}`.
pub async fn create_update(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    P(p): P<CreatePath>,
    Json(req): Json<UpdateProgramRequest>,
) -> ApiResult<AxumJson<UpdateProgramResponse>> {
    let kind = UpdateKind::parse(&p.kind)
        .ok_or_else(|| ApiError::not_found(format!("no route for '{}'", p.kind)))?;
    let key = StackPath {
        org: p.org,
        project: p.project,
        stack: p.stack,
    }
    .key();
    let metadata = req.metadata.unwrap_or_default();
    let environment = serde_json::to_string(&metadata.environment.unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let config =
        serde_json::to_string(&req.config.unwrap_or_default()).map_err(ApiError::bad_request)?;
    let id = state
        .engine
        .create_update(
            &caller,
            &key,
            CreateUpdate {
                kind,
                dry_run: req.options.unwrap_or_default().dry_run,
                message: metadata.message,
                environment,
                config,
            },
        )
        .await?;
    Ok(AxumJson(UpdateProgramResponse {
        update_id: id,
        ai_settings: AiSettings {
            copilot_is_enabled: false,
        },
    }))
}

pub async fn start_update(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    P(p): P<UpdatePath>,
    OptionalJson(req): OptionalJson<StartUpdateRequest>,
) -> ApiResult<AxumJson<StartUpdateResponse>> {
    let (key, id) = p.split()?;
    let started = state
        .engine
        .start_update(
            &caller,
            &key,
            &id,
            StartUpdateOptions {
                tags: req.tags,
                journal_version: req.journal_version,
            },
        )
        .await?;
    Ok(AxumJson(StartUpdateResponse {
        version: started.version,
        token: started.token,
        token_expiration: started.token_expiration,
        journal_version: (started.journal_version > 0).then_some(started.journal_version),
    }))
}

pub async fn update_status(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    P(p): P<UpdatePath>,
) -> ApiResult<AxumJson<UpdateResults>> {
    let (key, id) = p.split()?;
    let view = state.engine.update_status(&caller, &key, &id).await?;
    Ok(AxumJson(UpdateResults {
        status: view.status,
        events: vec![],
        continuation_token: view.continuation,
    }))
}

pub async fn renew_lease(
    State(state): State<AppState>,
    UpdateLease(lease): UpdateLease,
    token: LeaseHeader,
    OptionalJson(req): OptionalJson<RenewLeaseRequest>,
) -> ApiResult<AxumJson<RenewLeaseResponse>> {
    let expires = state.engine.renew_lease(&lease, req.duration).await?;
    // The token stays the same, so a retried renewal whose answer was lost cannot strand
    // the CLI with a token we no longer accept.
    Ok(AxumJson(RenewLeaseResponse {
        token: token.0,
        token_expiration: expires,
    }))
}

pub async fn complete_update(
    State(state): State<AppState>,
    UpdateLease(lease): UpdateLease,
    Json(req): Json<CompleteUpdateRequest>,
) -> ApiResult<StatusCode> {
    state.engine.complete_update(&lease, &req.status).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn cancel_update(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    P(p): P<UpdatePath>,
) -> ApiResult<StatusCode> {
    let (key, id) = p.split()?;
    state.engine.cancel_update(&caller, &key, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn checkpoint(
    State(state): State<AppState>,
    UpdateLease(lease): UpdateLease,
    StateBody(body): StateBody,
) -> ApiResult<StatusCode> {
    state.engine.save_full_checkpoint(&lease, body.json).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn checkpoint_verbatim(
    State(state): State<AppState>,
    UpdateLease(lease): UpdateLease,
    StateBody(body): StateBody,
) -> ApiResult<StatusCode> {
    state
        .engine
        .save_verbatim_checkpoint(&lease, body.json)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn checkpoint_delta(
    State(state): State<AppState>,
    UpdateLease(lease): UpdateLease,
    StateBody(body): StateBody,
) -> ApiResult<StatusCode> {
    state
        .engine
        .save_delta_checkpoint(&lease, body.json)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn journal_entries(
    State(state): State<AppState>,
    UpdateLease(lease): UpdateLease,
    body: JournalBody,
) -> ApiResult<StatusCode> {
    state
        .engine
        .journal_entries(&lease, body.0.json, body.0.gz)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn events_batch(
    State(state): State<AppState>,
    UpdateLease(lease): UpdateLease,
    EventsBody(body, _held): EventsBody,
) -> ApiResult<StatusCode> {
    let body = match body {
        RawBody::Plain(json) => EventBody::Json(json.to_vec()),
        RawBody::Gzip(gz) => EventBody::Gzip(gz.to_vec()),
    };
    state.engine.post_events(&lease, body).await?;
    Ok(StatusCode::OK)
}

/// The single-event form, stored as a batch of one.
pub async fn event_single(
    State(state): State<AppState>,
    UpdateLease(lease): UpdateLease,
    StateBody(body): StateBody,
) -> ApiResult<StatusCode> {
    state.engine.post_event(&lease, body.json).await?;
    Ok(StatusCode::OK)
}

pub async fn get_events(
    State(state): State<AppState>,
    ApiCaller(caller): ApiCaller,
    P(p): P<UpdatePath>,
    Q(q): Q<EventsQuery>,
) -> ApiResult<AxumJson<GetUpdateEventsResponse>> {
    let (key, id) = p.split()?;
    let page = state
        .engine
        .get_events(&caller, &key, &id, q.continuation_token.as_deref())
        .await?;
    Ok(AxumJson(GetUpdateEventsResponse {
        events: page.events,
        continuation_token: page.continuation,
    }))
}
