//! Capabilities, the current user, and the answers for unknown routes.

use axum::Json as AxumJson;
use axum::extract::State;
use axum::http::{Method, Uri};

use crate::engine::Identity;
use crate::engine::access::identity::Subject;
use crate::engine::state::deployment::MAX_SCHEMA_VERSION;
use crate::server::auth::ApiIdentity;
use crate::server::error::{ApiError, ApiResult};
use crate::server::state::AppState;
use crate::server::version::{DEFAULT_API_VERSION, MAX_API_VERSION, MIN_API_VERSION};
use crate::server::wire::*;

/// What this server implements, and nothing more: the CLI switches protocols on these.
/// (Journaling needs no capability: the CLI asks for it when it starts an update.) Older
/// CLIs ignore the names they do not know.
pub async fn capabilities(State(state): State<AppState>) -> AxumJson<CapabilitiesResponse> {
    let cutoff = state.engine.config().delta_cutoff_bytes;
    AxumJson(CapabilitiesResponse {
        capabilities: vec![
            Capability {
                capability: "delta-checkpoint-uploads-v2",
                version: Some(2),
                configuration: Some(serde_json::json!({ "checkpointCutoffSizeBytes": cutoff })),
            },
            Capability {
                capability: "batch-encrypt",
                version: None,
                configuration: None,
            },
            Capability {
                capability: "deployment-schema-version",
                version: Some(1),
                configuration: Some(serde_json::json!({ "version": MAX_SCHEMA_VERSION })),
            },
            Capability {
                capability: "begin-update",
                version: Some(1),
                configuration: None,
            },
            Capability {
                capability: "stack-outputs",
                version: Some(1),
                configuration: None,
            },
            Capability {
                capability: "coherence-windows",
                version: Some(1),
                configuration: None,
            },
            Capability {
                capability: "api-version",
                version: Some(1),
                configuration: Some(serde_json::json!({
                    "minVersion": MIN_API_VERSION,
                    "maxVersion": MAX_API_VERSION,
                    "defaultVersion": DEFAULT_API_VERSION,
                })),
            },
        ],
    })
}

pub async fn current_user(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
) -> AxumJson<ServiceUser> {
    let orgs = state.engine.organizations(&caller);
    AxumJson(ServiceUser {
        id: caller.user.clone(),
        github_login: caller.user.clone(),
        name: caller.user.clone(),
        email: String::new(),
        avatar_url: String::new(),
        organizations: orgs
            .into_iter()
            .map(|o| OrgInfo {
                name: o.clone(),
                github_login: o,
                avatar_url: String::new(),
            })
            .collect(),
        identities: vec![],
        site_admin: false,
        token_info: token_info(&caller),
    })
}

fn token_info(caller: &Identity) -> Option<TokenInfo> {
    let name = caller
        .token
        .as_ref()
        .map(|t| t.name.clone())
        .unwrap_or_default();
    match &caller.subject {
        Subject::Organization { org, .. } => Some(TokenInfo {
            name,
            organization: Some(org.clone()),
            team: None,
        }),
        Subject::Team { org, team } => Some(TokenInfo {
            name,
            organization: Some(org.clone()),
            team: Some(team.clone()),
        }),
        Subject::User | Subject::InstanceAdmin => None,
    }
}

pub async fn default_org(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
) -> AxumJson<DefaultOrgResponse> {
    AxumJson(DefaultOrgResponse {
        github_login: state.engine.default_org(&caller),
        messages: vec![],
    })
}

pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiResult<()> {
    Err(ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    ))
}

/// `GET /api/openapi/pulumi-spec.json`: our OpenAPI document (public, as `pulumi api` fetches
/// it before logging in).
pub async fn openapi_spec() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::server::openapi::document(),
    )
}
