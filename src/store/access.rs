//! Persistence of who may do what: users, organizations and their members, teams, custom
//! roles, per-stack grants, access tokens of every kind, OIDC trust policies and browser
//! login sessions. A separate trait from [`crate::store::Store`] (which requires it) so the
//! state protocol and access control read as two subjects; one backend implements both.
//!
//! Rules that need one transaction live here (removing a member also takes them out of the
//! org's teams; deleting a team revokes its tokens and drops its grants; a login session is
//! taken once). What a permission *means* is the engine's.

use crate::store::{Notes, StoreFuture, TokenRow};
pub use crate::types::Grantee;
use crate::types::{OrgRole, StackPermission, TokenKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub login: String,
    pub name: String,
    pub email: String,
    pub created_at: i64,
    /// A disabled user's tokens stop working and they cannot log in.
    pub disabled_at: Option<i64>,
    /// The identity provider that vouches for the user (OIDC issuer), and its subject.
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub last_login_at: Option<i64>,
}

/// Creates a user, or refreshes the name, email and provider link of an existing one.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub login: String,
    pub name: String,
    pub email: String,
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub now: i64,
    /// Record a login at `now`.
    pub logged_in: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRow {
    pub name: String,
    pub created_at: i64,
    /// What every member may do with every stack of the organization (grants add to it).
    pub default_permission: StackPermission,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub org: String,
    pub login: String,
    pub name: String,
    pub email: String,
    pub role: OrgRole,
    /// A custom role (`fgaRoleId`) that replaces the built-in one's stack permissions.
    pub role_id: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamRow {
    pub org: String,
    pub name: String,
    pub display_name: String,
    pub description: String,
    /// The custom role assigned to the team (one per team).
    pub role_id: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamMember {
    pub login: String,
    pub name: String,
    /// `member` or `admin` (a team admin manages the team's members and tokens).
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRow {
    pub id: String,
    pub org: String,
    pub name: String,
    pub description: String,
    pub ux_purpose: String,
    /// The permission descriptor tree, JSON as the client sent it.
    pub details: String,
    pub version: i64,
    pub is_default: bool,
    pub created_at: i64,
    pub modified_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackGrant {
    pub grantee: Grantee,
    pub permission: StackPermission,
}

/// Who may exchange which identity-provider tokens for which pbackend tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicyRow {
    pub id: String,
    pub org: String,
    pub issuer: String,
    /// The `aud` the presented token must carry.
    pub audience: String,
    /// JSON object: claim name → exact value, or a pattern ending in `*`.
    pub rules: String,
    pub token_kind: TokenKind,
    pub team: Option<String>,
    pub login: Option<String>,
    /// The longest lifetime, in seconds, of a token issued under the policy.
    pub max_expiration: i64,
    pub created_at: i64,
}

/// A browser login in progress: what the CLI asked for and what the provider must echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSession {
    /// The OAuth `state`.
    pub id: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub cli_port: i64,
    pub cli_nonce: String,
    pub description: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Everything access control needs about the subject of a token, read in one transaction.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token: TokenRow,
    /// The user the token belongs to (personal and refresh tokens), if it is known.
    pub user: Option<UserRow>,
    pub memberships: Vec<MemberRow>,
    /// (org, team, team role) for every team the subject is in; for a team token, its team.
    pub teams: Vec<(String, String, String)>,
    /// Custom roles that apply: the members' and the teams' and the token's own.
    pub roles: Vec<RoleRow>,
    /// Default permissions of the organizations in `memberships` (and of a machine token's).
    pub orgs: Vec<OrgRow>,
}

/// What a user's memberships are, for identities that are not a stored token (a browser
/// login being completed, a JWT bearer).
#[derive(Debug, Clone, Default)]
pub struct Memberships {
    pub memberships: Vec<MemberRow>,
    pub teams: Vec<(String, String, String)>,
    pub roles: Vec<RoleRow>,
    pub orgs: Vec<OrgRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleDelete {
    Deleted,
    NotFound,
    /// Still assigned to members, teams or tokens, and not forced.
    InUse,
}

pub trait AccessStore: Send + Sync {
    // --- users
    fn upsert_user(&self, user: NewUser) -> StoreFuture<'_, UserRow>;
    fn get_user<'a>(&'a self, login: &'a str) -> StoreFuture<'a, Option<UserRow>>;
    fn user_by_subject<'a>(
        &'a self,
        issuer: &'a str,
        subject: &'a str,
    ) -> StoreFuture<'a, Option<UserRow>>;
    fn list_users(&self) -> StoreFuture<'_, Vec<UserRow>>;
    /// Disables (`Some(at)`) or re-enables (`None`) a user; false when there is none.
    fn set_user_disabled<'a>(&'a self, login: &'a str, at: Option<i64>) -> StoreFuture<'a, bool>;
    /// The user's memberships, teams and the roles that apply to them.
    fn memberships<'a>(&'a self, login: &'a str) -> StoreFuture<'a, Memberships>;

    // --- organizations and members
    /// Creates the organization if it does not exist; returns it.
    fn ensure_org<'a>(&'a self, name: &'a str, now: i64) -> StoreFuture<'a, OrgRow>;
    fn get_org<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<OrgRow>>;
    fn list_orgs(&self) -> StoreFuture<'_, Vec<OrgRow>>;
    fn set_org_default_permission<'a>(
        &'a self,
        name: &'a str,
        permission: StackPermission,
    ) -> StoreFuture<'a, bool>;
    /// Adds a member or changes their role (`role_id`: `Some(None)` clears a custom role,
    /// `None` leaves it). The user must exist.
    fn set_member<'a>(
        &'a self,
        org: &'a str,
        login: &'a str,
        role: OrgRole,
        role_id: Option<Option<String>>,
        now: i64,
        notes: Notes,
    ) -> StoreFuture<'a, MemberRow>;
    /// Removes a member and their places in the organization's teams; false when absent.
    fn remove_member<'a>(
        &'a self,
        org: &'a str,
        login: &'a str,
        notes: Notes,
    ) -> StoreFuture<'a, bool>;
    fn list_members<'a>(&'a self, org: &'a str) -> StoreFuture<'a, Vec<MemberRow>>;

    // --- teams
    /// `Conflict` when the name is taken.
    fn create_team(&self, team: TeamRow, notes: Notes) -> StoreFuture<'_, ()>;
    fn update_team(&self, team: TeamRow, notes: Notes) -> StoreFuture<'_, bool>;
    /// Deletes a team, revokes its tokens and drops its stack grants; false when absent.
    fn delete_team<'a>(
        &'a self,
        org: &'a str,
        name: &'a str,
        now: i64,
        notes: Notes,
    ) -> StoreFuture<'a, bool>;
    fn get_team<'a>(
        &'a self,
        org: &'a str,
        name: &'a str,
    ) -> StoreFuture<'a, Option<(TeamRow, Vec<TeamMember>)>>;
    fn list_teams<'a>(&'a self, org: &'a str) -> StoreFuture<'a, Vec<TeamRow>>;
    /// Adds a member to a team or changes their team role; they must be an org member.
    fn set_team_member<'a>(
        &'a self,
        org: &'a str,
        team: &'a str,
        login: &'a str,
        role: &'a str,
        notes: Notes,
    ) -> StoreFuture<'a, bool>;
    fn remove_team_member<'a>(
        &'a self,
        org: &'a str,
        team: &'a str,
        login: &'a str,
        notes: Notes,
    ) -> StoreFuture<'a, bool>;

    // --- custom roles
    /// `Conflict` when the name is taken in the organization.
    fn create_role(&self, role: RoleRow, notes: Notes) -> StoreFuture<'_, ()>;
    /// Replaces name, description, details and bumps the version; false when absent.
    fn update_role(&self, role: RoleRow, notes: Notes) -> StoreFuture<'_, bool>;
    fn delete_role<'a>(
        &'a self,
        org: &'a str,
        id: &'a str,
        force: bool,
        notes: Notes,
    ) -> StoreFuture<'a, RoleDelete>;
    fn get_role<'a>(&'a self, org: &'a str, id: &'a str) -> StoreFuture<'a, Option<RoleRow>>;
    fn list_roles<'a>(
        &'a self,
        org: &'a str,
        purpose: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<RoleRow>>;
    /// Assigns (or with `None` removes) a team's role; false when the team does not exist.
    fn set_team_role<'a>(
        &'a self,
        org: &'a str,
        team: &'a str,
        role_id: Option<&'a str>,
        notes: Notes,
    ) -> StoreFuture<'a, bool>;

    // --- per-stack grants
    /// Sets a grant (`StackPermission::None` removes it).
    fn set_stack_grant(
        &self,
        stack_id: i64,
        grantee: Grantee,
        permission: StackPermission,
        notes: Notes,
    ) -> StoreFuture<'_, ()>;
    fn stack_grants(&self, stack_id: i64) -> StoreFuture<'_, Vec<StackGrant>>;

    // --- tokens of every kind (the `tokens` rows; see [`crate::store::Store`] for lookups)
    /// The token with this hash and everything about its subject.
    fn resolve_token(&self, hash: Vec<u8>) -> StoreFuture<'_, Option<Principal>>;
    fn list_tokens_of(&self, filter: TokenFilter) -> StoreFuture<'_, Vec<TokenRow>>;

    // --- OIDC trust policies and browser logins
    fn create_trust_policy(&self, policy: TrustPolicyRow) -> StoreFuture<'_, ()>;
    fn list_trust_policies<'a>(
        &'a self,
        org: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<TrustPolicyRow>>;
    fn delete_trust_policy<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool>;
    fn create_login_session(&self, session: LoginSession) -> StoreFuture<'_, ()>;
    /// Removes and returns the session if it exists and has not expired (single use).
    fn take_login_session<'a>(
        &'a self,
        id: &'a str,
        now: i64,
    ) -> StoreFuture<'a, Option<LoginSession>>;
}

/// Which tokens to list. Revoked tokens are left out unless asked for.
#[derive(Debug, Clone, Default)]
pub struct TokenFilter {
    pub kind: Option<TokenKind>,
    pub user: Option<String>,
    pub org: Option<String>,
    pub team: Option<String>,
    pub include_revoked: bool,
}
