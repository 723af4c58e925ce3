//! Wire shapes of the access routes: tokens, members, teams, roles, stack access, and the
//! OAuth token endpoint. Field names as the CLI (`sdk/go/common/apitype`) and the service's
//! OpenAPI spec spell them.

use serde::{Deserialize, Serialize};

/// Unix seconds as an RFC 3339 date-time (the `created` fields).
pub fn iso(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[derive(Serialize)]
pub struct AccessToken {
    pub id: String,
    pub name: String,
    pub description: String,
    pub created: String,
    #[serde(rename = "createdBy")]
    pub created_by: String,
    /// Unix seconds; 0: never used.
    #[serde(rename = "lastUsed")]
    pub last_used: i64,
    /// Unix seconds; 0: never expires.
    pub expires: i64,
    pub admin: bool,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Serialize)]
pub struct ListAccessTokensResponse {
    pub tokens: Vec<AccessToken>,
}

#[derive(Deserialize)]
pub struct CreateTokenRequest {
    #[serde(default)]
    pub description: String,
    /// Unix seconds; 0: never.
    #[serde(default)]
    pub expires: i64,
    /// Organization and team tokens.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub admin: bool,
    #[serde(rename = "roleID", default)]
    pub role_id: Option<String>,
}

#[derive(Serialize)]
pub struct CreateTokenResponse {
    pub id: String,
    #[serde(rename = "tokenValue")]
    pub token_value: String,
}

#[derive(Serialize)]
pub struct UserInfo {
    pub name: String,
    #[serde(rename = "githubLogin")]
    pub github_login: String,
    #[serde(rename = "avatarUrl")]
    pub avatar_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub email: String,
}

#[derive(Serialize)]
pub struct FgaRole {
    pub id: String,
    pub name: String,
    #[serde(rename = "modifiedAt")]
    pub modified_at: String,
}

#[derive(Serialize)]
pub struct OrganizationMember {
    pub role: String,
    pub user: UserInfo,
    pub created: String,
    #[serde(rename = "knownToPulumi")]
    pub known_to_pulumi: bool,
    #[serde(rename = "virtualAdmin")]
    pub virtual_admin: bool,
    #[serde(rename = "fgaRole")]
    pub fga_role: FgaRole,
}

#[derive(Serialize)]
pub struct ListMembersResponse {
    pub members: Vec<OrganizationMember>,
}

#[derive(Deserialize, Default)]
pub struct MembersQuery {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(rename = "continuationToken")]
    pub continuation_token: Option<String>,
}

#[derive(Deserialize)]
pub struct UpdateMemberRequest {
    pub role: Option<String>,
    #[serde(rename = "fgaRoleId")]
    pub fga_role_id: Option<String>,
}

#[derive(Deserialize)]
pub struct AddMemberRequest {
    pub role: String,
}

#[derive(Serialize)]
pub struct Role {
    pub id: String,
    #[serde(rename = "orgId")]
    pub org_id: String,
    pub name: String,
    pub description: String,
    #[serde(rename = "resourceType")]
    pub resource_type: String,
    #[serde(rename = "uxPurpose")]
    pub ux_purpose: String,
    #[serde(rename = "defaultIdentifier")]
    pub default_identifier: String,
    pub details: Box<serde_json::value::RawValue>,
    pub version: i64,
    #[serde(rename = "isOrgDefault")]
    pub is_org_default: bool,
    pub created: String,
    pub modified: String,
}

#[derive(Serialize)]
pub struct ListRolesResponse {
    pub roles: Vec<Role>,
}

#[derive(Deserialize, Default)]
pub struct RolesQuery {
    #[serde(rename = "uxPurpose")]
    pub ux_purpose: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct ForceQuery {
    #[serde(default)]
    pub force: bool,
}

#[derive(Deserialize)]
pub struct CreateRoleRequest {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "uxPurpose", default)]
    pub ux_purpose: String,
    pub details: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Deserialize)]
pub struct UpdateRoleRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub details: Box<serde_json::value::RawValue>,
}

#[derive(Serialize)]
pub struct TeamMemberInfo {
    pub name: String,
    #[serde(rename = "githubLogin")]
    pub github_login: String,
    #[serde(rename = "avatarUrl")]
    pub avatar_url: String,
    pub role: String,
}

