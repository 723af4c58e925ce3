//! Access routes: personal, organization and team tokens; members, teams and roles of an
//! organization; who may use a stack. The route table has checked the caller's permission.

use axum::Json as AxumJson;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::engine::access::people::TeamChange;
use crate::engine::access::views::{MemberView, RoleView};
use crate::engine::{Identity, TokenView};
use crate::server::auth::ApiIdentity;
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::{Json, OptionalJson, P, Q};
use crate::server::handlers::OrgPath;
use crate::server::handlers::StackPath;
use crate::server::state::AppState;
use crate::server::wire::access::*;
use crate::types::{Grantee, StackKey, StackPermission};

#[derive(Deserialize)]
pub struct TokenPath {
    token: String,
}

#[derive(Deserialize)]
pub struct OrgTokenPath {
    org: String,
    token: String,
}

#[derive(Deserialize)]
pub struct MemberPath {
    org: String,
    user: String,
}

#[derive(Deserialize)]
pub struct RolePath {
    org: String,
    role: String,
}

#[derive(Deserialize)]
pub struct TeamPath {
    org: String,
    team: String,
}

#[derive(Deserialize)]
pub struct TeamRolePath {
    org: String,
    team: String,
    role: String,
}

#[derive(Deserialize)]
pub struct TeamTokenPath {
    org: String,
    team: String,
    token: String,
}

#[derive(Deserialize)]
pub struct StackTeamPath {
    org: String,
    project: String,
    stack: String,
    team: String,
}

#[derive(Deserialize)]
pub struct CollaboratorPath {
    org: String,
    project: String,
    stack: String,
    user: String,
}

fn access_token(t: TokenView) -> AccessToken {
    AccessToken {
        id: t.id,
        name: t.name,
        description: t.description,
        created: iso(t.created_at),
        created_by: t.created_by,
        last_used: t.last_used_at.unwrap_or(0),
        expires: t.expires_at.unwrap_or(0),
        admin: t.admin,
        kind: t.kind.to_owned(),
    }
}

fn tokens(list: Vec<TokenView>) -> AxumJson<ListAccessTokensResponse> {
    AxumJson(ListAccessTokensResponse {
        tokens: list.into_iter().map(access_token).collect(),
    })
}

fn created((view, value): (TokenView, String)) -> AxumJson<CreateTokenResponse> {
    AxumJson(CreateTokenResponse {
        id: view.id,
        token_value: value,
    })
}

fn permission(code: i64) -> ApiResult<StackPermission> {
    StackPermission::from_code(code)
        .ok_or_else(|| ApiError::bad_request(format!("invalid permission {code}")))
}

// ------------------------------------------------------------------------- tokens

pub async fn list_my_tokens(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
) -> ApiResult<AxumJson<ListAccessTokensResponse>> {
    Ok(tokens(state.engine.my_tokens(&caller).await?))
}

pub async fn create_my_token(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    Json(req): Json<CreateTokenRequest>,
) -> ApiResult<AxumJson<CreateTokenResponse>> {
    Ok(created(
        state
            .engine
            .create_my_token(&caller, &req.description, req.expires)
            .await?,
    ))
}

