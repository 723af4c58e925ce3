//! Ways in besides a stored API token:
//!
//! * **Browser login** (`--auth-mode oidc|google`): the CLI opens `/cli-login`; pbackend runs
//!   the authorization-code flow with PKCE against the provider, validates the ID token
//!   (issuer, audience, expiry, nonce, signature), links the user by issuer and subject,
//!   applies the group mapping, and hands the CLI a personal token on its local port. The
//!   provider's refresh token is kept, sealed with the master key, behind a pbackend refresh
//!   token: each refresh asks the provider again, so a user disabled there or moved out of a
//!   group loses access at their next refresh.
//! * **Token exchange** at `/api/oauth/token` (RFC 8693, as `pulumi login --oidc-token`
//!   sends it): an ID token from an issuer an organization trusts becomes an organization,
//!   team or personal token, as the organization's trust policy for that issuer says.
//! * **Refresh** at the same endpoint (`grant_type=refresh_token`).
//! * **JWT bearer** (`--auth-mode jwt`): a JWT presented as the API token, verified with a
//!   configured key; its claims name the user and their groups.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use serde_json::{Map, Value};

use crate::engine::access::http::Http;
use crate::engine::access::identity::Identity;
use crate::engine::access::jwt::{self, Keys, Verifier};
use crate::engine::access::tokens::{TokenSpec, team_account};
use crate::engine::access::views::TrustPolicyView;
use crate::engine::{Engine, EngineError, EngineResult, crypto, names};
use crate::store::access::{LoginSession, NewUser, TrustPolicyRow};
use crate::store::{Notes, StoreError, TokenSelector};
use crate::types::{OrgRole, TokenKind};

/// How long a console session signed in through the identity provider lasts (its token's
/// lifetime; the cookie's too).
pub const CONSOLE_SESSION_TTL: i64 = 12 * 3600;

/// Where to send a browser after signing in: `next` when it is a path on this site, never
/// `//host` or `scheme:` (an open redirect); `/` otherwise.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

/// Where a finished browser login goes.
pub enum LoginEnd {
    /// The CLI's local port, with its tokens in the query.
    Cli(String),
    /// The web console: a session with this token, then this path.
    Console { token: String, next: String },
}

/// Where a group of the identity provider puts its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupTarget {
    Org { org: String, role: OrgRole },
    Team { org: String, team: String },
}

/// `GROUP=org:ORG:ROLE` or `GROUP=team:ORG/TEAM`.
pub fn parse_group_map(s: &str) -> Result<(String, GroupTarget), String> {
    let (group, target) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: use GROUP=org:ORG:ROLE or GROUP=team:ORG/TEAM"))?;
    let target = if let Some(rest) = target.strip_prefix("org:") {
        let (org, role) = rest.split_once(':').unwrap_or((rest, "member"));
        let role = OrgRole::parse(role).ok_or_else(|| format!("{s:?}: unknown role {role:?}"))?;
        GroupTarget::Org {
            org: org.to_owned(),
            role,
        }
    } else if let Some(rest) = target.strip_prefix("team:") {
        let (org, team) = rest
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: a team is ORG/TEAM"))?;
        GroupTarget::Team {
            org: org.to_owned(),
            team: team.to_owned(),
        }
    } else {
        return Err(format!("{s:?}: the target starts with org: or team:"));
    };
    Ok((group.to_owned(), target))
}

/// How users log in with an OpenID provider.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// Scopes beyond `openid` (`profile email offline_access` by default).
    pub scopes: Vec<String>,
    /// The claim whose value becomes the login (`preferred_username`, `email`, ...).
    pub login_claim: String,
    pub groups_claim: String,
    /// Google: only this hosted domain (`hd` claim).
    pub hosted_domain: Option<String>,
}

/// How bearer JWTs are verified and read.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub keys: Keys,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub login_claim: String,
    pub groups_claim: String,
}

#[derive(Debug, Clone, Default)]
pub struct LoginConfig {
    pub oidc: Option<OidcSettings>,
    pub jwt: Option<JwtSettings>,
    /// Group → where its members go (OIDC and JWT logins).
    pub group_map: Vec<(String, GroupTarget)>,
    /// The URL users reach pbackend at (for the provider's redirect back).
    pub public_url: Option<String>,
    /// Lifetime of the access token a browser login or a refresh issues, seconds.
    pub login_token_ttl: i64,
    /// Lifetime of refresh tokens, seconds.
    pub refresh_token_ttl: i64,
}

