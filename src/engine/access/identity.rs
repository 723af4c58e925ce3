//! The one identity type every permission is checked against, whatever the credential was
//! (an API token of any kind, a browser login, a JWT bearer, the operator at the database),
//! and the rules that turn it into a permission on a stack or an organization.

use std::collections::BTreeMap;

use crate::store::access::{Grantee, StackGrant};
use crate::types::{OrgRole, StackPermission, TokenKind};

/// What kind of subject is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A person: their memberships, teams and grants decide.
    User,
    /// An organization's machine token: member of that organization (admin if the token is).
    Organization { org: String, admin: bool },
    /// A team's machine token: the team's grants in its organization.
    Team { org: String, team: String },
    /// The single-tenant token or the operator at the database: everything, everywhere.
    InstanceAdmin,
}

/// The token a request carried, for `GET /api/user` (`tokenInfo`) and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub kind: TokenKind,
    pub name: String,
}

/// A custom role reduced to what it grants: a permission on every stack of its
/// organization, and organization scopes (`team:create`, `org_member:read`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleGrant {
    pub id: String,
    pub org: String,
    pub stacks: StackPermission,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Identity {
    /// The name the CLI shows (`githubLogin`): a user's login, an organization's name for its
    /// tokens, `team-account:<team>` for a team token.
    pub user: String,
    pub subject: Subject,
    pub token: Option<TokenInfo>,
    /// Organization → built-in role, for a user.
    pub orgs: BTreeMap<String, OrgRole>,
    /// (org, team, team role).
    pub teams: Vec<(String, String, String)>,
    pub roles: Vec<RoleGrant>,
    /// Organization → the permission its members have on every stack.
    pub org_defaults: BTreeMap<String, StackPermission>,
    /// The operator at the database (offline commands).
    pub operator: bool,
    /// Where the request came from, for the audit log (`None` offline).
    pub source_ip: Option<std::net::IpAddr>,
}

/// What a permission check needs to know about a stack.
pub struct StackFacts<'a> {
    pub org: &'a str,
    pub created_by: Option<&'a str>,
    pub grants: &'a [StackGrant],
}

/// Organization scopes members have without a custom role (admins have every scope).
const MEMBER_SCOPES: &[&str] = &[
    "stack:create",
    "org_member:read",
    "team:list",
    "team:read",
    "role:read",
];

impl Identity {
    /// A user with no memberships yet (memberships are filled in by the engine).
    pub fn user(login: &str) -> Self {
        Identity {
            user: login.to_owned(),
            subject: Subject::User,
            token: None,
            orgs: BTreeMap::new(),
            teams: vec![],
            roles: vec![],
            org_defaults: BTreeMap::new(),
            operator: false,
            source_ip: None,
        }
    }

    /// Everything everywhere: the single-tenant token's identity.
    pub fn instance_admin(login: &str) -> Self {
        Identity {
            subject: Subject::InstanceAdmin,
            ..Identity::user(login)
        }
    }

    /// The identity of offline maintenance commands.
    pub fn operator() -> Self {
        Identity {
            operator: true,
            ..Identity::instance_admin("operator")
        }
    }

    pub fn is_instance_admin(&self) -> bool {
        self.subject == Subject::InstanceAdmin
    }

    /// A person (not a machine token, not the instance admin).
    pub fn is_user(&self) -> bool {
        self.subject == Subject::User
    }

    /// The built-in role in an organization: a machine token's role is member (admin for an
    /// admin organization token); a team token's is member.
    pub fn org_role(&self, org: &str) -> Option<OrgRole> {
        match &self.subject {
            Subject::InstanceAdmin => Some(OrgRole::Admin),
            Subject::User => self.orgs.get(org).copied(),
            Subject::Organization { org: o, admin } if o == org => Some(if *admin {
                OrgRole::Admin
            } else {
                OrgRole::Member
            }),
            Subject::Team { org: o, .. } if o == org => Some(OrgRole::Member),
            _ => None,
        }
    }