pub async fn delete_my_token(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<TokenPath>,
) -> ApiResult<StatusCode> {
    state.engine.delete_my_token(&caller, &p.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_org_tokens(
    State(state): State<AppState>,
    P(p): P<OrgPath>,
) -> ApiResult<AxumJson<ListAccessTokensResponse>> {
    Ok(tokens(state.engine.machine_tokens(&p.org, None).await?))
}

pub async fn create_org_token(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<OrgPath>,
    Json(req): Json<CreateTokenRequest>,
) -> ApiResult<AxumJson<CreateTokenResponse>> {
    Ok(created(
        state
            .engine
            .create_machine_token(
                &caller,
                &p.org,
                None,
                &req.name,
                &req.description,
                req.admin,
                req.role_id,
                req.expires,
            )
            .await?,
    ))
}

pub async fn delete_org_token(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<OrgTokenPath>,
) -> ApiResult<StatusCode> {
    state
        .engine
        .delete_machine_token(&caller, &p.org, None, &p.token)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_team_tokens(
    State(state): State<AppState>,
    P(p): P<TeamPath>,
) -> ApiResult<AxumJson<ListAccessTokensResponse>> {
    Ok(tokens(
        state.engine.machine_tokens(&p.org, Some(&p.team)).await?,
    ))
}

pub async fn create_team_token(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<TeamPath>,
    Json(req): Json<CreateTokenRequest>,
) -> ApiResult<AxumJson<CreateTokenResponse>> {
    Ok(created(
        state
            .engine
            .create_machine_token(
                &caller,
                &p.org,
                Some(&p.team),
                &req.name,
                &req.description,
                false,
                None,
                req.expires,
            )
            .await?,
    ))
}

pub async fn delete_team_token(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<TeamTokenPath>,
) -> ApiResult<StatusCode> {
    state
        .engine
        .delete_machine_token(&caller, &p.org, Some(&p.team), &p.token)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------------ members

fn member(m: MemberView, roles: &[RoleView]) -> OrganizationMember {
    let fga = match m
        .role_id
        .as_ref()
        .and_then(|id| roles.iter().find(|r| &r.id == id))
    {
        Some(r) => FgaRole {
            id: r.id.clone(),
            name: r.name.clone(),
            modified_at: iso(r.modified_at),
        },
        None => FgaRole {
            id: m.role.as_str().to_owned(),
            name: m.role.as_str().to_owned(),
            modified_at: iso(m.created_at),
        },
    };
    OrganizationMember {
        role: m.role.as_str().to_owned(),
        user: UserInfo {
            name: m.name,
            github_login: m.login,
            avatar_url: String::new(),
            email: m.email,
        },
        created: iso(m.created_at),
        known_to_pulumi: true,
        virtual_admin: false,
        fga_role: fga,
    }
}

pub async fn list_members(
    State(state): State<AppState>,
    P(p): P<OrgPath>,
    Q(q): Q<MembersQuery>,
) -> ApiResult<AxumJson<ListMembersResponse>> {
    let kind = q.kind.as_deref().unwrap_or("frontend");
    if kind != "frontend" && kind != "backend" {
        return Err(ApiError::bad_request(format!("invalid type {kind:?}")));
    }
    // Every member of this instance is a person ("frontend"); machine accounts are tokens.
    let members = if kind == "frontend" {
        state.engine.members(&p.org).await?
    } else {
        vec![]
    };
    let roles = state.engine.roles(&p.org, None).await?;
    Ok(AxumJson(ListMembersResponse {
        members: members.into_iter().map(|m| member(m, &roles)).collect(),
    }))
}

pub async fn add_member(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<MemberPath>,
    Json(req): Json<AddMemberRequest>,
) -> ApiResult<AxumJson<OrganizationMember>> {
    let m = state
        .engine
        .add_member(&caller, &p.org, &p.user, &req.role)
        .await?;
    let roles = state.engine.roles(&p.org, None).await?;
    Ok(AxumJson(member(m, &roles)))
}

pub async fn update_member(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<MemberPath>,
    Json(req): Json<UpdateMemberRequest>,
) -> ApiResult<StatusCode> {
    state
        .engine
        .update_member(
            &caller,
            &p.org,
            &p.user,
            req.role.as_deref(),
            req.fga_role_id.as_deref(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove_member(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<MemberPath>,
) -> ApiResult<StatusCode> {
    state.engine.remove_member(&caller, &p.org, &p.user).await?;
    Ok(StatusCode::NO_CONTENT)
}

// -------------------------------------------------------------------------- roles

fn role(r: RoleView) -> Role {
    // Stored details were checked as JSON when they arrived.
    let details = serde_json::value::RawValue::from_string(r.details)
        .or_else(|_| serde_json::value::RawValue::from_string("{}".into()))
        .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned());
    Role {
        id: r.id,
        org_id: r.org,
        name: r.name,
        description: r.description,
        resource_type: "organization".into(),
        ux_purpose: r.ux_purpose,
        default_identifier: String::new(),
        details,
        version: r.version,
        is_org_default: r.is_default,
        created: iso(r.created_at),
        modified: iso(r.modified_at),
    }
}

pub async fn list_roles(
    State(state): State<AppState>,
    P(p): P<OrgPath>,
    Q(q): Q<RolesQuery>,
) -> ApiResult<AxumJson<ListRolesResponse>> {
    let purpose = q.ux_purpose.filter(|s| !s.is_empty());
    let roles = state.engine.roles(&p.org, purpose.as_deref()).await?;
    Ok(AxumJson(ListRolesResponse {
        roles: roles.into_iter().map(role).collect(),
    }))
}

pub async fn create_role(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<OrgPath>,
    Json(req): Json<CreateRoleRequest>,
) -> ApiResult<AxumJson<Role>> {
    let details = req
        .details
        .map(|d| d.get().to_owned())
        .unwrap_or_else(|| "{}".into());
    let r = state
        .engine
        .create_role(
            &caller,
            &p.org,
            &req.name,
            &req.description,
            &req.ux_purpose,
            &details,
        )
        .await?;
    Ok(AxumJson(role(r)))
}

pub async fn get_role(
    State(state): State<AppState>,
    P(p): P<RolePath>,
) -> ApiResult<AxumJson<Role>> {
    Ok(AxumJson(role(state.engine.role(&p.org, &p.role).await?)))
}

pub async fn update_role(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<RolePath>,
    Json(req): Json<UpdateRoleRequest>,
) -> ApiResult<AxumJson<Role>> {
    let r = state
        .engine
        .update_role(
            &caller,
            &p.org,
            &p.role,
            &req.name,
            &req.description,
            req.details.get(),
        )
        .await?;
    Ok(AxumJson(role(r)))
}

pub async fn delete_role(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<RolePath>,
    Q(q): Q<ForceQuery>,
) -> ApiResult<StatusCode> {
    state
        .engine
        .delete_role(&caller, &p.org, &p.role, q.force)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// -------------------------------------------------------------------------- teams

async fn team_view(state: &AppState, org: &str, name: &str, full: bool) -> ApiResult<Team> {
    let (t, members) = state.engine.team(org, name).await?;
    let (members, stacks) = if full {
        let stacks = state.engine.team_stacks(org, name).await?;
        (
            Some(
                members
                    .into_iter()
                    .map(|m| TeamMemberInfo {
                        name: m.name,
                        github_login: m.login,
                        avatar_url: String::new(),
                        role: m.role,
                    })
                    .collect(),
            ),
            Some(
                stacks
                    .into_iter()
                    .map(|(k, perm)| TeamStackPermission {
                        project_name: k.project,
                        stack_name: k.stack,
                        permission: perm.code(),
                    })
                    .collect(),
            ),
        )
    } else {
        (None, None)
    };
    Ok(Team {
        name: t.name,
        display_name: t.display_name,
        description: t.description,
        kind: "pulumi",
        members,
        stacks,
        role_ids: t.role_id.into_iter().collect(),
    })
}

pub async fn list_teams(
    State(state): State<AppState>,
    P(p): P<OrgPath>,
) -> ApiResult<AxumJson<ListTeamsResponse>> {
    let mut teams = Vec::new();
    for t in state.engine.teams(&p.org).await? {
        teams.push(team_view(&state, &p.org, &t.name, false).await?);
    }
    Ok(AxumJson(ListTeamsResponse { teams }))
}

pub async fn create_team(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<OrgPath>,
    Json(req): Json<CreateTeamRequest>,
) -> ApiResult<(StatusCode, AxumJson<Team>)> {
    state
        .engine
        .create_team(
            &caller,
            &p.org,
            &req.name,
            &req.display_name,
            &req.description,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        AxumJson(team_view(&state, &p.org, &req.name, true).await?),
    ))
}

pub async fn get_team(
    State(state): State<AppState>,
    P(p): P<TeamPath>,
) -> ApiResult<AxumJson<Team>> {
    Ok(AxumJson(team_view(&state, &p.org, &p.team, true).await?))
}

fn team_change(req: UpdateTeamRequest) -> ApiResult<TeamChange> {
    if let (Some(member), Some(action)) = (req.member, req.member_action) {
        return Ok(match action.as_str() {
            "add" => TeamChange::AddMember(member),
            "remove" => TeamChange::RemoveMember(member),
            "promote" => TeamChange::Promote(member),
            "demote" => TeamChange::Demote(member),
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid memberAction {other:?}"
                )));
            }
        });
    }
    if let Some(s) = req.add_stack_permission.or(req.edit_stack_permission) {
        return Ok(TeamChange::Stack {
            project: s.project_name,
            stack: s.stack_name,
            permission: permission(s.permission)?,
        });
    }
    if let Some(s) = req.remove_stack {
        return Ok(TeamChange::Stack {
            project: s.project_name,
            stack: s.stack_name,
            permission: StackPermission::None,
        });
    }
    if req.new_display_name.is_some() || req.new_description.is_some() {
        return Ok(TeamChange::Rename {
            display_name: req.new_display_name,
            description: req.new_description,
        });
    }
    Err(ApiError::bad_request("nothing to change"))
}

pub async fn update_team(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<TeamPath>,
    Json(req): Json<UpdateTeamRequest>,
) -> ApiResult<StatusCode> {
    let change = team_change(req)?;
    state
        .engine
        .change_team(&caller, &p.org, &p.team, change)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_team(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<TeamPath>,
) -> ApiResult<StatusCode> {
    state.engine.delete_team(&caller, &p.org, &p.team).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn team_roles(
    State(state): State<AppState>,
    P(p): P<TeamPath>,
) -> ApiResult<AxumJson<ListRolesResponse>> {
    let (t, _) = state.engine.team(&p.org, &p.team).await?;
    let mut roles = Vec::new();
    if let Some(id) = t.role_id {
        roles.push(role(state.engine.role(&p.org, &id).await?));
    }
    Ok(AxumJson(ListRolesResponse { roles }))
}

pub async fn assign_team_role(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<TeamRolePath>,
    OptionalJson(_): OptionalJson<serde_json::Value>,
) -> ApiResult<StatusCode> {
    state
        .engine
        .assign_team_role(&caller, &p.org, &p.team, Some(&p.role))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn unassign_team_role(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<TeamRolePath>,
) -> ApiResult<StatusCode> {
    let (t, _) = state.engine.team(&p.org, &p.team).await?;
    if t.role_id.as_deref() != Some(p.role.as_str()) {
        return Err(ApiError::not_found(format!(
            "role '{}' is not assigned to team '{}'",
            p.role, p.team
        )));
    }
    state
        .engine
        .assign_team_role(&caller, &p.org, &p.team, None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----------------------------------------------------------------- stack access

fn is_member(caller: &Identity, org: &str, team: &str) -> bool {
    caller.teams.iter().any(|(o, t, _)| o == org && t == team)
}

pub async fn stack_teams(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackPath>,
) -> ApiResult<AxumJson<StackTeamsResponse>> {
    let key = p.key();
    let grants = state.engine.stack_grants(&key).await?;
    let mut teams = Vec::new();
    for t in state.engine.teams(&key.org).await? {
        let perm = grants
            .iter()
            .find(|g| g.kind == "team" && g.grantee == t.name)
            .map(|g| g.permission)
            .unwrap_or(StackPermission::None);
        teams.push(StackTeam {
            is_member: is_member(&caller, &key.org, &t.name),
            name: t.name,
            display_name: t.display_name,
            description: t.description,
            permission: perm.code(),
        });
    }
    Ok(AxumJson(StackTeamsResponse {
        project_name: key.project,
        teams,
    }))
}

pub async fn set_stack_team(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<StackTeamPath>,
    Json(req): Json<StackPermissionRequest>,
) -> ApiResult<StatusCode> {
    let key = StackKey {
        org: p.org,
        project: p.project,
        stack: p.stack,
    };
    state
        .engine
        .grant_stack(
            &caller,
            &key,
            Grantee::Team(p.team),
            permission(req.permissions)?,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn stack_collaborators(
    State(state): State<AppState>,
    P(p): P<StackPath>,
) -> ApiResult<AxumJson<CollaboratorsResponse>> {
    let key = p.key();
    let (stack, _) = state.engine.get_stack(&Identity::operator(), &key).await?;
    let grants = state.engine.stack_grants(&key).await?;
    let users = grants
        .into_iter()
        .filter_map(|g| match g.grantee() {
            Grantee::User(u) => Some(UserPermission {
                user: UserInfo {
                    name: u.clone(),
                    github_login: u,
                    avatar_url: String::new(),
                    email: String::new(),
                },
                permission: g.permission.code(),
            }),
            _ => None,
        })
        .collect();
    Ok(AxumJson(CollaboratorsResponse {
        users,
        stack_creator: stack.created_by,
    }))
}

pub async fn set_stack_collaborator(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<CollaboratorPath>,
    Json(req): Json<CollaboratorRequest>,
) -> ApiResult<StatusCode> {
    let key = StackKey {
        org: p.org,
        project: p.project,
        stack: p.stack,
    };
    state.engine.member(&key.org, &p.user).await?;
    state
        .engine
        .grant_stack(
            &caller,
            &key,
            Grantee::User(p.user),
            permission(req.permission)?,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove_stack_collaborator(
    State(state): State<AppState>,
    ApiIdentity(caller): ApiIdentity,
    P(p): P<CollaboratorPath>,
) -> ApiResult<StatusCode> {
    let key = StackKey {
        org: p.org,
        project: p.project,
        stack: p.stack,
    };
    state
        .engine
        .grant_stack(&caller, &key, Grantee::User(p.user), StackPermission::None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