/// The default lifetimes: a day for access tokens from a login, 30 days for refresh tokens.
pub const DEFAULT_LOGIN_TOKEN_TTL: i64 = 24 * 3600;
pub const DEFAULT_REFRESH_TOKEN_TTL: i64 = 30 * 24 * 3600;

const LOGIN_SESSION_TTL: i64 = 600;

/// Token types of RFC 8693 as the CLI names them.
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const TOKEN_TYPE_PREFIX: &str = "urn:pulumi:token-type:access_token:";
const AUDIENCE_PREFIX: &str = "urn:pulumi:org:";
pub const EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// What `/api/oauth/token` answers.
#[derive(Debug, Clone)]
pub struct Grant {
    pub access_token: String,
    pub issued_token_type: String,
    pub expires_in: i64,
    pub scope: String,
    pub refresh_token: Option<String>,
}

/// A refusal at `/api/oauth/token`, as RFC 6749 §5.2 names it.
#[derive(Debug)]
pub struct GrantError {
    pub error: &'static str,
    pub description: String,
}

impl GrantError {
    fn invalid_grant(d: impl Into<String>) -> Self {
        GrantError {
            error: "invalid_grant",
            description: d.into(),
        }
    }

    fn invalid_request(d: impl Into<String>) -> Self {
        GrantError {
            error: "invalid_request",
            description: d.into(),
        }
    }

    fn invalid_target(d: impl Into<String>) -> Self {
        GrantError {
            error: "invalid_target",
            description: d.into(),
        }
    }
}

impl From<EngineError> for GrantError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Unauthenticated(d) | EngineError::Forbidden(d) => {
                GrantError::invalid_grant(d)
            }
            EngineError::Invalid(d) | EngineError::NotFound(d) => GrantError::invalid_request(d),
            EngineError::Unavailable(d) => GrantError {
                error: "temporarily_unavailable",
                description: d,
            },
            other => GrantError {
                error: "server_error",
                description: other.to_string(),
            },
        }
    }
}

/// The exchange request, field for field as the CLI sends it.
#[derive(Debug, Clone, Default)]
pub struct ExchangeRequest {
    pub subject_token: String,
    pub subject_token_type: String,
    pub requested_token_type: String,
    pub audience: String,
    pub scope: String,
    pub expiration: Option<i64>,
}

/// Runtime parts of logins: the HTTP client, key caches and the provider's metadata.
pub struct LoginRuntime {
    pub(crate) http: Http,
    pub(crate) verifier: Verifier,
    metadata: Mutex<Option<(CoreProviderMetadata, Instant)>>,
    /// JWT bearer credentials already verified and applied: token hash → (login, expiry).
    bearers: Mutex<HashMap<[u8; 32], (String, i64)>>,
}

impl LoginRuntime {
    pub fn new() -> EngineResult<Self> {
        let http = Http::new()?;
        Ok(LoginRuntime {
            verifier: Verifier::new(http.clone()),
            http,
            metadata: Mutex::new(None),
            bearers: Mutex::new(HashMap::new()),
        })
    }
}

/// The login a claim value becomes: what a stack namespace may be named.
fn login_from(value: &str) -> EngineResult<String> {
    let login: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    names::check_org(&login)
        .map_err(|_| EngineError::Unauthenticated(format!("no usable login in {value:?}")))?;
    Ok(login)
}

fn payload_claims(id_token: &str) -> Map<String, Value> {
    jwt::unverified_claims(id_token).unwrap_or_default()
}

impl Engine {
    fn oidc(&self) -> EngineResult<&OidcSettings> {
        self.cfg.login.oidc.as_ref().ok_or_else(|| {
            EngineError::NotFound(
                "browser login is not configured on this server; log in with an access token \
                 (PULUMI_ACCESS_TOKEN)"
                    .into(),
            )
        })
    }

    fn redirect_url(&self) -> EngineResult<String> {
        let base = self
            .cfg
            .login
            .public_url
            .as_deref()
            .ok_or_else(|| EngineError::Internal("browser login needs --public-url".into()))?;
        Ok(format!("{}/api/auth/callback", base.trim_end_matches('/')))
    }

    /// The provider's metadata (with its keys), fetched once and again when `refresh`.
    async fn provider(&self, refresh: bool) -> EngineResult<CoreProviderMetadata> {
        let rt = &self.login;
        if !refresh && let Some((m, _)) = rt.metadata.lock().ok().and_then(|g| g.clone()) {
            return Ok(m);
        }
        let s = self.oidc()?;
        let issuer = IssuerUrl::new(s.issuer.clone())
            .map_err(|e| EngineError::Internal(format!("--oidc-issuer: {e}")))?;
        let http = rt.http.clone();
        let client = move |req| {
            let http = http.clone();
            async move { http.call(req).await }
        };
        let m = CoreProviderMetadata::discover_async(issuer, &client)
            .await
            .map_err(|e| EngineError::Unavailable(format!("OpenID discovery failed: {e}")))?;
        if let Ok(mut g) = rt.metadata.lock() {
            *g = Some((m.clone(), Instant::now()));
        }
        Ok(m)
    }

