//! `pbackend serve` flags for logging in besides API tokens (which always work).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::cli::args::{Secret, parse_duration_secs};
use crate::cli::error::{CliError, CliResult};
use crate::engine::access::jwt::Keys;
use crate::engine::access::login::{
    GroupTarget, JwtSettings, LoginConfig, OidcSettings, parse_group_map,
};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// API tokens only (personal, organization and team tokens, the single-tenant token).
    Tokens,
    /// Also browser login through an OpenID Connect provider (`pulumi login` opens it).
    Oidc,
    /// The same with Google's issuer preset (restrict with --google-hosted-domain).
    Google,
    /// Also JWTs presented as the access token, verified with the --jwt-* key.
    Jwt,
}

const GOOGLE_ISSUER: &str = "https://accounts.google.com";

#[derive(Args, Debug)]
pub struct AuthArgs {
    /// How users log in. API tokens always work.
    #[arg(long, env = "PULUMI_BACKEND_AUTH_MODE", value_enum, default_value_t = AuthMode::Tokens)]
    pub auth_mode: AuthMode,

    /// The URL users and the identity provider reach this server at (default: the listening
    /// address); the provider redirects to <URL>/api/auth/callback.
    #[arg(long, env = "PULUMI_BACKEND_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// The OpenID provider's issuer URL (its discovery document is at
    /// <issuer>/.well-known/openid-configuration).
    #[arg(long, env = "PULUMI_BACKEND_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    /// This server's client id at the provider.
    #[arg(long, env = "PULUMI_BACKEND_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,

    /// The client secret (prefer the environment variable or --oidc-client-secret-file).
    #[arg(
        long,
        env = "PULUMI_BACKEND_OIDC_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub oidc_client_secret: Option<Secret>,

    /// A file holding the client secret.
    #[arg(long, env = "PULUMI_BACKEND_OIDC_CLIENT_SECRET_FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,

    /// Scopes to ask for besides `openid` (space-separated).
    #[arg(
        long,
        env = "PULUMI_BACKEND_OIDC_SCOPES",
        default_value = "profile email offline_access"
    )]
    pub oidc_scopes: String,

    /// The ID-token claim whose value becomes the user's login.
    #[arg(
        long,
        env = "PULUMI_BACKEND_OIDC_LOGIN_CLAIM",
        default_value = "preferred_username"
    )]
    pub oidc_login_claim: String,

    /// The claim listing the user's groups (for --group-map).
    #[arg(
        long,
        env = "PULUMI_BACKEND_OIDC_GROUPS_CLAIM",
        default_value = "groups"
    )]
    pub oidc_groups_claim: String,

    /// Google: only accounts of this Workspace domain (the `hd` claim).
    #[arg(long, env = "PULUMI_BACKEND_GOOGLE_HOSTED_DOMAIN")]
    pub google_hosted_domain: Option<String>,

    /// Where members of an identity-provider group go: GROUP=org:ORG:ROLE (member, admin,
    /// billing-manager) or GROUP=team:ORG/TEAM. Repeat for more; mapped places follow the
    /// groups at every login and refresh.
    #[arg(
        long = "group-map",
        env = "PULUMI_BACKEND_GROUP_MAP",
        value_delimiter = ','
    )]
    pub group_map: Vec<String>,

    /// JWT mode: an HMAC secret (prefer the environment variable or the file flag).
    #[arg(long, env = "PULUMI_BACKEND_JWT_HMAC_SECRET", hide_env_values = true)]
    pub jwt_hmac_secret: Option<Secret>,

    /// JWT mode: a file holding the HMAC secret.
    #[arg(long, env = "PULUMI_BACKEND_JWT_HMAC_SECRET_FILE")]
    pub jwt_hmac_secret_file: Option<PathBuf>,

    /// JWT mode: an RSA or EC public key (PEM file).
    #[arg(long, env = "PULUMI_BACKEND_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// JWT mode: a JWKS URL (keys fetched again when an unknown key id appears).
    #[arg(long, env = "PULUMI_BACKEND_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,

    /// JWT mode: the required `iss`.
    #[arg(long, env = "PULUMI_BACKEND_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// JWT mode: the required `aud`.
    #[arg(long, env = "PULUMI_BACKEND_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// JWT mode: the claim that names the user.
    #[arg(long, env = "PULUMI_BACKEND_JWT_LOGIN_CLAIM", default_value = "sub")]
    pub jwt_login_claim: String,

    /// JWT mode: the claim listing the user's groups.
    #[arg(
        long,
        env = "PULUMI_BACKEND_JWT_GROUPS_CLAIM",
        default_value = "groups"
    )]
    pub jwt_groups_claim: String,

    /// Lifetime of the access token a browser login or a refresh issues.
    #[arg(long, env = "PULUMI_BACKEND_LOGIN_TOKEN_TTL", default_value = "24h", value_parser = parse_duration_secs)]
    pub login_token_ttl: i64,

    /// Lifetime of refresh tokens.
    #[arg(long, env = "PULUMI_BACKEND_REFRESH_TOKEN_TTL", default_value = "30d", value_parser = parse_duration_secs)]
    pub refresh_token_ttl: i64,
}

