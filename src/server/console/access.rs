//! An organization's people and machine credentials: members (add, change role, remove),
//! teams, and organization and team tokens (create, shown once; revoke). Each form's route
//! declares the organization scope the API's route for the same change declares.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use crate::engine::{Permission, Target, TokenView};
use crate::server::console::layout::{self, opt_when, page, seg, when};
use crate::server::console::org::{org_base, org_crumbs, tabs};
use crate::server::console::{Viewer, failed};
use crate::server::extract::{FormBody, P};
use crate::server::handlers::OrgPath;
use crate::server::state::AppState;

#[derive(Deserialize)]
pub struct MemberPath {
    org: String,
    user: String,
}

#[derive(Deserialize)]
pub struct TokenPath {
    org: String,
    token: String,
}

#[derive(Deserialize)]
pub struct TeamPath {
    org: String,
    team: String,
}

#[derive(Deserialize)]
pub struct TeamTokenPath {
    org: String,
    team: String,
    token: String,
}

#[derive(Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    role: String,
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

const ROLES: [&str; 3] = ["member", "admin", "billing-manager"];

async fn may(state: &AppState, viewer: &Viewer, org: &str, scope: &'static str) -> bool {
    viewer
        .may(state, Permission::Org(scope), Target::Org(org.to_owned()))
        .await
}