    fn client(
        &self,
        m: CoreProviderMetadata,
    ) -> EngineResult<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
    > {
        let s = self.oidc()?;
        let redirect = RedirectUrl::new(self.redirect_url()?)
            .map_err(|e| EngineError::Internal(format!("--public-url: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            m,
            ClientId::new(s.client_id.clone()),
            s.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect))
    }

    /// `GET /cli-login`: remembers what the CLI asked for and returns the provider's
    /// authorization URL to send the browser to.
    pub async fn start_browser_login(
        &self,
        cli_port: u16,
        cli_nonce: &str,
        description: &str,
    ) -> EngineResult<String> {
        if cli_port == 0 || cli_nonce.is_empty() || cli_nonce.len() > 256 {
            return Err(EngineError::Invalid(
                "cliSessionPort and cliSessionNonce are required".into(),
            ));
        }
        self.start_login(cli_port, cli_nonce, description).await
    }

    /// Whether people can sign in through the identity provider (`--auth-mode oidc`).
    pub fn browser_login_enabled(&self) -> bool {
        self.cfg.login.oidc.is_some()
    }

    /// The web console's sign-in at the identity provider: the same flow as the CLI's,
    /// ending in a console session (see [`LoginEnd::Console`]) that returns to `next`, a
    /// path on this site.
    pub async fn start_console_login(&self, next: &str) -> EngineResult<String> {
        if local_path(Some(next)) != next || next.len() > 256 {
            return Err(EngineError::Invalid(
                "next must be a path on this site".into(),
            ));
        }
        // A session without a CLI port is the console's; its nonce field keeps `next`.
        self.start_login(0, next, "console session").await
    }

    async fn start_login(
        &self,
        cli_port: u16,
        cli_nonce: &str,
        description: &str,
    ) -> EngineResult<String> {
        let s = self.oidc()?.clone();
        let client = self.client(self.provider(false).await?)?;
        let state = hex::encode(crypto::random_bytes::<16>());
        let nonce = hex::encode(crypto::random_bytes::<16>());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (st, no) = (state.clone(), nonce.clone());
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(st),
                move || Nonce::new(no),
            )
            .set_pkce_challenge(challenge);
        for scope in &s.scopes {
            req = req.add_scope(Scope::new(scope.clone()));
        }
        let (url, _, _) = req.url();
        let now = self.now();
        self.store
            .create_login_session(LoginSession {
                id: state,
                nonce,
                pkce_verifier: verifier.secret().clone(),
                cli_port: i64::from(cli_port),
                cli_nonce: cli_nonce.to_owned(),
                description: description.chars().take(200).collect(),
                created_at: now,
                expires_at: now + LOGIN_SESSION_TTL,
            })
            .await?;
        Ok(url.to_string())
    }

