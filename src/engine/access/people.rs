//! Users, organizations and their members, teams, custom roles and per-stack grants: the
//! use cases behind `/api/orgs/{org}/members|teams|roles`, the stack access routes and the
//! operator's `pbackend users|orgs|teams|roles`. The server's route table has already
//! checked the caller's organization scope; rules about the target live here.

use crate::engine::access::identity::Identity;
use crate::engine::access::views::{
    GrantView, MemberView, OrgView, RoleView, TeamMemberView, TeamView, UserView,
};
use crate::engine::integration::audit::AuditKind;
use crate::engine::{Engine, EngineError, EngineResult, crypto, names};
use crate::store::access::{Grantee, NewUser, RoleDelete, RoleRow, TeamRow};
use crate::store::{Notes, StackKey, StoreError};
use crate::types::{OrgRole, StackPermission};

/// Built-in roles, as the members and roles APIs name them (`fgaRole.id`).
pub const BUILT_IN_ROLES: &[&str] = &["member", "admin", "billing-manager"];

fn not_found(what: &str, name: &str) -> EngineError {
    EngineError::NotFound(format!("{what} '{name}' not found"))
}

fn conflict_or(e: StoreError, msg: impl FnOnce() -> String) -> EngineError {
    match e {
        StoreError::Conflict(_) => EngineError::Conflict(msg()),
        other => other.into(),
    }
}

/// How a team changes (`PATCH /api/orgs/{org}/teams/{team}`), one thing per request.
#[derive(Debug, Clone)]
pub enum TeamChange {
    AddMember(String),
    RemoveMember(String),
    Promote(String),
    Demote(String),
    Rename {
        display_name: Option<String>,
        description: Option<String>,
    },
    /// Grant (or with `StackPermission::None`, remove) the team's access to a stack.
    Stack {
        project: String,
        stack: String,
        permission: StackPermission,
    },
}

impl Engine {
    // ----------------------------------------------------------------------- users

    /// The user, created with their login as name when absent.
    pub async fn ensure_user(&self, login: &str) -> EngineResult<UserView> {
        if let Some(u) = self.store.get_user(login).await? {
            return Ok(u.into());
        }
        Ok(self
            .store
            .upsert_user(NewUser {
                login: login.to_owned(),
                name: login.to_owned(),
                email: String::new(),
                issuer: None,
                subject: None,
                now: self.now(),
                logged_in: false,
            })
            .await?
            .into())
    }