#[derive(Serialize, Deserialize)]
pub struct TeamStackPermission {
    #[serde(rename = "projectName")]
    pub project_name: String,
    #[serde(rename = "stackName")]
    pub stack_name: String,
    pub permission: i64,
}

#[derive(Serialize)]
pub struct Team {
    pub name: String,
    #[serde(rename = "displayName")]
    pub display_name: String,
    pub description: String,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<TeamMemberInfo>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stacks: Option<Vec<TeamStackPermission>>,
    #[serde(rename = "roleIds", skip_serializing_if = "Vec::is_empty")]
    pub role_ids: Vec<String>,
}

#[derive(Serialize)]
pub struct ListTeamsResponse {
    pub teams: Vec<Team>,
}

#[derive(Deserialize)]
pub struct CreateTeamRequest {
    pub name: String,
    #[serde(rename = "displayName", default)]
    pub display_name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Deserialize)]
pub struct StackRef {
    #[serde(rename = "projectName")]
    pub project_name: String,
    #[serde(rename = "stackName")]
    pub stack_name: String,
}

#[derive(Deserialize)]
pub struct UpdateTeamRequest {
    pub member: Option<String>,
    #[serde(rename = "memberAction")]
    pub member_action: Option<String>,
    #[serde(rename = "newDisplayName")]
    pub new_display_name: Option<String>,
    #[serde(rename = "newDescription")]
    pub new_description: Option<String>,
    #[serde(rename = "addStackPermission")]
    pub add_stack_permission: Option<TeamStackPermission>,
    #[serde(rename = "editStackPermission")]
    pub edit_stack_permission: Option<TeamStackPermission>,
    #[serde(rename = "removeStack")]
    pub remove_stack: Option<StackRef>,
}

#[derive(Serialize)]
pub struct StackTeam {
    pub name: String,
    #[serde(rename = "displayName")]
    pub display_name: String,
    pub description: String,
    pub permission: i64,
    #[serde(rename = "isMember")]
    pub is_member: bool,
}

#[derive(Serialize)]
pub struct StackTeamsResponse {
    #[serde(rename = "projectName")]
    pub project_name: String,
    pub teams: Vec<StackTeam>,
}

#[derive(Deserialize)]
pub struct StackPermissionRequest {
    pub permissions: i64,
}

#[derive(Deserialize)]
pub struct CollaboratorRequest {
    pub permission: i64,
}

#[derive(Serialize)]
pub struct UserPermission {
    pub user: UserInfo,
    pub permission: i64,
}

#[derive(Serialize)]
pub struct CollaboratorsResponse {
    pub users: Vec<UserPermission>,
    #[serde(
        rename = "stackCreatorUserName",
        skip_serializing_if = "Option::is_none"
    )]
    pub stack_creator: Option<String>,
}

/// `POST /api/oauth/token`, form-encoded as the CLI sends it (RFC 8693 and RFC 6749).
#[derive(Deserialize, Default)]
pub struct OAuthTokenRequest {
    pub grant_type: String,
    #[serde(default)]
    pub subject_token: String,
    #[serde(default)]
    pub subject_token_type: String,
    #[serde(default)]
    pub requested_token_type: String,
    #[serde(default)]
    pub audience: String,
    #[serde(default)]
    pub scope: String,
    /// Seconds.
    #[serde(default)]
    pub expiration: Option<String>,
    #[serde(default)]
    pub refresh_token: String,
}

#[derive(Serialize)]
pub struct OAuthTokenResponse {
    pub access_token: String,
    pub issued_token_type: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// RFC 6749 §5.2: what the CLI shows verbatim after `OIDC token exchange failed: `.
#[derive(Serialize)]
pub struct OAuthError {
    pub error: &'static str,
    pub error_description: String,
}

#[derive(Deserialize)]
pub struct CliLoginQuery {
    #[serde(rename = "cliSessionPort")]
    pub port: u16,
    #[serde(rename = "cliSessionNonce")]
    pub nonce: String,
    #[serde(rename = "cliSessionDescription", default)]
    pub description: String,
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}