/// `GET /console/orgs/{org}/members`: who belongs, with which role, and the teams.
pub async fn members(State(state): State<AppState>, viewer: Viewer, P(p): P<OrgPath>) -> Response {
    let members = match state.engine.members(&p.org).await {
        Ok(m) => m,
        Err(e) => return failed(e, Some(&viewer)),
    };
    let teams = match state.engine.teams(&p.org).await {
        Ok(t) => t,
        Err(e) => return failed(e, Some(&viewer)),
    };
    let may_add = may(&state, &viewer, &p.org, "org_member:add").await;
    let may_update = may(&state, &viewer, &p.org, "org_member:update").await;
    let may_remove = may(&state, &viewer, &p.org, "org_member:delete").await;
    let base = format!("{}/members", org_base(&p.org));
    let body = html! {
        (tabs(&p.org))
        h2 { "Members" }
        table #members {
            thead { tr { th { "Login" } th { "Name" } th { "Role" } th { "Since" } @if may_remove { th { "" } } } }
            tbody {
                @for m in &members {
                    tr data-login=(m.login) {
                        td { (m.login) }
                        td { (m.name) }
                        td {
                            @if may_update {
                                form method="post" action=(format!("{base}/{}/role", seg(&m.login))) {
                                    input type="hidden" name="csrf" value=(viewer.csrf);
                                    select name="role" aria-label=(format!("Role of {}", m.login)) {
                                        @for r in ROLES { option value=(r) selected[r == m.role.as_str()] { (r) } }
                                    }
                                    " " button.primary type="submit" { "Change" }
                                }
                            } @else { (m.role.as_str()) }
                        }
                        td { (when(m.created_at)) }
                        @if may_remove {
                            td {
                                form method="post" action=(format!("{base}/{}/remove", seg(&m.login))) {
                                    input type="hidden" name="csrf" value=(viewer.csrf);
                                    button.danger type="submit" aria-label=(format!("Remove {}", m.login)) { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if may_add {
            form.card method="post" action=(base.clone()) {
                input type="hidden" name="csrf" value=(viewer.csrf);
                label for="login" { "Add member " }
                input #login type="text" name="login" required maxlength="100" placeholder="login";
                " " select name="role" aria-label="Role" { @for r in ROLES { option value=(r) { (r) } } }
                " " input type="submit" value="Add";
            }
        }
        h2 { "Teams" }
        table #teams {
            thead { tr { th { "Team" } th { "Description" } th { "Since" } } }
            tbody {
                @for t in &teams {
                    tr { td { (t.display_name) " " span.muted.mono { (t.name) } } td { (t.description) } td { (when(t.created_at)) } }
                }
            }
        }
        p.muted { "Teams and custom roles change with " code { "pulumi org" } ", the API or " code { "pbackend teams" } "/" code { "roles" } "." }
    };
    layout::ok(page(
        &format!("{}: members and teams", p.org),
        Some(&viewer),
        &org_crumbs(&p.org),
        body,
    ))
}

fn back_to_members(org: &str) -> Response {
    Redirect::to(&format!("{}/members", org_base(org))).into_response()
}

/// `POST /console/orgs/{org}/members`.
pub async fn add_member(
    State(state): State<AppState>,
    viewer: Viewer,
    P(p): P<OrgPath>,
    FormBody(f): FormBody<MemberForm>,
) -> Response {
    match state
        .engine
        .add_member(&viewer.identity, &p.org, f.login.trim(), &f.role)
        .await
    {
        Ok(_) => back_to_members(&p.org),
        Err(e) => failed(e, Some(&viewer)),
    }
}

/// `POST /console/orgs/{org}/members/{user}/role`.
pub async fn change_role(
    State(state): State<AppState>,
    viewer: Viewer,
    P(p): P<MemberPath>,
    FormBody(f): FormBody<MemberForm>,
) -> Response {
    match state
        .engine
        .update_member(&viewer.identity, &p.org, &p.user, Some(&f.role), None)
        .await
    {
        Ok(_) => back_to_members(&p.org),
        Err(e) => failed(e, Some(&viewer)),
    }
}

/// `POST /console/orgs/{org}/members/{user}/remove`.
pub async fn remove_member(
    State(state): State<AppState>,
    viewer: Viewer,
    P(p): P<MemberPath>,
) -> Response {
    match state
        .engine
        .remove_member(&viewer.identity, &p.org, &p.user)
        .await
    {
        Ok(()) => back_to_members(&p.org),
        Err(e) => failed(e, Some(&viewer)),
    }
}

fn token_rows(
    tokens: &[TokenView],
    revoke_base: &str,
    csrf: &str,
    may_revoke: bool,
) -> maud::Markup {
    html! {
        table.tokens {
            thead { tr { th { "Name" } th { "Description" } th { "Created" } th { "Last used" } th { "" } } }
            tbody {
                @for t in tokens {
                    tr {
                        td { (t.name) }
                        td { (t.description) }
                        td { (when(t.created_at)) " by " (t.created_by) }
                        td { (opt_when(t.last_used_at)) }
                        td {
                            @if t.revoked_at.is_some() { span.muted { "revoked" } }
                            @else if may_revoke {
                                form method="post" action=(format!("{revoke_base}/{}/revoke", seg(&t.id))) {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button.danger type="submit" aria-label=(format!("Revoke {}", t.name)) { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn token_form(action: &str, csrf: &str, label: &str) -> maud::Markup {
    html! {
        form.card method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            (label) " "
            input type="text" name="name" required maxlength="40" placeholder="name" aria-label="Token name";
            " " input type="text" name="description" maxlength="200" placeholder="description" aria-label="Description";
            " " input type="submit" value="Create token";
        }
    }
}

async fn tokens_page(
    state: &AppState,
    viewer: &Viewer,
    org: &str,
    created: Option<String>,
) -> Response {
    let org_tokens = match state.engine.machine_tokens(org, None).await {
        Ok(t) => t,
        Err(e) => return failed(e, Some(viewer)),
    };
    let teams = match state.engine.teams(org).await {
        Ok(t) => t,
        Err(e) => return failed(e, Some(viewer)),
    };
    let may_create = may(state, viewer, org, "org_token:create").await;
    let may_revoke = may(state, viewer, org, "org_token:delete").await;
    let may_team_list = may(state, viewer, org, "team:list_tokens").await;
    let may_team_create = may(state, viewer, org, "team:create_token").await;
    let may_team_revoke = may(state, viewer, org, "team:delete_token").await;
    let mut team_tokens = Vec::new();
    if may_team_list {
        for t in &teams {
            match state.engine.machine_tokens(org, Some(&t.name)).await {
                Ok(list) => team_tokens.push((t.name.clone(), list)),
                Err(e) => return failed(e, Some(viewer)),
            }
        }
    }
    let base = format!("{}/tokens", org_base(org));
    let body = html! {
        (tabs(org))
        @if let Some(value) = &created {
            div.card role="status" {
                p { strong { "The new token (shown this once; copy it now):" } }
                pre #new-token { (value) }
            }
        }
        h2 { "Organization tokens" }
        p.muted { "They act as the organization: for CI systems and automation." }
        (token_rows(&org_tokens, &base, &viewer.csrf, may_revoke))
        @if may_create { (token_form(&base, &viewer.csrf, "New organization token")) }
        @for (team, list) in &team_tokens {
            h2 { "Team " (team) }
            @let team_base = format!("{}/teams/{}/tokens", org_base(org), seg(team));
            (token_rows(list, &team_base, &viewer.csrf, may_team_revoke))
            @if may_team_create { (token_form(&team_base, &viewer.csrf, "New team token")) }
        }
    };
    layout::ok(page(
        &format!("{org}: tokens"),
        Some(viewer),
        &org_crumbs(org),
        body,
    ))
}

/// `GET /console/orgs/{org}/tokens`: organization tokens, and each team's.
pub async fn tokens(State(state): State<AppState>, viewer: Viewer, P(p): P<OrgPath>) -> Response {
    tokens_page(&state, &viewer, &p.org, None).await
}

async fn create_token(
    state: AppState,
    viewer: Viewer,
    org: &str,
    team: Option<&str>,
    f: TokenForm,
) -> Response {
    let (name, description) = (f.name.trim(), f.description.trim());
    match state
        .engine
        .create_machine_token(
            &viewer.identity,
            org,
            team,
            name,
            description,
            false,
            None,
            0,
        )
        .await
    {
        Ok((_, value)) => tokens_page(&state, &viewer, org, Some(value)).await,
        Err(e) => failed(e, Some(&viewer)),
    }
}

async fn revoke_token(
    state: AppState,
    viewer: Viewer,
    org: &str,
    team: Option<&str>,
    id: &str,
) -> Response {
    match state
        .engine
        .delete_machine_token(&viewer.identity, org, team, id)
        .await
    {
        Ok(()) => Redirect::to(&format!("{}/tokens", org_base(org))).into_response(),
        Err(e) => failed(e, Some(&viewer)),
    }
}

/// `POST /console/orgs/{org}/tokens`.
pub async fn create_org_token(
    State(state): State<AppState>,
    viewer: Viewer,
    P(p): P<OrgPath>,
    FormBody(f): FormBody<TokenForm>,
) -> Response {
    create_token(state, viewer, &p.org, None, f).await
}

/// `POST /console/orgs/{org}/tokens/{token}/revoke`.
pub async fn revoke_org_token(
    State(state): State<AppState>,
    viewer: Viewer,
    P(p): P<TokenPath>,
) -> Response {
    revoke_token(state, viewer, &p.org, None, &p.token).await
}

/// `POST /console/orgs/{org}/teams/{team}/tokens`.
pub async fn create_team_token(
    State(state): State<AppState>,
    viewer: Viewer,
    P(p): P<TeamPath>,
    FormBody(f): FormBody<TokenForm>,
) -> Response {
    create_token(state, viewer, &p.org, Some(&p.team), f).await
}

/// `POST /console/orgs/{org}/teams/{team}/tokens/{token}/revoke`.
pub async fn revoke_team_token(
    State(state): State<AppState>,
    viewer: Viewer,
    P(p): P<TeamTokenPath>,
) -> Response {
    revoke_token(state, viewer, &p.org, Some(&p.team), &p.token).await
}