    pub async fn users(&self) -> EngineResult<Vec<UserView>> {
        Ok(self
            .store
            .list_users()
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub async fn user(&self, login: &str) -> EngineResult<Option<UserView>> {
        Ok(self.store.get_user(login).await?.map(Into::into))
    }

    /// Disables a user (every token of theirs stops at the next request) or enables them.
    pub async fn set_user_disabled(&self, login: &str, disabled: bool) -> EngineResult<()> {
        let at = disabled.then(|| self.now());
        if self.store.set_user_disabled(login, at).await? {
            Ok(())
        } else {
            Err(not_found("user", login))
        }
    }

    // ------------------------------------------------------------------ organizations

    pub async fn ensure_org(&self, name: &str) -> EngineResult<OrgView> {
        names::check_org(name)?;
        Ok(self.store.ensure_org(name, self.now()).await?.into())
    }

    pub async fn orgs(&self) -> EngineResult<Vec<OrgView>> {
        Ok(self
            .store
            .list_orgs()
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub async fn set_org_default_permission(
        &self,
        org: &str,
        permission: StackPermission,
    ) -> EngineResult<()> {
        if self
            .store
            .set_org_default_permission(org, permission)
            .await?
        {
            Ok(())
        } else {
            Err(not_found("organization", org))
        }
    }

    /// Makes sure the instance's organization exists with `--user` as an admin, and that
    /// users from before organizations existed (known only by their tokens) keep their
    /// access as members of it.
    pub(crate) async fn ensure_instance_org(&self) -> EngineResult<()> {
        let org = self.cfg.org.clone();
        let now = self.now();
        self.store.ensure_org(&org, now).await?;
        self.ensure_user(&self.cfg.user).await?;
        let members = self.store.list_members(&org).await?;
        if !members.iter().any(|m| m.login == self.cfg.user) {
            self.store
                .set_member(
                    &org,
                    &self.cfg.user,
                    OrgRole::Admin,
                    None,
                    now,
                    Notes::none(),
                )
                .await?;
        }
        for u in self.store.list_users().await? {
            let m = self.store.memberships(&u.login).await?;
            if m.memberships.is_empty() && u.issuer.is_none() {
                self.store
                    .set_member(&org, &u.login, OrgRole::Member, None, now, Notes::none())
                    .await?;
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------------ members

    pub async fn members(&self, org: &str) -> EngineResult<Vec<MemberView>> {
        self.require_org(org).await?;
        Ok(self
            .store
            .list_members(org)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Adds a member (the user is created if this instance has not seen them yet).
    pub async fn add_member(
        &self,
        caller: &Identity,
        org: &str,
        login: &str,
        role: &str,
    ) -> EngineResult<MemberView> {
        self.require_org(org).await?;
        let role = parse_role(role)?;
        names::check_org(login)
            .map_err(|_| EngineError::Invalid(format!("invalid user {login:?}")))?;
        if self
            .store
            .list_members(org)
            .await?
            .iter()
            .any(|m| m.login == login)
        {
            return Err(EngineError::Conflict(format!(
                "{login} is already a member of {org}"
            )));
        }
        self.ensure_user(login).await?;
        let notes = self.note(
            caller,
            Some(org),
            AuditKind::MemberAdded,
            format!("{login} added to {org} as {}", role.as_str()),
        );
        Ok(self
            .store
            .set_member(org, login, role, None, self.now(), notes)
            .await?
            .into())
    }

    /// The operator's "make this user a member with this role": creates the organization
    /// and the user when new, adds the membership or changes its role.
    pub async fn set_member(
        &self,
        caller: &Identity,
        org: &str,
        login: &str,
        role: &str,
    ) -> EngineResult<MemberView> {
        self.ensure_org(org).await?;
        if self
            .store
            .list_members(org)
            .await?
            .iter()
            .any(|m| m.login == login)
        {
            self.update_member(caller, org, login, Some(role), None)
                .await
        } else {
            self.add_member(caller, org, login, role).await
        }
    }

    /// Changes a member's built-in role, or gives them a custom role (`fga_role_id`; a
    /// built-in role's name there sets that role and clears any custom one).
    pub async fn update_member(
        &self,
        caller: &Identity,
        org: &str,
        login: &str,
        role: Option<&str>,
        fga_role_id: Option<&str>,
    ) -> EngineResult<MemberView> {
        let current = self.member(org, login).await?;
        let (role, custom) = match (fga_role_id, role) {
            (Some(id), _) if BUILT_IN_ROLES.contains(&id) => (parse_role(id)?, Some(None)),
            (Some(id), _) => {
                if self.store.get_role(org, id).await?.is_none() {
                    return Err(EngineError::Invalid("Invalid parameter 'roleID'.".into()));
                }
                (current.role, Some(Some(id.to_owned())))
            }
            (None, Some(r)) => (parse_role(r)?, Some(None)),
            (None, None) => {
                return Err(EngineError::Invalid(
                    "nothing to change: give role or fgaRoleId".into(),
                ));
            }
        };
        if current.role == OrgRole::Admin && role != OrgRole::Admin {
            self.keep_an_admin(org, login).await?;
        }
        let what = match &custom {
            Some(Some(id)) => format!("custom role {id}"),
            _ => role.as_str().to_owned(),
        };
        let notes = self.note(
            caller,
            Some(org),
            AuditKind::MemberRoleChanged,
            format!("{login}'s role in {org} set to {what}"),
        );
        Ok(self
            .store
            .set_member(org, login, role, custom, self.now(), notes)
            .await?
            .into())
    }

    pub async fn remove_member(
        &self,
        caller: &Identity,
        org: &str,
        login: &str,
    ) -> EngineResult<()> {
        if caller.is_user() && caller.user == login {
            return Err(EngineError::Invalid(
                "You cannot remove yourself from the organization.".into(),
            ));
        }
        let current = self.member(org, login).await?;
        if current.role == OrgRole::Admin {
            self.keep_an_admin(org, login).await?;
        }
        let notes = self.note(
            caller,
            Some(org),
            AuditKind::MemberRemoved,
            format!("{login} removed from {org}"),
        );
        self.store.remove_member(org, login, notes).await?;
        Ok(())
    }

    pub async fn member(&self, org: &str, login: &str) -> EngineResult<MemberView> {
        self.require_org(org).await?;
        self.store
            .list_members(org)
            .await?
            .into_iter()
            .find(|m| m.login == login)
            .map(Into::into)
            .ok_or_else(|| not_found("member", login))
    }

    /// An organization must keep one admin: the last one cannot leave or be demoted.
    async fn keep_an_admin(&self, org: &str, leaving: &str) -> EngineResult<()> {
        let others = self
            .store
            .list_members(org)
            .await?
            .iter()
            .filter(|m| m.role == OrgRole::Admin && m.login != leaving)
            .count();
        if others == 0 {
            return Err(EngineError::Conflict(format!(
                "{leaving} is the last admin of {org}"
            )));
        }
        Ok(())
    }

    async fn require_org(&self, org: &str) -> EngineResult<crate::store::access::OrgRow> {
        names::check_org(org)?;
        self.store
            .get_org(org)
            .await?
            .ok_or_else(|| not_found("organization", org))
    }

    // -------------------------------------------------------------------------- teams

    pub async fn teams(&self, org: &str) -> EngineResult<Vec<TeamView>> {
        self.require_org(org).await?;
        Ok(self
            .store
            .list_teams(org)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub async fn team(
        &self,
        org: &str,
        name: &str,
    ) -> EngineResult<(TeamView, Vec<TeamMemberView>)> {
        let (t, members) = self.team_row(org, name).await?;
        Ok((t.into(), members.into_iter().map(Into::into).collect()))
    }

    async fn team_row(
        &self,
        org: &str,
        name: &str,
    ) -> EngineResult<(TeamRow, Vec<crate::store::access::TeamMember>)> {
        self.store
            .get_team(org, name)
            .await?
            .ok_or_else(|| not_found("team", name))
    }

    /// The stacks a team has been granted, with the permission.
    pub async fn team_stacks(
        &self,
        org: &str,
        team: &str,
    ) -> EngineResult<Vec<(StackKey, StackPermission)>> {
        let mut out = Vec::new();
        let q = crate::store::StackQuery {
            orgs: Some(vec![org.to_owned()]),
            limit: i64::MAX,
            ..Default::default()
        };
        for s in self.store.list_stacks(q).await? {
            for g in self.store.stack_grants(s.id).await? {
                if g.grantee == Grantee::Team(team.to_owned()) {
                    out.push((s.key.clone(), g.permission));
                }
            }
        }
        Ok(out)
    }

    pub async fn create_team(
        &self,
        caller: &Identity,
        org: &str,
        name: &str,
        display_name: &str,
        description: &str,
    ) -> EngineResult<TeamView> {
        self.require_org(org).await?;
        names::check_org(name)
            .map_err(|_| EngineError::Invalid(format!("invalid team name {name:?}")))?;
        if display_name.chars().count() > 100 {
            return Err(EngineError::Invalid(
                "the display name is longer than 100 characters".into(),
            ));
        }
        let team = TeamRow {
            org: org.to_owned(),
            name: name.to_owned(),
            display_name: if display_name.is_empty() {
                name.to_owned()
            } else {
                display_name.to_owned()
            },
            description: description.to_owned(),
            role_id: None,
            created_at: self.now(),
        };
        let notes = self.note(
            caller,
            Some(org),
            AuditKind::TeamCreated,
            format!("team {org}/{name} created"),
        );
        self.store
            .create_team(team.clone(), notes)
            .await
            .map_err(|e| conflict_or(e, || format!("team '{name}' already exists")))?;
        // Whoever creates a team (a person) administers it.
        if caller.is_user() && caller.orgs.contains_key(org) {
            self.store
                .set_team_member(org, name, &caller.user, "admin", Notes::none())
                .await?;
        }
        Ok(team.into())
    }

    pub async fn change_team(
        &self,
        caller: &Identity,
        org: &str,
        name: &str,
        change: TeamChange,
    ) -> EngineResult<()> {
        let (team, members) = self.team_row(org, name).await?;
        let what = match &change {
            TeamChange::AddMember(l) => format!("{l} added to team {org}/{name}"),
            TeamChange::Promote(l) => format!("{l} made an admin of team {org}/{name}"),
            TeamChange::Demote(l) => format!("{l} made a member of team {org}/{name}"),
            TeamChange::RemoveMember(l) => format!("{l} removed from team {org}/{name}"),
            TeamChange::Rename { .. } => format!("team {org}/{name} renamed or described"),
            TeamChange::Stack {
                project,
                stack,
                permission,
            } => format!(
                "team {org}/{name} given {} on stack {org}/{project}/{stack}",
                permission.as_str()
            ),
        };
        let kind = match &change {
            TeamChange::Stack { .. } => AuditKind::StackPermissionChanged,
            _ => AuditKind::TeamUpdated,
        };
        let notes = self.note(caller, Some(org), kind, what);
        let done = match change {
            TeamChange::AddMember(login) => {
                self.member(org, &login).await?;
                self.store
                    .set_team_member(org, name, &login, "member", notes)
                    .await?
            }
            TeamChange::Promote(login) | TeamChange::Demote(login)
                if members.iter().all(|m| m.login != login) =>
            {
                return Err(not_found("team member", &login));
            }
            TeamChange::Promote(login) => {
                self.store
                    .set_team_member(org, name, &login, "admin", notes)
                    .await?
            }
            TeamChange::Demote(login) => {
                self.store
                    .set_team_member(org, name, &login, "member", notes)
                    .await?
            }
            TeamChange::RemoveMember(login) => {
                self.store
                    .remove_team_member(org, name, &login, notes)
                    .await?
            }
            TeamChange::Rename {
                display_name,
                description,
            } => {
                self.store
                    .update_team(
                        TeamRow {
                            display_name: display_name.unwrap_or(team.display_name),
                            description: description.unwrap_or(team.description),
                            ..team
                        },
                        notes,
                    )
                    .await?
            }
            TeamChange::Stack {
                project,
                stack,
                permission,
            } => {
                let key = StackKey {
                    org: org.to_owned(),
                    project,
                    stack,
                };
                let s = self
                    .store
                    .get_stack(&key)
                    .await?
                    .ok_or_else(|| not_found("stack", &key.to_string()))?;
                self.store
                    .set_stack_grant(s.id, Grantee::Team(name.to_owned()), permission, notes)
                    .await?;
                true
            }
        };
        if done {
            Ok(())
        } else {
            Err(not_found("team member", name))
        }
    }

    pub async fn delete_team(&self, caller: &Identity, org: &str, name: &str) -> EngineResult<()> {
        let notes = self.note(
            caller,
            Some(org),
            AuditKind::TeamDeleted,
            format!("team {org}/{name} deleted (its tokens revoked, its grants removed)"),
        );
        if self.store.delete_team(org, name, self.now(), notes).await? {
            Ok(())
        } else {
            Err(not_found("team", name))
        }
    }

    /// Assigns a custom role to a team (one per team; a new one replaces the old).
    pub async fn assign_team_role(
        &self,
        caller: &Identity,
        org: &str,
        team: &str,
        role_id: Option<&str>,
    ) -> EngineResult<()> {
        if let Some(id) = role_id
            && self.store.get_role(org, id).await?.is_none()
        {
            return Err(not_found("role", id));
        }
        let notes = self.note(
            caller,
            Some(org),
            AuditKind::TeamUpdated,
            match role_id {
                Some(id) => format!("role {id} assigned to team {org}/{team}"),
                None => format!("team {org}/{team}'s role removed"),
            },
        );
        if self.store.set_team_role(org, team, role_id, notes).await? {
            Ok(())
        } else {
            Err(not_found("team", team))
        }
    }

    // -------------------------------------------------------------------------- roles

    pub async fn roles(&self, org: &str, purpose: Option<&str>) -> EngineResult<Vec<RoleView>> {
        self.require_org(org).await?;
        Ok(self
            .store
            .list_roles(org, purpose)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// A custom role named by its id or, as operators name roles, by its name.
    pub async fn role_by_id_or_name(&self, org: &str, key: &str) -> EngineResult<RoleView> {
        let roles = self.roles(org, None).await?;
        let found = roles
            .iter()
            .position(|r| r.id == key)
            .or_else(|| roles.iter().position(|r| r.name == key));
        match found {
            Some(i) => Ok(roles.into_iter().nth(i).expect("index found above")),
            None => Err(not_found("role", key)),
        }
    }

    pub async fn role(&self, org: &str, id: &str) -> EngineResult<RoleView> {
        Ok(self.role_row(org, id).await?.into())
    }

    async fn role_row(&self, org: &str, id: &str) -> EngineResult<RoleRow> {
        self.store
            .get_role(org, id)
            .await?
            .ok_or_else(|| not_found("role", id))
    }

    pub async fn create_role(
        &self,
        caller: &Identity,
        org: &str,
        name: &str,
        description: &str,
        purpose: &str,
        details: &str,
    ) -> EngineResult<RoleView> {
        self.require_org(org).await?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(EngineError::Invalid(
                "a role needs a name of at most 100 characters".into(),
            ));
        }
        check_details(details)?;
        let now = self.now();
        let role = RoleRow {
            id: hex::encode(crypto::random_bytes::<8>()),
            org: org.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
            ux_purpose: if purpose.is_empty() {
                "role".to_owned()
            } else {
                purpose.to_owned()
            },
            details: details.to_owned(),
            version: 1,
            is_default: false,
            created_at: now,
            modified_at: now,
        };
        let notes = self.note(
            caller,
            Some(org),
            AuditKind::RoleCreated,
            format!("role '{}' ({}) created in {org}", role.name, role.id),
        );
        self.store
            .create_role(role.clone(), notes)
            .await
            .map_err(|e| conflict_or(e, || "Role with this name already exists".into()))?;
        Ok(role.into())
    }

    pub async fn update_role(
        &self,
        caller: &Identity,
        org: &str,
        id: &str,
        name: &str,
        description: &str,
        details: &str,
    ) -> EngineResult<RoleView> {
        let current = self.role_row(org, id).await?;
        check_details(details)?;
        let updated = RoleRow {
            name: name.trim().to_owned(),
            description: description.to_owned(),
            details: details.to_owned(),
            modified_at: self.now(),
            ..current
        };
        let notes = self.note(
            caller,
            Some(org),
            AuditKind::RoleUpdated,
            format!("role '{}' ({id}) of {org} updated", updated.name),
        );
        if !self
            .store
            .update_role(updated, notes)
            .await
            .map_err(|e| conflict_or(e, || "Role with this name already exists".into()))?
        {
            return Err(not_found("role", id));
        }
        self.role(org, id).await
    }

    pub async fn delete_role(
        &self,
        caller: &Identity,
        org: &str,
        id: &str,
        force: bool,
    ) -> EngineResult<()> {
        let notes = self.note(
            caller,
            Some(org),
            AuditKind::RoleDeleted,
            format!("role {id} of {org} deleted"),
        );
        match self.store.delete_role(org, id, force, notes).await? {
            RoleDelete::Deleted => Ok(()),
            RoleDelete::NotFound => Err(not_found("role", id)),
            RoleDelete::InUse => Err(EngineError::Conflict(format!(
                "role '{id}' is assigned to members, teams or tokens; remove it from them or \
                 pass force"
            ))),
        }
    }

    // ------------------------------------------------------------------ stack grants

    pub async fn stack_grants(&self, key: &StackKey) -> EngineResult<Vec<GrantView>> {
        let s = self
            .store
            .get_stack(key)
            .await?
            .ok_or_else(|| not_found("stack", &key.to_string()))?;
        Ok(self
            .store
            .stack_grants(s.id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub async fn grant_stack(
        &self,
        caller: &Identity,
        key: &StackKey,
        grantee: Grantee,
        permission: StackPermission,
    ) -> EngineResult<()> {
        let s = self
            .store
            .get_stack(key)
            .await?
            .ok_or_else(|| not_found("stack", &key.to_string()))?;
        if let Grantee::Team(t) = &grantee
            && self.store.get_team(&key.org, t).await?.is_none()
        {
            return Err(not_found("team", t));
        }
        let who = match &grantee {
            Grantee::User(u) => format!("user {u}"),
            Grantee::Team(t) => format!("team {}/{t}", key.org),
        };
        let notes = self.note(
            caller,
            Some(&key.org),
            AuditKind::StackPermissionChanged,
            format!("{who} given {} on stack {key}", permission.as_str()),
        );
        Ok(self
            .store
            .set_stack_grant(s.id, grantee, permission, notes)
            .await?)
    }
}

fn parse_role(role: &str) -> EngineResult<OrgRole> {
    OrgRole::parse(role).ok_or_else(|| {
        EngineError::Invalid(format!(
            "invalid role {role:?}: use member, admin or billing-manager"
        ))
    })
}

/// A role's details must be JSON of at most 1 MB (the service's limit).
fn check_details(details: &str) -> EngineResult<()> {
    if details.len() > 1 << 20 {
        return Err(EngineError::TooLarge(
            "role details are larger than 1 MB".into(),
        ));
    }
    serde_json::from_str::<serde_json::Value>(details)
        .map_err(|e| EngineError::Invalid(format!("role details are not JSON: {e}")))?;
    Ok(())
}