    /// The provider's redirect back: exchanges the code, validates the ID token, signs the
    /// user in and returns where to send the browser (the CLI's local port, with a token).
    pub async fn finish_browser_login(&self, code: &str, state: &str) -> EngineResult<LoginEnd> {
        let session = self
            .store
            .take_login_session(state, self.now())
            .await?
            .ok_or_else(|| {
                EngineError::Unauthenticated(
                    "this login has expired or was already used; run `pulumi login` again".into(),
                )
            })?;
        let client = self.client(self.provider(false).await?)?;
        let http = self.login.http.clone();
        let call = move |req| {
            let http = http.clone();
            async move { http.call(req).await }
        };
        let resp = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| EngineError::Internal(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(session.pkce_verifier.clone()))
            .request_async(&call)
            .await
            .map_err(|e| EngineError::Unauthenticated(format!("the provider refused: {e}")))?;
        let id_token = resp
            .id_token()
            .ok_or_else(|| EngineError::Unauthenticated("the provider sent no ID token".into()))?
            .clone();
        let nonce = Nonce::new(session.nonce.clone());
        // A key the cached metadata does not know: the provider rotated; fetch it again.
        let checked = {
            let v = client.id_token_verifier();
            id_token.claims(&v, &nonce).map(|c| c.subject().to_string())
        };
        let subject = match checked {
            Ok(s) => s,
            Err(_) => {
                let fresh = self.client(self.provider(true).await?)?;
                let v = fresh.id_token_verifier();
                id_token
                    .claims(&v, &nonce)
                    .map_err(|e| EngineError::Unauthenticated(format!("ID token: {e}")))?
                    .subject()
                    .to_string()
            }
        };
        let claims = payload_claims(&id_token.to_string());
        let login = self.sign_in(&subject, &claims).await?;
        let upstream = resp
            .refresh_token()
            .map(|r| self.seal_upstream(r.secret().as_bytes()))
            .transpose()?;
        if session.cli_port == 0 {
            // The console's: a personal token that lasts as long as a console session.
            let ttl = self.cfg.login.login_token_ttl.min(CONSOLE_SESSION_TTL);
            let (_, access) = self
                .issue_token(
                    TokenSpec {
                        created_by: login.clone(),
                        ..TokenSpec::personal(&login, &session.description, Some(ttl))
                    },
                    Notes::none(),
                )
                .await?;
            tracing::info!(user = %login, "console login");
            return Ok(LoginEnd::Console {
                token: access,
                next: session.cli_nonce,
            });
        }
        let ttl = self.cfg.login.login_token_ttl;
        let (_, access) = self
            .issue_token(
                TokenSpec {
                    created_by: login.clone(),
                    ..TokenSpec::personal(&login, &session.description, Some(ttl))
                },
                Notes::none(),
            )
            .await?;
        let refresh = self.issue_refresh_token(&login, upstream).await?;
        tracing::info!(user = %login, "browser login");
        Ok(LoginEnd::Cli(format!(
            "http://127.0.0.1:{}/?accessToken={}&nonce={}&refreshToken={}",
            session.cli_port,
            urlencode(&access),
            urlencode(&session.cli_nonce),
            urlencode(&refresh)
        )))
    }

    async fn issue_refresh_token(
        &self,
        login: &str,
        upstream: Option<Vec<u8>>,
    ) -> EngineResult<String> {
        let (_, refresh) = self
            .issue_token(
                TokenSpec {
                    kind: TokenKind::Refresh,
                    upstream,
                    created_by: login.to_owned(),
                    ..TokenSpec::personal(
                        login,
                        "refresh token",
                        Some(self.cfg.login.refresh_token_ttl),
                    )
                },
                Notes::none(),
            )
            .await?;
        Ok(refresh)
    }

    /// `pbackend tokens create --refresh`: an access token and a refresh token for a user
    /// (what a credentials store holds), for clients that refresh.
    pub async fn create_refreshable_token(
        &self,
        user: &str,
        expires_in: i64,
    ) -> EngineResult<(String, String)> {
        self.ensure_user(user).await?;
        let (_, access) = self
            .issue_token(
                TokenSpec {
                    created_by: "operator".into(),
                    ..TokenSpec::personal(user, "refreshable", Some(expires_in))
                },
                Notes::none(),
            )
            .await?;
        let refresh = self.issue_refresh_token(user, None).await?;
        Ok((access, refresh))
    }

    /// Links the provider's subject to a user (creating or refreshing it), applies the group
    /// mapping; returns the login. A disabled user is refused.
    async fn sign_in(&self, subject: &str, claims: &Map<String, Value>) -> EngineResult<String> {
        let s = self.oidc()?.clone();
        if let Some(hd) = &s.hosted_domain
            && jwt::claim(claims, "hd") != Some(hd.as_str())
        {
            return Err(EngineError::Forbidden(format!(
                "only accounts of {hd} may log in"
            )));
        }
        let issuer = s.issuer.clone();
        let login = match self.store.user_by_subject(&issuer, subject).await? {
            Some(u) => u.login,
            None => {
                let value = jwt::claim(claims, &s.login_claim).ok_or_else(|| {
                    EngineError::Unauthenticated(format!(
                        "the ID token has no {} claim",
                        s.login_claim
                    ))
                })?;
                let login = login_from(value)?;
                if let Some(existing) = self.store.get_user(&login).await?
                    && existing.subject.as_deref() != Some(subject)
                    && existing.issuer.is_some()
                {
                    return Err(EngineError::Conflict(format!(
                        "the login {login} belongs to another account"
                    )));
                }
                login
            }
        };
        let user = self
            .store
            .upsert_user(NewUser {
                login: login.clone(),
                name: jwt::claim(claims, "name").unwrap_or(&login).to_owned(),
                email: jwt::claim(claims, "email").unwrap_or("").to_owned(),
                issuer: Some(issuer),
                subject: Some(subject.to_owned()),
                now: self.now(),
                logged_in: true,
            })
            .await?;
        if user.disabled_at.is_some() {
            return Err(EngineError::Forbidden(format!("{login} is disabled")));
        }
        let groups = jwt::claim_list(claims, &s.groups_claim);
        self.apply_groups(&login, &groups).await?;
        Ok(login)
    }

