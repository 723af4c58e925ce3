//! Update lifecycle routes: create, start, status, lease renewal, checkpoints, events,
//! complete, cancel.

use axum::Json as AxumJson;
use axum::extract::State;
use axum::http::StatusCode;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::value::RawValue;

use crate::engine::blocking::run_sized;
use crate::engine::{CreateUpdate, EventBody, RecordedOutputs, StartUpdateOptions, UpdateKind};
use crate::server::auth::{ApiIdentity, LeaseHeader, UpdateLease};
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::{
    EventsBody, JournalBody, Json, OptionalJson, P, Q, RawBody, StateBody,
};
use crate::server::handlers::history::deployment_bytes;
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
    ApiIdentity(caller): ApiIdentity,
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
    let id = state
        .engine
        .create_update(&caller, &key, create_request(kind, req)?)
        .await?;
    Ok(AxumJson(UpdateProgramResponse {
        update_id: id,
        ai_settings: AiSettings {
            copilot_is_enabled: false,
        },
    }))
}

fn create_request(kind: UpdateKind, req: UpdateProgramRequest) -> ApiResult<CreateUpdate> {
    let metadata = req.metadata.unwrap_or_default();
    let environment = serde_json::to_string(&metadata.environment.unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let config =
        serde_json::to_string(&req.config.unwrap_or_default()).map_err(ApiError::bad_request)?;
    Ok(CreateUpdate {
        kind,
        coherence_window: req.coherence_window.filter(|w| !w.is_empty()),
        dry_run: req.options.unwrap_or_default().dry_run,
        message: metadata.message,
        environment,
        config,
    })
}

/// `POST …/begin-update` (CLI v3.277+): create, start, and the deployment and tags the CLI
/// would otherwise fetch. The deployment goes out as the bytes `export` sends, spliced into
/// the answer without being parsed again.
pub async fn begin_update(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
    Json(req): Json<BeginUpdateRequest>,
) -> ApiResult<Response> {
    // The CLI sends the engine's own name for imports; they are updates.
    let kind = match req.update_kind.as_str() {
        "resource-import" => UpdateKind::Update,
        k => UpdateKind::parse(k)
            .ok_or_else(|| ApiError::bad_request(format!("unknown updateKind {k:?}")))?,
    };
    let key = p.key();
    let begun = state
        .engine
        .begin_update(
            &caller,
            &key,
            create_request(kind, req.program)?,
            StartUpdateOptions {
                tags: req.tags,
                journal_version: req.journal_version,
            },
        )
        .await?;
    let head = serde_json::to_vec(&BeginUpdateResponse {
        version: begun.started.version,
        token: &begun.started.token,
        token_expiration: begun.started.token_expiration,
        journal_version: (begun.started.journal_version > 0)
            .then_some(begun.started.journal_version),
        update_id: &begun.update_id,
        ai_settings: AiSettings {
            copilot_is_enabled: false,
        },
        stack: BeginStack {
            org_name: &key.org,
            project_name: &key.project,
            stack_name: &key.stack,
            tags: &begun.tags,
        },
    })
    .map_err(ApiError::internal)?;
    let deployment = deployment_bytes(begun.base).await?;
    let body = run_sized(deployment.len(), move || {
        let mut body = Vec::with_capacity(head.len() + deployment.len() + 16);
        body.extend_from_slice(&head[..head.len() - 1]);
        body.extend_from_slice(b",\"deployment\":");
        body.extend_from_slice(&deployment);
        body.push(b'}');
        Ok(body)
    })
    .await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// `GET …/outputs` (capability `stack-outputs`): the root stack's outputs without the rest of
/// the deployment; with `readingUpdateID`, as seen from that update's coherence window.
pub async fn stack_outputs(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
    Q(q): Q<OutputsQuery>,
) -> ApiResult<AxumJson<StackOutputsResponse>> {
    let reading = q.reading_update_id.filter(|r| !r.is_empty());
    let out = state
        .engine
        .stack_outputs(&caller, &p.key(), reading.as_deref())
        .await?;
    let raw = |t: Option<String>| -> ApiResult<Option<Box<RawValue>>> {
        t.map(|t| RawValue::from_string(t).map_err(ApiError::internal))
            .transpose()
    };
    Ok(AxumJson(StackOutputsResponse {
        outputs: raw(out.outputs)?,
        secrets_providers: raw(out.secrets_providers)?,
        unknown: out.unknown,
        state: out.pending.then_some("pending"),
    }))
}

pub async fn start_update(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
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
    ApiIdentity(caller): ApiIdentity,
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
    let recorded =
        (req.outputs.is_some() || req.secrets_providers.is_some()).then(|| RecordedOutputs {
            outputs: req.outputs.map(|o| o.get().to_owned()),
            secrets_providers: req.secrets_providers.map(|s| s.get().to_owned()),
        });
    state
        .engine
        .complete_update(&lease, &req.status, recorded)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn cancel_update(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
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
    ApiIdentity(caller): ApiIdentity,
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
