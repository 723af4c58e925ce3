//! Turning credentials into an [`Identity`] and checking it against what a route needs.
//!
//! Every route declares a [`Permission`] in the server's route table; the server's
//! authentication layer calls [`Engine::authorize`] with the identity and the path's target
//! before the handler runs (and before the body is read). Operator commands act as
//! [`Identity::operator`], which every check lets through, so both go through the same rules.

use crate::engine::access::identity::{
    Identity, RoleGrant, StackFacts, Subject, TokenInfo, role_grant,
};
use crate::engine::{Engine, EngineError, EngineResult, crypto, names};
use crate::store::access::{Memberships, Principal};
use crate::store::{StackKey, StackRow};
use crate::types::{OrgRole, StackPermission, TokenKind};

/// What a route needs from the identity calling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Any valid identity (its own profile, the service's capabilities).
    Authenticated,
    /// A person (a personal token or a login), not an organization's or a team's machine
    /// token: what is theirs alone, such as their own tokens.
    Person,
    /// At least this on the stack named in the path.
    Stack(StackPermission),
    /// An organization scope in the organization named in the path (`stack:create`,
    /// `org_member:read`, `team:create`, `org_token:create`, `role:update`, ...).
    Org(&'static str),
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Permission::Authenticated => f.write_str("authenticated"),
            Permission::Person => f.write_str("personal"),
            Permission::Stack(p) => write!(f, "stack:{}", p.as_str()),
            Permission::Org(scope) => f.write_str(scope),
        }
    }
}

/// What the path of a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    None,
    Org(String),
    Stack(StackKey),
}

fn unauthenticated() -> EngineError {
    EngineError::Unauthenticated("No credentials provided or are invalid.".into())
}

impl Engine {
    /// Checks an API token; the result is the caller's identity. The single-tenant token is
    /// the instance admin; stored tokens act as their user, organization or team until
    /// revoked, expired, or their user is disabled.
    pub async fn authenticate(&self, token: &str) -> EngineResult<Identity> {
        use subtle::ConstantTimeEq;
        let hash = crypto::sha256(token.as_bytes());
        if let Some(admin) = &self.admin_token_hash
            && bool::from(hash.ct_eq(admin))
        {
            let mut id = Identity::instance_admin(&self.cfg.user);
            id.orgs.insert(self.cfg.org.clone(), OrgRole::Admin);
            return Ok(id);
        }
        if let Some(id) = self.jwt_identity(token).await? {
            return Ok(id);
        }
        let principal = self
            .store
            .resolve_token(hash.to_vec())
            .await?
            .ok_or_else(unauthenticated)?;
        let now = self.now();
        let t = &principal.token;
        let live = t.revoked_at.is_none()
            && t.expires_at.is_none_or(|e| e > now)
            // A refresh token is only ever exchanged, never presented.
            && t.kind != TokenKind::Refresh
            && principal.user.as_ref().is_none_or(|u| u.disabled_at.is_none());
        if !live {
            return Err(unauthenticated());
        }
        // Record use at most once a minute: this is on every API request.
        if t.last_used_at.is_none_or(|u| u + 60 <= now) {
            self.store.touch_token(&t.id, now).await?;
        }
        Ok(identity_of(principal))
    }

    /// The identity of a user who authenticated some other way (a browser login, a JWT).
    pub async fn identity_of_user(&self, login: &str) -> EngineResult<Identity> {
        let m = self.store.memberships(login).await?;
        let mut id = Identity::user(login);
        fill(&mut id, m);
        Ok(id)
    }