    pub fn is_org_admin(&self, org: &str) -> bool {
        self.org_role(org) == Some(OrgRole::Admin)
    }

    /// The user's own namespace (stacks under `<login>/...`), as in the managed service.
    fn owns_namespace(&self, org: &str) -> bool {
        self.is_user() && self.user == org
    }

    /// Organizations the identity belongs to, for `GET /api/user`.
    pub fn organizations(&self) -> Vec<String> {
        match &self.subject {
            Subject::User | Subject::InstanceAdmin => self.orgs.keys().cloned().collect(),
            Subject::Organization { org, .. } | Subject::Team { org, .. } => vec![org.clone()],
        }
    }

    /// Whether the identity has an organization scope (`team:create`, `org_member:update`,
    /// `org_token:create`, ...). Admins have every scope; members a few; custom roles add.
    pub fn has_org_scope(&self, org: &str, scope: &str) -> bool {
        match self.org_role(org) {
            Some(OrgRole::Admin) => return true,
            Some(OrgRole::Member) if MEMBER_SCOPES.contains(&scope) => {
                // A team token acts for its team only: it cannot create stacks of its own.
                if scope == "stack:create" && matches!(self.subject, Subject::Team { .. }) {
                    return false;
                }
                return true;
            }
            _ => {}
        }
        self.owns_namespace(org) && scope == "stack:create"
            || self
                .roles
                .iter()
                .any(|r| r.org == org && r.scopes.iter().any(|s| s == scope))
    }

    /// The identity's permission on a stack: the best of what its organization role, the
    /// stack's creator, the grants to it and its teams, and its custom roles give.
    pub fn stack_permission(&self, stack: &StackFacts<'_>) -> StackPermission {
        if self.is_instance_admin() || self.owns_namespace(stack.org) {
            return StackPermission::Admin;
        }
        let mut best = StackPermission::None;
        match self.org_role(stack.org) {
            Some(OrgRole::Admin) => return StackPermission::Admin,
            Some(OrgRole::Member) if !matches!(self.subject, Subject::Team { .. }) => {
                if let Some(d) = self.org_defaults.get(stack.org) {
                    best = best.max(*d);
                }
            }
            _ => {}
        }
        if self.is_user() && stack.created_by == Some(self.user.as_str()) {
            return StackPermission::Admin;
        }
        for g in stack.grants {
            let mine = match &g.grantee {
                Grantee::User(u) => self.is_user() && *u == self.user,
                Grantee::Team(t) => self
                    .teams
                    .iter()
                    .any(|(org, team, _)| org == stack.org && team == t),
            };
            if mine {
                best = best.max(g.permission);
            }
        }
        for r in &self.roles {
            if r.org == stack.org {
                best = best.max(r.stacks);
            }
        }
        best
    }

    /// Organizations whose every stack the identity may read (the rest of what it may read
    /// comes from grants and authorship).
    pub fn readable_orgs(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |o: &str| {
            if !out.iter().any(|x| x == o) {
                out.push(o.to_owned());
            }
        };
        match &self.subject {
            Subject::User => {
                add(&self.user);
                for (org, role) in &self.orgs {
                    let default = self
                        .org_defaults
                        .get(org)
                        .copied()
                        .unwrap_or(StackPermission::None);
                    if *role == OrgRole::Admin
                        || (*role == OrgRole::Member && default >= StackPermission::Read)
                    {
                        add(org);
                    }
                }
            }
            Subject::Organization { org, admin } => {
                let default = self
                    .org_defaults
                    .get(org)
                    .copied()
                    .unwrap_or(StackPermission::None);
                if *admin || default >= StackPermission::Read {
                    add(org);
                }
            }
            Subject::Team { .. } | Subject::InstanceAdmin => {}
        }
        for r in &self.roles {
            if r.stacks >= StackPermission::Read {
                add(&r.org);
            }
        }
        out
    }

    /// `org/team` of every team, for grant lookups.
    pub fn team_keys(&self) -> Vec<String> {
        self.teams
            .iter()
            .map(|(org, team, _)| format!("{org}/{team}"))
            .collect()
    }
}