    /// Makes the user's places in the mapped organizations and teams follow their groups:
    /// a mapped target they are no longer grouped into is taken away.
    pub(crate) async fn apply_groups(&self, login: &str, groups: &[String]) -> EngineResult<()> {
        let map = &self.cfg.login.group_map;
        if map.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let mut orgs: BTreeMap<String, Option<OrgRole>> = BTreeMap::new();
        let mut teams: BTreeMap<(String, String), bool> = BTreeMap::new();
        for (group, target) in map {
            let member = groups.iter().any(|g| g == group);
            match target {
                GroupTarget::Org { org, role } => {
                    let e = orgs.entry(org.clone()).or_insert(None);
                    if member {
                        *e = Some(match (*e, role) {
                            (Some(OrgRole::Admin), _) | (_, OrgRole::Admin) => OrgRole::Admin,
                            (_, r) => *r,
                        });
                    }
                }
                GroupTarget::Team { org, team } => {
                    let e = teams.entry((org.clone(), team.clone())).or_insert(false);
                    *e |= member;
                    if member {
                        orgs.entry(org.clone())
                            .or_insert(None)
                            .get_or_insert(OrgRole::Member);
                    }
                }
            }
        }
        let current = self.store.memberships(login).await?;
        for (org, role) in &orgs {
            let has = current.memberships.iter().find(|m| &m.org == org);
            match (role, has) {
                (Some(r), Some(m)) if m.role == *r => {}
                (Some(r), _) => {
                    self.store.ensure_org(org, now).await?;
                    self.store
                        .set_member(org, login, *r, None, now, Notes::none())
                        .await?;
                }
                (None, Some(_)) => {
                    self.store.remove_member(org, login, Notes::none()).await?;
                }
                (None, None) => {}
            }
        }
        for ((org, team), member) in &teams {
            let has = current.teams.iter().any(|(o, t, _)| o == org && t == team);
            if *member && !has {
                if self.store.get_team(org, team).await?.is_some() {
                    self.store
                        .set_team_member(org, team, login, "member", Notes::none())
                        .await?;
                } else {
                    tracing::warn!(%org, %team, "a group maps to a team that does not exist");
                }
            } else if !*member && has {
                self.store
                    .remove_team_member(org, team, login, Notes::none())
                    .await?;
            }
        }
        Ok(())
    }

    fn seal_upstream(&self, token: &[u8]) -> EngineResult<Vec<u8>> {
        Ok(self.master()?.seal_secret(token))
    }

