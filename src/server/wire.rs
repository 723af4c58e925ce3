//! JSON shapes of the Pulumi service API, as the CLI sends and reads them (field names from
//! upstream `sdk/go/common/apitype`). Plain data: no rules live here.

pub mod access;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::engine::{StackView, UpdateView};
use crate::types::UpdateStatus;

#[derive(Serialize)]
pub struct ErrorResponse<'a> {
    pub code: u16,
    pub message: &'a str,
}

#[derive(Serialize)]
pub struct Capability {
    pub capability: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration: Option<serde_json::Value>,
}

#[derive(Serialize)]
pub struct CapabilitiesResponse {
    pub capabilities: Vec<Capability>,
}

#[derive(Serialize)]
pub struct OrgInfo {
    pub name: String,
    #[serde(rename = "githubLogin")]
    pub github_login: String,
    #[serde(rename = "avatarUrl")]
    pub avatar_url: String,
}

/// Set for machine tokens only: the CLI's `whoami -v` reads the token type from which of
/// `organization` and `team` is present.
#[derive(Serialize)]
pub struct TokenInfo {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
}

#[derive(Serialize)]
pub struct ServiceUser {
    pub id: String,
    #[serde(rename = "githubLogin")]
    pub github_login: String,
    pub name: String,
    pub email: String,
    #[serde(rename = "avatarUrl")]
    pub avatar_url: String,
    pub organizations: Vec<OrgInfo>,
    pub identities: Vec<String>,
    #[serde(rename = "siteAdmin")]
    pub site_admin: bool,
    #[serde(rename = "tokenInfo", skip_serializing_if = "Option::is_none")]
    pub token_info: Option<TokenInfo>,
}