    /// Whether `identity` may do what `permission` says to `target`; 403 naming the missing
    /// permission when not. A stack that does not exist passes (the handler answers 404).
    pub async fn authorize(
        &self,
        identity: &Identity,
        permission: Permission,
        target: &Target,
    ) -> EngineResult<()> {
        if identity.is_instance_admin() {
            return Ok(());
        }
        match (permission, target) {
            (Permission::Authenticated, _) => Ok(()),
            (Permission::Person, _) if identity.is_user() => Ok(()),
            (Permission::Person, _) => Err(EngineError::Forbidden(
                "this needs a personal token: organization and team tokens have no personal \
                 tokens or profile settings"
                    .into(),
            )),
            (Permission::Stack(need), Target::Stack(key)) => {
                names::check_key(key)?;
                let Some(stack) = self.store.get_stack_or_former(key).await? else {
                    return Ok(());
                };
                if self.has_stack_permission(identity, &stack, need).await? {
                    Ok(())
                } else {
                    Err(forbidden(identity, &permission, &key.to_string()))
                }
            }
            (Permission::Org(scope), Target::Org(org) | Target::Stack(StackKey { org, .. })) => {
                if identity.has_org_scope(org, scope) {
                    Ok(())
                } else if identity.org_role(org).is_none() && !identity.owns(org) {
                    Err(EngineError::NotFound(format!(
                        "organization '{org}' not found"
                    )))
                } else {
                    Err(forbidden(identity, &permission, org))
                }
            }
            (p, t) => Err(EngineError::Internal(format!(
                "route declares {p} but its path names {t:?}"
            ))),
        }
    }

    /// Whether the identity has at least `need` on the stack. Grants only ever raise a
    /// permission, so they are read only when the rest (organization role and default,
    /// authorship, custom roles) falls short: for most calls of a member with the
    /// organization's default, nothing beyond the stack itself is read.
    async fn has_stack_permission(
        &self,
        identity: &Identity,
        stack: &StackRow,
        need: StackPermission,
    ) -> EngineResult<bool> {
        if identity.is_instance_admin() {
            return Ok(true);
        }
        let mut facts = StackFacts {
            org: &stack.key.org,
            created_by: stack.created_by.as_deref(),
            grants: &[],
        };
        if identity.stack_permission(&facts) >= need {
            return Ok(true);
        }
        let grants = self.store.stack_grants(stack.id).await?;
        facts.grants = &grants;
        Ok(identity.stack_permission(&facts) >= need)
    }

    /// Requires a permission on a stack the engine already resolved (checks made inside a
    /// use case, such as the source stack of an import's ciphertexts).
    pub(crate) async fn require_stack(
        &self,
        identity: &Identity,
        stack: &StackRow,
        need: StackPermission,
    ) -> EngineResult<()> {
        if self.has_stack_permission(identity, stack, need).await? {
            Ok(())
        } else {
            Err(forbidden(
                identity,
                &Permission::Stack(need),
                &stack.key.to_string(),
            ))
        }
    }
}

impl Identity {
    /// Whether `org` is the identity's own namespace.
    pub fn owns(&self, org: &str) -> bool {
        self.is_user() && self.user == org
    }
}

fn forbidden(identity: &Identity, permission: &Permission, on: &str) -> EngineError {
    EngineError::Forbidden(format!(
        "{} does not have the {permission} permission on {on}",
        identity.user
    ))
}

fn fill(id: &mut Identity, m: Memberships) {
    for member in &m.memberships {
        id.orgs.insert(member.org.clone(), member.role);
    }
    id.teams = m.teams;
    id.roles = m
        .roles
        .iter()
        .map(|r| role_grant(&r.id, &r.org, &r.details))
        .collect::<Vec<RoleGrant>>();
    for o in m.orgs {
        id.org_defaults.insert(o.name, o.default_permission);
    }
}

/// The identity a stored token stands for.
pub fn identity_of(p: Principal) -> Identity {
    let t = p.token;
    let token = Some(TokenInfo {
        id: t.id.clone(),
        kind: t.kind,
        name: t.name.clone(),
    });
    let m = Memberships {
        memberships: p.memberships,
        teams: p.teams,
        roles: p.roles,
        orgs: p.orgs,
    };
    let mut id = match t.kind {
        TokenKind::Personal | TokenKind::Refresh => Identity::user(&t.user),
        TokenKind::Organization => Identity {
            subject: Subject::Organization {
                org: t.org.clone().unwrap_or_default(),
                admin: t.admin,
            },
            ..Identity::user(&t.user)
        },
        TokenKind::Team => Identity {
            subject: Subject::Team {
                org: t.org.clone().unwrap_or_default(),
                team: t.team.clone().unwrap_or_default(),
            },
            ..Identity::user(&t.user)
        },
    };
    id.token = token;
    fill(&mut id, m);
    id
}