/// Reads a custom role's permission descriptor: the scopes of its `Allow` nodes, through
/// `Group` nodes. Conditional nodes (`Condition`, `IfThenElse`, `Select`) and `Compose`
/// grant nothing here: a role that needs them is not widened by guessing.
pub fn role_grant(id: &str, org: &str, details: &str) -> RoleGrant {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v.get("__type").and_then(|t| t.as_str()) {
            Some("PermissionDescriptorAllow") => {
                if let Some(p) = v.get("permissions").and_then(|p| p.as_array()) {
                    out.extend(p.iter().filter_map(|s| s.as_str().map(str::to_owned)));
                }
            }
            Some("PermissionDescriptorGroup") => {
                if let Some(e) = v.get("entries").and_then(|e| e.as_array()) {
                    for x in e {
                        walk(x, out);
                    }
                }
            }
            _ => {}
        }
    }
    let mut scopes = Vec::new();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(details) {
        walk(&v, &mut scopes);
    }
    let stacks = scopes
        .iter()
        .map(|s| scope_stack_permission(s))
        .max()
        .unwrap_or(StackPermission::None);
    RoleGrant {
        id: id.to_owned(),
        org: org.to_owned(),
        stacks,
        scopes,
    }
}

/// The stack permission a stack scope implies on every stack of the organization.
fn scope_stack_permission(scope: &str) -> StackPermission {
    match scope {
        "stack:read" | "stack:list" | "stack:export" | "stack:decrypt" => StackPermission::Read,
        "stack:write"
        | "stack:import"
        | "stack:encrypt"
        | "stack:cancel_update"
        | "stack_tags:update" => StackPermission::Write,
        "stack:delete" | "stack:rename" | "stack:transfer" | "stack_access:update" => {
            StackPermission::Admin
        }
        _ => StackPermission::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(org: &str, default: StackPermission) -> Identity {
        let mut i = Identity::user("alice");
        i.orgs.insert(org.into(), OrgRole::Member);
        i.org_defaults.insert(org.into(), default);
        i
    }

    #[test]
    fn the_best_source_of_permission_wins() {
        let grants = vec![StackGrant {
            grantee: Grantee::Team("web".into()),
            permission: StackPermission::Write,
        }];
        let facts = StackFacts {
            org: "acme",
            created_by: Some("bob"),
            grants: &grants,
        };
        let mut alice = member("acme", StackPermission::None);
        assert_eq!(alice.stack_permission(&facts), StackPermission::None);
        alice
            .teams
            .push(("acme".into(), "web".into(), "member".into()));
        assert_eq!(alice.stack_permission(&facts), StackPermission::Write);
        let bob = member("acme", StackPermission::Read);
        assert_eq!(bob.stack_permission(&facts), StackPermission::Read);
        let mut bob = bob;
        bob.user = "bob".into();
        assert_eq!(bob.stack_permission(&facts), StackPermission::Admin);
        // Another organization's member gets nothing from its own default.
        let carol = member("other", StackPermission::Admin);
        assert_eq!(carol.stack_permission(&facts), StackPermission::None);
    }

    #[test]
    fn custom_roles_read_allow_nodes_through_groups_only() {
        let details = r#"{"__type":"PermissionDescriptorGroup","entries":[
            {"__type":"PermissionDescriptorAllow","permissions":["stack:read","team:create"]},
            {"__type":"PermissionDescriptorCondition","condition":{},"subNode":
              {"__type":"PermissionDescriptorAllow","permissions":["stack:delete"]}}]}"#;
        let g = role_grant("r1", "acme", details);
        assert_eq!(g.stacks, StackPermission::Read);
        assert_eq!(g.scopes, vec!["stack:read", "team:create"]);
        let mut i = member("acme", StackPermission::None);
        i.roles.push(g);
        assert!(i.has_org_scope("acme", "team:create"));
        assert!(!i.has_org_scope("acme", "team:delete"));
        assert_eq!(i.readable_orgs(), vec!["alice", "acme"]);
    }
}
