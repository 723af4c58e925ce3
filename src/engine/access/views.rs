//! What the access use cases hand out: plain views, not the store's rows.

use serde::Serialize;

use crate::store::access::{
    MemberRow, OrgRow, RoleRow, StackGrant, TeamMember, TeamRow, TrustPolicyRow, UserRow,
};
use crate::types::{Grantee, OrgRole, StackPermission, TokenKind};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub login: String,
    pub name: String,
    pub email: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    pub issuer: Option<String>,
    pub last_login_at: Option<i64>,
}

impl From<UserRow> for UserView {
    fn from(u: UserRow) -> Self {
        UserView {
            login: u.login,
            name: u.name,
            email: u.email,
            created_at: u.created_at,
            disabled_at: u.disabled_at,
            issuer: u.issuer,
            last_login_at: u.last_login_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgView {
    pub name: String,
    pub created_at: i64,
    #[serde(serialize_with = "perm")]
    pub default_permission: StackPermission,
}

fn perm<S: serde::Serializer>(p: &StackPermission, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.as_str())
}

fn role_name<S: serde::Serializer>(r: &OrgRole, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.as_str())
}

impl From<OrgRow> for OrgView {
    fn from(o: OrgRow) -> Self {
        OrgView {
            name: o.name,
            created_at: o.created_at,
            default_permission: o.default_permission,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub org: String,
    pub login: String,
    pub name: String,
    pub email: String,
    #[serde(serialize_with = "role_name")]
    pub role: OrgRole,
    pub role_id: Option<String>,
    pub created_at: i64,
}

impl From<MemberRow> for MemberView {
    fn from(m: MemberRow) -> Self {
        MemberView {
            org: m.org,
            login: m.login,
            name: m.name,
            email: m.email,
            role: m.role,
            role_id: m.role_id,
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamView {
    pub org: String,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub role_id: Option<String>,
    pub created_at: i64,
}

impl From<TeamRow> for TeamView {
    fn from(t: TeamRow) -> Self {
        TeamView {
            org: t.org,
            name: t.name,
            display_name: t.display_name,
            description: t.description,
            role_id: t.role_id,
            created_at: t.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamMemberView {
    pub login: String,
    pub name: String,
    pub role: String,
}

impl From<TeamMember> for TeamMemberView {
    fn from(m: TeamMember) -> Self {
        TeamMemberView {
            login: m.login,
            name: m.name,
            role: m.role,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleView {
    pub id: String,
    pub org: String,
    pub name: String,
    pub description: String,
    pub ux_purpose: String,
    pub details: String,
    pub version: i64,
    pub is_default: bool,
    pub created_at: i64,
    pub modified_at: i64,
}

impl From<RoleRow> for RoleView {
    fn from(r: RoleRow) -> Self {
        RoleView {
            id: r.id,
            org: r.org,
            name: r.name,
            description: r.description,
            ux_purpose: r.ux_purpose,
            details: r.details,
            version: r.version,
            is_default: r.is_default,
            created_at: r.created_at,
            modified_at: r.modified_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantView {
    /// `user` or `team`.
    pub kind: &'static str,
    pub grantee: String,
    #[serde(serialize_with = "perm")]
    pub permission: StackPermission,
}

impl GrantView {
    pub fn grantee(&self) -> Grantee {
        match self.kind {
            "team" => Grantee::Team(self.grantee.clone()),
            _ => Grantee::User(self.grantee.clone()),
        }
    }
}

impl From<StackGrant> for GrantView {
    fn from(g: StackGrant) -> Self {
        let (kind, grantee) = match g.grantee {
            Grantee::User(u) => ("user", u),
            Grantee::Team(t) => ("team", t),
        };
        GrantView {
            kind,
            grantee,
            permission: g.permission,
        }
    }
}

/// An organization's trust in an identity provider's tokens.
#[derive(Debug, Clone)]
pub struct TrustPolicyView {
    pub id: String,
    pub org: String,
    pub issuer: String,
    pub audience: String,
    /// JSON object: claim → value or prefix pattern.
    pub rules: String,
    pub token_kind: TokenKind,
    pub team: Option<String>,
    pub login: Option<String>,
    pub max_expiration: i64,
    pub created_at: i64,
}

impl From<TrustPolicyRow> for TrustPolicyView {
    fn from(p: TrustPolicyRow) -> Self {
        TrustPolicyView {
            id: p.id,
            org: p.org,
            issuer: p.issuer,
            audience: p.audience,
            rules: p.rules,
            token_kind: p.token_kind,
            team: p.team,
            login: p.login,
            max_expiration: p.max_expiration,
            created_at: p.created_at,
        }
    }
}
