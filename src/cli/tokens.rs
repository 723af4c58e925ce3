//! `pbackend tokens …`: access tokens for users of the API.

use crate::cli::error::{CliError, CliResult};
use clap::Subcommand;
use serde_json::json;

use crate::cli::args::{DbArgs, parse_duration_secs};
use crate::cli::offline::{Offline, OpenOptions};
use crate::cli::output::{Format, OutputArgs, opt_time, print_json, print_table, time};
use crate::engine::{Identity, TokenView};
use crate::store::TokenSelector;
use crate::store::access::TokenFilter;
use crate::types::OrgRole;

fn split_team(s: &str) -> CliResult<(&str, &str)> {
    s.split_once('/')
        .filter(|(o, t)| !o.is_empty() && !t.is_empty())
        .ok_or_else(|| CliError::Invalid(format!("{s:?}: a team is ORG/TEAM")))
}

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// Create a token; it is printed once and only its hash is stored. With --user: a
    /// personal token (the user is created, and made a member of --org, when new). Without
    /// --user: an organization token (--org and --name) or a team token (--team and --name).
    Create {
        /// The user a personal token acts as (shown by `pulumi whoami`).
        #[arg(long, conflicts_with = "team")]
        user: Option<String>,
        /// The organization: where a new user becomes a member, or whose token this is.
        #[arg(long, default_value = "organization")]
        org: String,
        /// A new user's role in --org.
        #[arg(long, default_value = "member", value_parser = ["member", "admin", "billing-manager"])]
        role: String,
        /// A team token for ORG/TEAM.
        #[arg(long, value_name = "ORG/TEAM")]
        team: Option<String>,
        /// An organization or team token's name (unique in its organization).
        #[arg(long, required_unless_present = "user")]
        name: Option<String>,
        /// An organization token with admin rights.
        #[arg(long)]
        admin: bool,
        /// What the token is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Lifetime, e.g. 90d or 12h; without it the token does not expire.
        #[arg(long, value_parser = parse_duration_secs)]
        expires: Option<i64>,
        /// Also print a refresh token, exchangeable at /api/oauth/token for new access
        /// tokens (personal tokens; the access token then lives --expires, default 1h).
        #[arg(long, requires = "user")]
        refresh: bool,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List tokens (never their secrets).
    #[command(alias = "list")]
    Ls {
        /// Only this user's tokens.
        #[arg(long)]
        user: Option<String>,
        /// Only this organization's tokens.
        #[arg(long)]
        org: Option<String>,
        /// Only this team's tokens (ORG/TEAM).
        #[arg(long, value_name = "ORG/TEAM")]
        team: Option<String>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Revoke a token by id, or every token of a user: `pbackend tokens revoke alice`.
    /// A running server refuses a revoked token from its next request.
    Revoke {
        /// A token id (tok-…), or a user name.
        target: Option<String>,
        /// Revoke every token of this user.
        #[arg(long, conflicts_with = "target")]
        user: Option<String>,
        /// Revoke every token of this team (ORG/TEAM).
        #[arg(long, value_name = "ORG/TEAM", conflicts_with_all = ["target", "user"])]
        team: Option<String>,
    },
}

fn status(t: &TokenView, now: i64) -> &'static str {
    if t.revoked_at.is_some() {
        "revoked"
    } else if t.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    }
}

