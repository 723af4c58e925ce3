//! Access tokens of every kind: personal (a user's), organization and team (machine
//! tokens), and refresh tokens (exchanged at `/api/oauth/token`, never presented). The
//! value is shown once, prefixed `pul-`; only its SHA-256 is kept and compared in constant
//! time. Revocation takes effect on the next request: nothing is cached.

use crate::engine::access::identity::Identity;
use crate::engine::integration::audit::AuditKind;
use crate::engine::views::TokenView;
use crate::engine::{Engine, EngineError, EngineResult, crypto, names};
use crate::store::access::TokenFilter;
use crate::store::{NewToken, Notes, StoreError, TokenSelector};
use crate::types::{OrgRole, TokenKind};

/// The longest a token may live: two years, as the managed service allows.
pub const MAX_TOKEN_LIFETIME: i64 = 2 * 365 * 24 * 3600;

/// A token to issue.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub kind: TokenKind,
    /// The user (personal, refresh) or the organization or team account it acts as.
    pub user: String,
    pub org: Option<String>,
    pub team: Option<String>,
    pub name: String,
    pub description: String,
    pub admin: bool,
    pub role_id: Option<String>,
    /// Seconds from now; `None`: never expires.
    pub expires_in: Option<i64>,
    pub created_by: String,
    /// A refresh token's sealed upstream refresh token.
    pub upstream: Option<Vec<u8>>,
}

impl TokenSpec {
    pub fn personal(user: &str, description: &str, expires_in: Option<i64>) -> Self {
        TokenSpec {
            kind: TokenKind::Personal,
            user: user.to_owned(),
            org: None,
            team: None,
            name: String::new(),
            description: description.to_owned(),
            admin: false,
            role_id: None,
            expires_in,
            created_by: user.to_owned(),
            upstream: None,
        }
    }
}

/// The account name a team token acts as (what `GET /api/user` answers as `githubLogin`).
pub fn team_account(team: &str) -> String {
    format!("team-account:{team}")
}

fn bad_user(user: &str) -> EngineError {
    EngineError::Invalid(format!(
        "invalid user name {user:?}: use letters, digits, '-', '_' and '.'"
    ))
}