/// `GET /api/user/organizations/default` — PascalCase keys, as upstream.
#[derive(Serialize)]
pub struct DefaultOrgResponse {
    #[serde(rename = "GitHubLogin")]
    pub github_login: String,
    #[serde(rename = "Messages")]
    pub messages: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
pub struct CreateStackRequest {
    #[serde(rename = "stackName")]
    pub stack_name: String,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub state: Option<Box<RawValue>>,
    /// Teams given access to the new stack (`pulumi stack init --teams`).
    #[serde(default)]
    pub teams: Option<Vec<String>>,
}

#[derive(Serialize)]
pub struct CreateStackResponse {}

#[derive(Serialize)]
pub struct OperationStatus {
    pub kind: String,
    pub author: String,
    pub started: i64,
}

#[derive(Serialize)]
pub struct Stack {
    pub id: String,
    #[serde(rename = "orgName")]
    pub org_name: String,
    #[serde(rename = "projectName")]
    pub project_name: String,
    #[serde(rename = "stackName")]
    pub stack_name: String,
    #[serde(rename = "currentOperation", skip_serializing_if = "Option::is_none")]
    pub current_operation: Option<OperationStatus>,
    #[serde(rename = "activeUpdate")]
    pub active_update: String,
    pub tags: BTreeMap<String, String>,
    pub version: i64,
}

impl Stack {
    pub fn from_views(s: &StackView, running: Option<&UpdateView>) -> Self {
        Stack {
            id: s.id.to_string(),
            org_name: s.key.org.clone(),
            project_name: s.key.project.clone(),
            stack_name: s.key.stack.clone(),
            current_operation: running.map(|u| OperationStatus {
                kind: u.kind.clone(),
                author: u.author.clone(),
                started: u.started_at.unwrap_or(u.created_at),
            }),
            active_update: s.active_update.clone().unwrap_or_default(),
            tags: s.tags.clone(),
            version: s.current_version.unwrap_or(0),
        }
    }
}

#[derive(Serialize)]
pub struct StackSummary {
    pub id: String,
    #[serde(rename = "orgName")]
    pub org_name: String,
    #[serde(rename = "projectName")]
    pub project_name: String,
    #[serde(rename = "stackName")]
    pub stack_name: String,
    #[serde(rename = "lastUpdate", skip_serializing_if = "Option::is_none")]
    pub last_update: Option<i64>,
    #[serde(rename = "resourceCount")]
    pub resource_count: i64,
}

impl From<&StackView> for StackSummary {
    fn from(s: &StackView) -> Self {
        StackSummary {
            id: s.id.to_string(),
            org_name: s.key.org.clone(),
            project_name: s.key.project.clone(),
            stack_name: s.key.stack.clone(),
            last_update: s.last_update_at,
            resource_count: s.resource_count,
        }
    }
}

#[derive(Serialize)]
pub struct ListStacksResponse {
    pub stacks: Vec<StackSummary>,
    /// Omitted on the last page: an empty string would make the CLI loop forever.
    #[serde(rename = "continuationToken", skip_serializing_if = "Option::is_none")]
    pub continuation_token: Option<String>,
}

#[derive(Deserialize)]
pub struct ListStacksQuery {
    pub organization: Option<String>,
    pub project: Option<String>,
    #[serde(rename = "tagName")]
    pub tag_name: Option<String>,
    #[serde(rename = "tagValue")]
    pub tag_value: Option<String>,
    #[serde(rename = "continuationToken")]
    pub continuation_token: Option<String>,
}

#[derive(Deserialize)]
pub struct StackRenameRequest {
    #[serde(rename = "newName")]
    pub new_name: String,
    #[serde(rename = "newProject", default)]
    pub new_project: String,
}

#[derive(Deserialize)]
pub struct DeleteStackQuery {
    #[serde(default)]
    pub force: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct UpdateMetadata {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub environment: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
pub struct UpdateOptions {
    #[serde(rename = "dryRun", default)]
    pub dry_run: bool,
}

#[derive(Deserialize)]
pub struct UpdateProgramRequest {
    #[serde(default)]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub metadata: Option<UpdateMetadata>,
    #[serde(default)]
    pub options: Option<UpdateOptions>,
    #[serde(rename = "coherenceWindow", default)]
    pub coherence_window: Option<String>,
}

/// `POST …/begin-update`: the create-update body and the start-update fields in one.
#[derive(Deserialize)]
pub struct BeginUpdateRequest {
    #[serde(rename = "updateKind")]
    pub update_kind: String,
    pub program: UpdateProgramRequest,
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(rename = "journalVersion", default)]
    pub journal_version: Option<i64>,
}

/// `POST …/begin-update` answer, without its `deployment`, which is spliced in as the bytes
/// export would send (see the handler).
#[derive(Serialize)]
pub struct BeginUpdateResponse<'a> {
    pub version: i64,
    pub token: &'a str,
    #[serde(rename = "tokenExpiration")]
    pub token_expiration: i64,
    #[serde(rename = "journalVersion", skip_serializing_if = "Option::is_none")]
    pub journal_version: Option<i64>,
    #[serde(rename = "updateID")]
    pub update_id: &'a str,
    #[serde(rename = "aiSettings")]
    pub ai_settings: AiSettings,
    pub stack: BeginStack<'a>,
}

#[derive(Serialize)]
pub struct BeginStack<'a> {
    #[serde(rename = "orgName")]
    pub org_name: &'a str,
    #[serde(rename = "projectName")]
    pub project_name: &'a str,
    #[serde(rename = "stackName")]
    pub stack_name: &'a str,
    pub tags: &'a BTreeMap<String, String>,
}

/// `GET …/outputs`.
#[derive(Serialize)]
pub struct StackOutputsResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Box<RawValue>>,
    #[serde(rename = "secretsProviders", skip_serializing_if = "Option::is_none")]
    pub secrets_providers: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unknown: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
}

#[derive(Deserialize, Default)]
pub struct OutputsQuery {
    #[serde(rename = "readingUpdateID", default)]
    pub reading_update_id: Option<String>,
}

#[derive(Serialize)]
pub struct AiSettings {
    #[serde(rename = "copilotIsEnabled")]
    pub copilot_is_enabled: bool,
}

#[derive(Serialize)]
pub struct UpdateProgramResponse {
    #[serde(rename = "updateID")]
    pub update_id: String,
    #[serde(rename = "aiSettings")]
    pub ai_settings: AiSettings,
}

#[derive(Deserialize, Default)]
pub struct StartUpdateRequest {
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(rename = "journalVersion", default)]
    pub journal_version: Option<i64>,
}

#[derive(Serialize)]
pub struct StartUpdateResponse {
    pub version: i64,
    pub token: String,
    #[serde(rename = "tokenExpiration")]
    pub token_expiration: i64,
    #[serde(rename = "journalVersion", skip_serializing_if = "Option::is_none")]
    pub journal_version: Option<i64>,
}

#[derive(Deserialize, Default)]
pub struct RenewLeaseRequest {
    #[serde(default)]
    pub duration: i64,
}

#[derive(Serialize)]
pub struct RenewLeaseResponse {
    pub token: String,
    #[serde(rename = "tokenExpiration")]
    pub token_expiration: i64,
}