fn need<T: Clone>(v: &Option<T>, flag: &str, mode: &str) -> CliResult<T> {
    v.clone()
        .ok_or_else(|| CliError::Invalid(format!("--auth-mode {mode} needs {flag}")))
}

fn read(path: &PathBuf) -> CliResult<Vec<u8>> {
    std::fs::read(path).map_err(CliError::io(format!("cannot read {}", path.display())))
}

impl AuthArgs {
    /// The engine's login settings; `default_public_url` is the listening address's URL.
    pub fn login_config(&self, default_public_url: &str) -> CliResult<LoginConfig> {
        let mut group_map: Vec<(String, GroupTarget)> = Vec::new();
        for g in &self.group_map {
            group_map.push(parse_group_map(g).map_err(CliError::Invalid)?);
        }
        let secret = match (&self.oidc_client_secret, &self.oidc_client_secret_file) {
            (Some(s), _) => Some(s.0.clone()),
            (None, Some(f)) => Some(String::from_utf8_lossy(&read(f)?).trim().to_owned()),
            (None, None) => None,
        };
        let scopes: Vec<String> = self
            .oidc_scopes
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let oidc = match self.auth_mode {
            AuthMode::Oidc => Some(OidcSettings {
                issuer: need(&self.oidc_issuer, "--oidc-issuer", "oidc")?,
                client_id: need(&self.oidc_client_id, "--oidc-client-id", "oidc")?,
                client_secret: secret,
                scopes,
                login_claim: self.oidc_login_claim.clone(),
                groups_claim: self.oidc_groups_claim.clone(),
                hosted_domain: None,
            }),
            AuthMode::Google => Some(OidcSettings {
                issuer: self
                    .oidc_issuer
                    .clone()
                    .unwrap_or_else(|| GOOGLE_ISSUER.into()),
                client_id: need(&self.oidc_client_id, "--oidc-client-id", "google")?,
                client_secret: secret,
                scopes,
                // Google's ID tokens carry no preferred_username.
                login_claim: if self.oidc_login_claim == "preferred_username" {
                    "email".into()
                } else {
                    self.oidc_login_claim.clone()
                },
                groups_claim: self.oidc_groups_claim.clone(),
                hosted_domain: self.google_hosted_domain.clone(),
            }),
            _ => None,
        };
        let jwt = match self.auth_mode {
            AuthMode::Jwt => {
                let keys = match (
                    &self.jwt_hmac_secret,
                    &self.jwt_hmac_secret_file,
                    &self.jwt_public_key_file,
                    &self.jwt_jwks_url,
                ) {
                    (Some(s), None, None, None) => Keys::Hmac(s.0.clone().into_bytes()),
                    (None, Some(f), None, None) => Keys::Hmac(
                        String::from_utf8_lossy(&read(f)?)
                            .trim()
                            .as_bytes()
                            .to_vec(),
                    ),
                    (None, None, Some(f), None) => Keys::Pem(read(f)?),
                    (None, None, None, Some(u)) => Keys::Jwks(u.clone()),
                    _ => {
                        return Err(CliError::Invalid(
                            "--auth-mode jwt needs exactly one of --jwt-hmac-secret(-file), \
                             --jwt-public-key-file, --jwt-jwks-url"
                                .into(),
                        ));
                    }
                };
                Some(JwtSettings {
                    keys,
                    issuer: self.jwt_issuer.clone(),
                    audience: self.jwt_audience.clone(),
                    login_claim: self.jwt_login_claim.clone(),
                    groups_claim: self.jwt_groups_claim.clone(),
                })
            }
            _ => None,
        };
        Ok(LoginConfig {
            oidc,
            jwt,
            group_map,
            public_url: Some(
                self.public_url
                    .clone()
                    .unwrap_or_else(|| default_public_url.to_owned())
                    .trim_end_matches('/')
                    .to_owned(),
            ),
            login_token_ttl: self.login_token_ttl,
            refresh_token_ttl: self.refresh_token_ttl,
        })
    }
}