pub fn run(db: &DbArgs, cmd: TokensCommand) -> CliResult {
    let off = Offline::open(db, OpenOptions::default())?;
    let now = off.engine.now();
    match cmd {
        TokensCommand::Create {
            user,
            org,
            role,
            team,
            name,
            admin,
            description,
            expires,
            refresh,
            out,
        } => {
            if refresh {
                let user = user.unwrap_or_default();
                let (access, refresh) = off.run(
                    off.engine
                        .create_refreshable_token(&user, expires.unwrap_or(3600)),
                )?;
                return match out.output {
                    Format::Json => print_json(&json!({
                        "user": user, "accessToken": access, "refreshToken": refresh,
                    })),
                    Format::Table => {
                        eprintln!("Access token, then refresh token, for {user} (shown once):");
                        println!("{access}\n{refresh}");
                        Ok(())
                    }
                };
            }
            let (row, token) = match (user, team) {
                (Some(user), _) => {
                    let role = OrgRole::parse(&role)
                        .ok_or_else(|| CliError::Invalid(format!("unknown role {role:?}")))?;
                    off.run(off.engine.create_token(
                        &user,
                        Some(&org),
                        role,
                        &description,
                        expires,
                    ))?
                }
                (None, team) => {
                    let (org, team) = match &team {
                        Some(t) => {
                            let (o, t) = split_team(t)?;
                            (o, Some(t))
                        }
                        None => (org.as_str(), None),
                    };
                    let expires_at = expires.map(|e| off.engine.now() + e).unwrap_or(0);
                    off.run(off.engine.create_machine_token(
                        &Identity::operator(),
                        org,
                        team,
                        name.as_deref().unwrap_or_default(),
                        &description,
                        admin,
                        None,
                        expires_at,
                    ))?
                }
            };
            match out.output {
                Format::Json => print_json(&json!({
                    "id": row.id, "kind": row.kind, "user": row.user, "org": row.org,
                    "team": row.team, "name": row.name, "description": row.description,
                    "created": row.created_at, "expires": row.expires_at, "token": token,
                })),
                Format::Table => {
                    eprintln!(
                        "Created {} token {} for {} (expires: {}). It is shown once:",
                        row.kind,
                        row.id,
                        row.user,
                        opt_time(row.expires_at)
                    );
                    println!("{token}");
                    Ok(())
                }
            }
        }
        TokensCommand::Ls {
            user,
            org,
            team,
            out,
        } => {
            let rows = match (&org, &team) {
                (None, None) => off.run(off.engine.list_tokens(user))?,
                _ => {
                    let (org, team) = match &team {
                        Some(t) => {
                            let (o, t) = split_team(t)?;
                            (Some(o.to_owned()), Some(t.to_owned()))
                        }
                        None => (org, None),
                    };
                    off.run(off.engine.list_tokens_where(TokenFilter {
                        user,
                        org,
                        team,
                        include_revoked: true,
                        ..Default::default()
                    }))?
                }
            };
            match out.output {
                Format::Json => print_json(
                    &rows
                        .iter()
                        .map(|t| {
                            json!({"id": t.id, "kind": t.kind, "user": t.user,
                            "org": t.org, "team": t.team, "name": t.name,
                            "description": t.description,
                            "created": t.created_at, "expires": t.expires_at,
                            "lastUsed": t.last_used_at, "revoked": t.revoked_at,
                            "status": status(t, now)})
                        })
                        .collect::<Vec<_>>(),
                ),
                Format::Table => {
                    print_table(
                        &[
                            "ID",
                            "KIND",
                            "USER",
                            "DESCRIPTION",
                            "CREATED",
                            "EXPIRES",
                            "LAST USED",
                            "STATUS",
                        ],
                        rows.iter()
                            .map(|t| {
                                vec![
                                    t.id.clone(),
                                    t.kind.to_owned(),
                                    t.user.clone(),
                                    t.description.clone(),
                                    time(t.created_at),
                                    opt_time(t.expires_at),
                                    opt_time(t.last_used_at),
                                    status(t, now).into(),
                                ]
                            })
                            .collect(),
                    );
                    Ok(())
                }
            }
        }
        TokensCommand::Revoke { target, user, team } => {
            let which = match (target, user) {
                _ if team.is_some() => {
                    let (org, team) = split_team(team.as_deref().unwrap_or_default())?;
                    TokenSelector::Team {
                        org: org.to_owned(),
                        team: team.to_owned(),
                    }
                }
                (_, Some(u)) => TokenSelector::User(u),
                (Some(t), None) if t.starts_with("tok-") => TokenSelector::Id(t),
                (Some(t), None) => TokenSelector::User(t),
                (None, None) => {
                    return Err(CliError::Invalid(
                        "name a token id or a user: `pbackend tokens revoke alice`".into(),
                    ));
                }
            };
            let org = match &which {
                TokenSelector::Team { org, .. } => Some(org.clone()),
                _ => None,
            };
            let ids = off.run(off.engine.revoke_tokens(
                &Identity::operator(),
                org.as_deref(),
                which.clone(),
            ))?;
            if ids.is_empty() {
                return Err(CliError::Failed(match which {
                    TokenSelector::Id(id) => format!("no active token with id {id}"),
                    TokenSelector::User(u) => format!("{u} has no active tokens"),
                    TokenSelector::Team { org, team } => {
                        format!("team {org}/{team} has no active tokens")
                    }
                }));
            }
            eprintln!("Revoked {} token(s): {}", ids.len(), ids.join(", "));
            Ok(())
        }
    }
}