    /// `grant_type=refresh_token`: a new access token (and a new refresh token) for the
    /// refresh token's user, after asking the provider again when the login came from one.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Grant, GrantError> {
        let hash = crypto::sha256(refresh_token.as_bytes());
        let principal = self
            .store
            .resolve_token(hash.to_vec())
            .await
            .map_err(EngineError::from)?
            .filter(|p| p.token.kind == TokenKind::Refresh)
            .ok_or_else(|| GrantError::invalid_grant("unknown refresh token"))?;
        let now = self.now();
        let t = &principal.token;
        if t.revoked_at.is_some() || t.expires_at.is_some_and(|e| e <= now) {
            return Err(GrantError::invalid_grant("the refresh token has expired"));
        }
        if principal
            .user
            .as_ref()
            .is_some_and(|u| u.disabled_at.is_some())
        {
            return Err(GrantError::invalid_grant("the user is disabled"));
        }
        let login = t.user.clone();
        // A refresh token is used once: the next one replaces it.
        self.store
            .revoke_tokens(TokenSelector::Id(t.id.clone()), self.now(), Notes::none())
            .await
            .map_err(EngineError::from)?;
        let mut upstream = None;
        if let Some(sealed) = &t.upstream {
            let rt = self
                .master()?
                .open_secret(sealed)
                .ok_or_else(|| GrantError::invalid_grant("log in again"))?;
            let rt =
                String::from_utf8(rt).map_err(|_| GrantError::invalid_grant("log in again"))?;
            upstream = self.revalidate(&login, &rt).await?;
        }
        let ttl = self.cfg.login.login_token_ttl;
        let (_, access) = self
            .issue_token(
                TokenSpec {
                    created_by: login.clone(),
                    ..TokenSpec::personal(&login, "refreshed", Some(ttl))
                },
                Notes::none(),
            )
            .await?;
        let refresh = self.issue_refresh_token(&login, upstream).await?;
        Ok(Grant {
            access_token: access,
            issued_token_type: format!("{TOKEN_TYPE_PREFIX}personal"),
            expires_in: ttl,
            scope: String::new(),
            refresh_token: Some(refresh),
        })
    }

    /// Asks the provider whether the user may still log in (a refresh grant with its token);
    /// applies their groups; returns the provider's next refresh token, sealed.
    async fn revalidate(&self, login: &str, upstream: &str) -> Result<Option<Vec<u8>>, GrantError> {
        let client = self.client(self.provider(false).await?)?;
        let http = self.login.http.clone();
        let call = move |req| {
            let http = http.clone();
            async move { http.call(req).await }
        };
        let rt = RefreshToken::new(upstream.to_owned());
        let resp = client
            .exchange_refresh_token(&rt)
            .map_err(|e| GrantError::from(EngineError::Internal(e.to_string())))?
            .request_async(&call)
            .await
            .map_err(|e| {
                tracing::info!(user = %login, error = %e, "the identity provider refused a refresh");
                GrantError::invalid_grant("the identity provider no longer accepts this login")
            })?;
        if let Some(id_token) = resp.id_token() {
            let v = client.id_token_verifier();
            let claims = id_token
                .claims(&v, |_: Option<&Nonce>| Ok(()))
                .map_err(|e| GrantError::invalid_grant(format!("ID token: {e}")))?;
            let _ = claims;
            let raw = payload_claims(&id_token.to_string());
            let groups = jwt::claim_list(&raw, &self.oidc()?.groups_claim);
            self.apply_groups(login, &groups).await?;
        }
        let next = resp
            .refresh_token()
            .map(|r| r.secret().clone())
            .unwrap_or_else(|| upstream.to_owned());
        Ok(Some(self.seal_upstream(next.as_bytes())?))
    }

    /// `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`.
    pub async fn exchange(&self, req: ExchangeRequest) -> Result<Grant, GrantError> {
        if req.subject_token_type != ID_TOKEN_TYPE && req.subject_token_type != JWT_TOKEN_TYPE {
            return Err(GrantError::invalid_request(format!(
                "unsupported subject_token_type {:?}",
                req.subject_token_type
            )));
        }
        let org = req
            .audience
            .strip_prefix(AUDIENCE_PREFIX)
            .filter(|o| !o.is_empty())
            .ok_or_else(|| {
                GrantError::invalid_target(format!("audience must be {AUDIENCE_PREFIX}<org>"))
            })?
            .to_owned();
        let kind = match req.requested_token_type.strip_prefix(TOKEN_TYPE_PREFIX) {
            Some("organization") => TokenKind::Organization,
            Some("team") => TokenKind::Team,
            Some("personal") => TokenKind::Personal,
            _ => {
                return Err(GrantError::invalid_request(format!(
                    "unsupported requested_token_type {:?}",
                    req.requested_token_type
                )));
            }
        };
        let (team, user) = match req.scope.split_once(':') {
            Some(("team", t)) => (Some(t.to_owned()), None),
            Some(("user", u)) => (None, Some(u.to_owned())),
            _ if req.scope.is_empty() => (None, None),
            _ => {
                return Err(GrantError::invalid_request(
                    "scope is team:<name> or user:<login>",
                ));
            }
        };
        let unverified = jwt::unverified_claims(&req.subject_token)?;
        let issuer = jwt::claim(&unverified, "iss")
            .ok_or_else(|| GrantError::invalid_grant("the token has no issuer"))?
            .to_owned();
        let policies: Vec<TrustPolicyRow> = self
            .store
            .list_trust_policies(Some(&org))
            .await
            .map_err(EngineError::from)?
            .into_iter()
            .filter(|p| p.issuer == issuer && p.token_kind == kind)
            .collect();
        if policies.is_empty() {
            return Err(GrantError::invalid_grant(format!(
                "organization {org} does not trust {issuer} for {} tokens",
                kind.as_str()
            )));
        }
        let mut last = None;
        for p in &policies {
            let claims = match self
                .login
                .verifier
                .verify(
                    &req.subject_token,
                    &Keys::Issuer(issuer.clone()),
                    Some(&issuer),
                    Some(&p.audience),
                )
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    last = Some(GrantError::from(e));
                    continue;
                }
            };
            if !rules_match(&p.rules, &claims) {
                last = Some(GrantError::invalid_grant(
                    "the token's claims do not satisfy the trust policy",
                ));
                continue;
            }
            match kind {
                TokenKind::Team if team.as_deref() != p.team.as_deref() || team.is_none() => {
                    last = Some(GrantError::invalid_grant(
                        "the policy does not allow that team",
                    ));
                    continue;
                }
                TokenKind::Personal if user.as_deref() != p.login.as_deref() || user.is_none() => {
                    last = Some(GrantError::invalid_grant(
                        "the policy does not allow that user",
                    ));
                    continue;
                }
                _ => {}
            }
            let expires_in = req.expiration.unwrap_or(7200).clamp(60, p.max_expiration);
            let sub = jwt::claim(&claims, "sub").unwrap_or("?");
            let name = format!("oidc-{}-{}", p.id, hex::encode(crypto::random_bytes::<4>()));
            let spec = match kind {
                TokenKind::Organization => TokenSpec {
                    kind,
                    user: org.clone(),
                    org: Some(org.clone()),
                    team: None,
                    name,
                    description: format!("exchanged for {issuer} subject {sub}"),
                    admin: false,
                    role_id: None,
                    expires_in: Some(expires_in),
                    created_by: format!("oidc:{issuer}"),
                    upstream: None,
                },
                TokenKind::Team => {
                    let t = team.clone().unwrap_or_default();
                    TokenSpec {
                        kind,
                        user: team_account(&t),
                        org: Some(org.clone()),
                        team: Some(t),
                        name,
                        description: format!("exchanged for {issuer} subject {sub}"),
                        admin: false,
                        role_id: None,
                        expires_in: Some(expires_in),
                        created_by: format!("oidc:{issuer}"),
                        upstream: None,
                    }
                }
                _ => {
                    let login = user.clone().unwrap_or_default();
                    if self
                        .store
                        .get_user(&login)
                        .await
                        .map_err(EngineError::from)?
                        .is_none_or(|u| u.disabled_at.is_some())
                    {
                        return Err(GrantError::invalid_grant(format!("no active user {login}")));
                    }
                    TokenSpec {
                        created_by: format!("oidc:{issuer}"),
                        ..TokenSpec::personal(
                            &login,
                            &format!("exchanged for {issuer} subject {sub}"),
                            Some(expires_in),
                        )
                    }
                }
            };
            let (_, token) = self.issue_token(spec, Notes::none()).await?;
            tracing::info!(%org, %issuer, subject = %sub, kind = kind.as_str(), "token exchange");
            return Ok(Grant {
                access_token: token,
                issued_token_type: req.requested_token_type.clone(),
                expires_in,
                scope: req.scope.clone(),
                refresh_token: None,
            });
        }
        Err(last.unwrap_or_else(|| GrantError::invalid_grant("no trust policy matched")))
    }

    /// `--auth-mode jwt`: the identity a bearer JWT stands for, or `None` when JWT bearers
    /// are not configured or the credential is not a JWT.
    pub(crate) async fn jwt_identity(&self, token: &str) -> EngineResult<Option<Identity>> {
        let Some(s) = self.cfg.login.jwt.clone() else {
            return Ok(None);
        };
        if !jwt::looks_like_jwt(token) {
            return Ok(None);
        }
        let hash = crypto::sha256(token.as_bytes());
        let now = self.now();
        let known = self
            .login
            .bearers
            .lock()
            .ok()
            .and_then(|m| m.get(&hash).cloned())
            .filter(|(_, exp)| *exp > now);
        let login = match known {
            Some((login, _)) => login,
            None => {
                let claims = self
                    .login
                    .verifier
                    .verify(token, &s.keys, s.issuer.as_deref(), s.audience.as_deref())
                    .await?;
                let value = jwt::claim(&claims, &s.login_claim).ok_or_else(|| {
                    EngineError::Unauthenticated(format!("the JWT has no {} claim", s.login_claim))
                })?;
                let login = login_from(value)?;
                let issuer = jwt::claim(&claims, "iss").unwrap_or("jwt").to_owned();
                let user = self
                    .store
                    .upsert_user(NewUser {
                        login: login.clone(),
                        name: jwt::claim(&claims, "name").unwrap_or(&login).to_owned(),
                        email: jwt::claim(&claims, "email").unwrap_or("").to_owned(),
                        issuer: Some(issuer),
                        subject: jwt::claim(&claims, "sub").map(str::to_owned),
                        now,
                        logged_in: true,
                    })
                    .await
                    .map_err(|e| match e {
                        StoreError::Conflict(_) => EngineError::Unauthenticated(format!(
                            "the login {login} belongs to another account"
                        )),
                        other => other.into(),
                    })?;
                if user.disabled_at.is_some() {
                    return Err(EngineError::Unauthenticated(format!("{login} is disabled")));
                }
                let groups = jwt::claim_list(&claims, &s.groups_claim);
                self.apply_groups(&login, &groups).await?;
                let exp = claims
                    .get("exp")
                    .and_then(Value::as_i64)
                    .unwrap_or(now + 60);
                if let Ok(mut m) = self.login.bearers.lock() {
                    m.retain(|_, (_, e)| *e > now);
                    m.insert(hash, (login.clone(), exp));
                }
                login
            }
        };
        if self
            .store
            .get_user(&login)
            .await?
            .is_some_and(|u| u.disabled_at.is_some())
        {
            return Err(EngineError::Unauthenticated(format!("{login} is disabled")));
        }
        Ok(Some(self.identity_of_user(&login).await?))
    }

    // ------------------------------------------------------------ trust policies

    #[allow(clippy::too_many_arguments)]
    pub async fn add_trust_policy(
        &self,
        org: &str,
        issuer: &str,
        audience: Option<&str>,
        rules: BTreeMap<String, String>,
        kind: TokenKind,
        team: Option<&str>,
        login: Option<&str>,
        max_expiration: i64,
    ) -> EngineResult<TrustPolicyView> {
        self.ensure_org(org).await?;
        if kind == TokenKind::Refresh {
            return Err(EngineError::Invalid(
                "refresh tokens are not exchanged".into(),
            ));
        }
        if kind == TokenKind::Team && team.is_none() {
            return Err(EngineError::Invalid("a team policy names its team".into()));
        }
        if kind == TokenKind::Personal && login.is_none() {
            return Err(EngineError::Invalid(
                "a personal policy names its user".into(),
            ));
        }
        let p = TrustPolicyRow {
            id: format!("tp-{}", hex::encode(crypto::random_bytes::<4>())),
            org: org.to_owned(),
            issuer: issuer.trim_end_matches('/').to_owned(),
            audience: audience
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{AUDIENCE_PREFIX}{org}")),
            rules: serde_json::to_string(&rules).map_err(EngineError::internal)?,
            token_kind: kind,
            team: team.map(str::to_owned),
            login: login.map(str::to_owned),
            max_expiration: max_expiration.clamp(60, 7 * 24 * 3600),
            created_at: self.now(),
        };
        self.store.create_trust_policy(p.clone()).await?;
        Ok(p.into())
    }

    pub async fn trust_policies(&self, org: Option<&str>) -> EngineResult<Vec<TrustPolicyView>> {
        Ok(self
            .store
            .list_trust_policies(org)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub async fn remove_trust_policy(&self, id: &str) -> EngineResult<()> {
        if self.store.delete_trust_policy(id).await? {
            Ok(())
        } else {
            Err(EngineError::NotFound(format!(
                "trust policy '{id}' not found"
            )))
        }
    }
}

/// Every rule (claim → exact value, or a prefix ending in `*`) holds.
fn rules_match(rules: &str, claims: &Map<String, Value>) -> bool {
    let Ok(rules) = serde_json::from_str::<BTreeMap<String, String>>(rules) else {
        return false;
    };
    rules.iter().all(|(claim, want)| {
        let have: Vec<String> = match claims.get(claim) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(v) => vec![v.to_string()],
            None => vec![],
        };
        have.iter().any(|h| match want.strip_suffix('*') {
            Some(prefix) => h.starts_with(prefix),
            None => h == want,
        })
    })
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_maps_parse() {
        assert_eq!(
            parse_group_map("admins=org:acme:admin").unwrap(),
            (
                "admins".into(),
                GroupTarget::Org {
                    org: "acme".into(),
                    role: OrgRole::Admin
                }
            )
        );
        assert!(matches!(
            parse_group_map("web=team:acme/web").unwrap().1,
            GroupTarget::Team { .. }
        ));
        assert!(parse_group_map("x=org:acme:owner").is_err());
        assert!(parse_group_map("nothing").is_err());
    }

    #[test]
    fn trust_rules_match_exact_values_and_prefixes() {
        let claims: Map<String, Value> = serde_json::from_str(
            r#"{"sub":"repo:acme/web:ref:refs/heads/main","groups":["ci","ops"]}"#,
        )
        .unwrap();
        assert!(rules_match(r#"{"sub":"repo:acme/web:*"}"#, &claims));
        assert!(rules_match(r#"{"groups":"ops"}"#, &claims));
        assert!(!rules_match(r#"{"sub":"repo:acme/api:*"}"#, &claims));
        assert!(!rules_match(r#"{"aud":"x"}"#, &claims));
    }
}