#[derive(Deserialize)]
pub struct CompleteUpdateRequest {
    pub status: String,
    /// A preview in a coherence window: the root stack's outputs it computed.
    #[serde(default)]
    pub outputs: Option<Box<RawValue>>,
    #[serde(rename = "secretsProviders", default)]
    pub secrets_providers: Option<Box<RawValue>>,
}

#[derive(Serialize)]
pub struct UpdateResults {
    pub status: &'static str,
    pub events: Vec<serde_json::Value>,
    #[serde(rename = "continuationToken", skip_serializing_if = "Option::is_none")]
    pub continuation_token: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct EventsQuery {
    #[serde(rename = "continuationToken", default)]
    pub continuation_token: Option<String>,
}

#[derive(Serialize)]
pub struct GetUpdateEventsResponse {
    pub events: Vec<Box<RawValue>>,
    #[serde(rename = "continuationToken", skip_serializing_if = "Option::is_none")]
    pub continuation_token: Option<String>,
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    #[serde(rename = "pageSize", default)]
    pub page_size: Option<i64>,
    #[serde(default)]
    pub page: Option<i64>,
}

fn raw_object(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned())
        .ok()
        .filter(|r| r.get().starts_with('{'))
        .unwrap_or_else(|| RawValue::from_string("{}".into()).expect("valid JSON"))
}

/// One history entry, in the flat ("legacy") shape the CLI's `stack history` reads.
#[derive(Serialize)]
pub struct UpdateInfo {
    pub kind: String,
    #[serde(rename = "startTime")]
    pub start_time: i64,
    pub message: String,
    pub environment: Box<RawValue>,
    pub config: Box<RawValue>,
    pub result: &'static str,
    #[serde(rename = "endTime")]
    pub end_time: i64,
    pub version: i64,
    #[serde(rename = "resourceChanges", skip_serializing_if = "Option::is_none")]
    pub resource_changes: Option<Box<RawValue>>,
    #[serde(rename = "resourceCount", skip_serializing_if = "Option::is_none")]
    pub resource_count: Option<i64>,
}

impl From<&UpdateView> for UpdateInfo {
    fn from(u: &UpdateView) -> Self {
        UpdateInfo {
            kind: u.kind.clone(),
            start_time: u.started_at.unwrap_or(u.created_at),
            message: u.message.clone(),
            environment: raw_object(&u.environment),
            config: raw_object(&u.config),
            result: match u.status {
                UpdateStatus::NotStarted => "not-started",
                UpdateStatus::Running => "in-progress",
                UpdateStatus::Succeeded => "succeeded",
                UpdateStatus::Failed | UpdateStatus::Cancelled => "failed",
            },
            end_time: u.ended_at.unwrap_or(0),
            version: u.version,
            resource_changes: u.resource_changes.as_deref().map(raw_object),
            resource_count: u.resource_count,
        }
    }
}

#[derive(Serialize)]
pub struct GetHistoryResponse {
    pub updates: Vec<UpdateInfo>,
}

/// `updates/latest` and `updates/{version}`: the entry wrapped with its identifiers.
#[derive(Serialize)]
pub struct UpdateDetail {
    pub info: UpdateInfo,
    #[serde(rename = "updateID")]
    pub update_id: String,
    pub version: i64,
}

#[derive(Serialize)]
pub struct ImportStackResponse {
    #[serde(rename = "updateId")]
    pub update_id: String,
}

#[derive(Deserialize)]
pub struct EncryptValueRequest {
    pub plaintext: String,
}

#[derive(Serialize)]
pub struct EncryptValueResponse {
    pub ciphertext: String,
}

#[derive(Deserialize)]
pub struct DecryptValueRequest {
    pub ciphertext: String,
}

#[derive(Serialize)]
pub struct DecryptValueResponse {
    pub plaintext: String,
}

/// Go encodes an empty (nil) slice as `null`, and older CLIs send exactly that for a batch
/// with nothing in it.
fn null_is_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
pub struct BatchEncryptRequest {
    #[serde(deserialize_with = "null_is_empty")]
    pub plaintexts: Vec<String>,
}

#[derive(Serialize)]
pub struct BatchEncryptResponse {
    pub ciphertexts: Vec<String>,
}

#[derive(Deserialize)]
pub struct BatchDecryptRequest {
    #[serde(deserialize_with = "null_is_empty")]
    pub ciphertexts: Vec<String>,
}

#[derive(Serialize)]
pub struct BatchDecryptResponse {
    pub plaintexts: BTreeMap<String, String>,
}