impl Engine {
    /// Stores a new token; its value is returned once.
    /// `notes` record the creation when it is one a person asked for (not a login's).
    pub async fn issue_token(
        &self,
        spec: TokenSpec,
        notes: Notes,
    ) -> EngineResult<(TokenView, String)> {
        if let Some(e) = spec.expires_in
            && !(1..=MAX_TOKEN_LIFETIME).contains(&e)
        {
            return Err(EngineError::Invalid(
                "a token's expiry must be in the future and at most two years away".into(),
            ));
        }
        let token = crypto::new_token("pul-");
        let id = format!("tok-{}", hex::encode(crypto::random_bytes::<6>()));
        let now = self.now();
        let new = NewToken {
            id: id.clone(),
            kind: spec.kind,
            user: spec.user,
            org: spec.org,
            team: spec.team,
            name: spec.name,
            description: spec.description,
            admin: spec.admin,
            role_id: spec.role_id,
            created_by: spec.created_by,
            hash: crypto::sha256(token.as_bytes()).to_vec(),
            created_at: now,
            expires_at: spec.expires_in.map(|s| now + s),
            upstream: spec.upstream,
            notes,
        };
        self.store
            .create_token(new.clone())
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    EngineError::Conflict(format!("a token named {:?} already exists", new.name))
                }
                other => other.into(),
            })?;
        let view = TokenView {
            id,
            kind: new.kind.as_str(),
            user: new.user,
            org: new.org,
            team: new.team,
            name: new.name,
            description: new.description,
            admin: new.admin,
            created_by: new.created_by,
            created_at: now,
            expires_at: new.expires_at,
            last_used_at: None,
            revoked_at: None,
        };
        Ok((view, token))
    }

    /// `pbackend tokens create --user U [--org O]`: a personal token for `user`, creating
    /// the user (and, when absent, their membership of `org` with `role`) on the way.
    pub async fn create_token(
        &self,
        user: &str,
        org: Option<&str>,
        role: OrgRole,
        description: &str,
        expires_in: Option<i64>,
    ) -> EngineResult<(TokenView, String)> {
        names::check_org(user).map_err(|_| bad_user(user))?;
        self.ensure_user(user).await?;
        let org = org.unwrap_or(&self.cfg.org);
        names::check_org(org)?;
        let memberships = self.store.memberships(user).await?;
        if !memberships.memberships.iter().any(|m| m.org == org) {
            self.store
                .set_member(org, user, role, None, self.now(), Notes::none())
                .await?;
        }
        let notes = self.note(
            &Identity::operator(),
            None,
            AuditKind::TokenCreated,
            format!("personal access token created for {user}"),
        );
        self.issue_token(
            TokenSpec {
                created_by: "operator".into(),
                ..TokenSpec::personal(user, description, expires_in)
            },
            notes,
        )
        .await
    }

    /// Tokens, newest last; `user` narrows to one user's.
    pub async fn list_tokens(&self, user: Option<String>) -> EngineResult<Vec<TokenView>> {
        Ok(self
            .store
            .list_tokens(user)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub async fn list_tokens_where(&self, filter: TokenFilter) -> EngineResult<Vec<TokenView>> {
        Ok(self
            .store
            .list_tokens_of(filter)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Revokes tokens; a running server refuses them from its next request on.
    pub async fn revoke_tokens(
        &self,
        caller: &Identity,
        org: Option<&str>,
        which: TokenSelector,
    ) -> EngineResult<Vec<String>> {
        let what = match &which {
            TokenSelector::Id(id) => format!("access token {id} revoked"),
            TokenSelector::User(u) => format!("every access token of {u} revoked"),
            TokenSelector::Team { org, team } => {
                format!("every access token of team {org}/{team} revoked")
            }
        };
        let notes = self.note(caller, org, AuditKind::TokenRevoked, what);
        Ok(self.store.revoke_tokens(which, self.now(), notes).await?)
    }

    // ------------------------------------------------------------- HTTP use cases

    /// `GET /api/user/tokens`: the caller's own tokens.
    pub async fn my_tokens(&self, caller: &Identity) -> EngineResult<Vec<TokenView>> {
        self.require_person(caller)?;
        self.list_tokens_where(TokenFilter {
            user: Some(caller.user.clone()),
            kind: Some(TokenKind::Personal),
            ..Default::default()
        })
        .await
    }

    /// `POST /api/user/tokens`.
    pub async fn create_my_token(
        &self,
        caller: &Identity,
        description: &str,
        expires_at: i64,
    ) -> EngineResult<(TokenView, String)> {
        self.require_person(caller)?;
        let expires_in = self.expiry(expires_at)?;
        let notes = self.note(
            caller,
            None,
            AuditKind::TokenCreated,
            format!("personal access token created for {}", caller.user),
        );
        self.issue_token(
            TokenSpec::personal(&caller.user, description, expires_in),
            notes,
        )
        .await
    }

    /// `DELETE /api/user/tokens/{id}`: the caller's own tokens only.
    pub async fn delete_my_token(&self, caller: &Identity, id: &str) -> EngineResult<()> {
        self.require_person(caller)?;
        let mine = self
            .list_tokens_where(TokenFilter {
                user: Some(caller.user.clone()),
                ..Default::default()
            })
            .await?
            .into_iter()
            .any(|t| t.id == id && (t.kind == "personal" || t.kind == "refresh"));
        if !mine {
            return Err(EngineError::NotFound("Token not found".into()));
        }
        self.revoke_tokens(caller, None, TokenSelector::Id(id.to_owned()))
            .await?;
        Ok(())
    }

    /// `GET /api/orgs/{org}/tokens` and `…/teams/{team}/tokens`.
    pub async fn machine_tokens(
        &self,
        org: &str,
        team: Option<&str>,
    ) -> EngineResult<Vec<TokenView>> {
        if let Some(t) = team {
            // A team that does not exist is a 404, not an empty list.
            self.team(org, t).await?;
        }
        self.list_tokens_where(TokenFilter {
            kind: Some(if team.is_some() {
                TokenKind::Team
            } else {
                TokenKind::Organization
            }),
            org: Some(org.to_owned()),
            team: team.map(str::to_owned),
            ..Default::default()
        })
        .await
    }

    /// `POST /api/orgs/{org}/tokens` and `…/teams/{team}/tokens`.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_machine_token(
        &self,
        caller: &Identity,
        org: &str,
        team: Option<&str>,
        name: &str,
        description: &str,
        admin: bool,
        role_id: Option<String>,
        expires_at: i64,
    ) -> EngineResult<(TokenView, String)> {
        if name.is_empty() || name.chars().count() > 40 {
            return Err(EngineError::Invalid(
                "a token name is required, at most 40 characters".into(),
            ));
        }
        if let Some(team) = team
            && self.store.get_team(org, team).await?.is_none()
        {
            return Err(EngineError::NotFound(format!("team '{team}' not found")));
        }
        if let Some(id) = &role_id
            && self.store.get_role(org, id).await?.is_none()
        {
            return Err(EngineError::NotFound(format!("role '{id}' not found")));
        }
        let expires_in = self.expiry(expires_at)?;
        let (kind, user) = match team {
            Some(t) => (TokenKind::Team, team_account(t)),
            None => (TokenKind::Organization, org.to_owned()),
        };
        let whose = match team {
            Some(t) => format!("team {t}"),
            None => format!("organization {org}"),
        };
        let notes = self.note(
            caller,
            Some(org),
            AuditKind::TokenCreated,
            format!("access token '{name}' created for {whose}"),
        );
        self.issue_token(
            TokenSpec {
                kind,
                user,
                org: Some(org.to_owned()),
                team: team.map(str::to_owned),
                name: name.to_owned(),
                description: description.to_owned(),
                admin: admin && team.is_none(),
                role_id,
                expires_in,
                created_by: caller.user.clone(),
                upstream: None,
            },
            notes,
        )
        .await
    }

    /// `DELETE /api/orgs/{org}/tokens/{id}` and `…/teams/{team}/tokens/{id}`.
    pub async fn delete_machine_token(
        &self,
        caller: &Identity,
        org: &str,
        team: Option<&str>,
        id: &str,
    ) -> EngineResult<()> {
        let found = self
            .machine_tokens(org, team)
            .await?
            .into_iter()
            .any(|t| t.id == id);
        if !found {
            return Err(EngineError::NotFound("Token not found".into()));
        }
        self.revoke_tokens(caller, Some(org), TokenSelector::Id(id.to_owned()))
            .await?;
        Ok(())
    }

    /// The wire's `expires` (unix seconds, 0 = never) as seconds from now.
    fn expiry(&self, expires_at: i64) -> EngineResult<Option<i64>> {
        if expires_at == 0 {
            return Ok(None);
        }
        let left = expires_at - self.now();
        if left <= 0 || left > MAX_TOKEN_LIFETIME {
            return Err(EngineError::Invalid(
                "expires must be in the future and at most two years away (0: never)".into(),
            ));
        }
        Ok(Some(left))
    }

    fn require_person(&self, caller: &Identity) -> EngineResult<()> {
        if caller.is_user() || caller.is_instance_admin() {
            Ok(())
        } else {
            Err(EngineError::Forbidden(
                "personal tokens belong to users; this token is a machine token".into(),
            ))
        }
    }
}
