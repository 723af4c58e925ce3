//! `pbackend tokens …`: access tokens for users of the API.

use crate::cli::error::{CliError, CliResult};
use clap::Subcommand;
use serde_json::json;

use crate::cli::args::{DbArgs, parse_duration_secs};
use crate::cli::offline::{Offline, OpenOptions};
use crate::cli::output::{Format, OutputArgs, opt_time, print_json, print_table, time};
use crate::engine::TokenView;
use crate::store::TokenSelector;

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// Create a token for a user; it is printed once and only its hash is stored.
    Create {
        /// The user the token acts as (shown by `pulumi whoami`).
        #[arg(long)]
        user: String,
        /// What the token is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Lifetime, e.g. 90d or 12h; without it the token does not expire.
        #[arg(long, value_parser = parse_duration_secs)]
        expires: Option<i64>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List tokens (never their secrets).
    #[command(alias = "list")]
    Ls {
        /// Only this user's tokens.
        #[arg(long)]
        user: Option<String>,
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
            description,
            expires,
            out,
        } => {
            let (row, token) = off.run(off.engine.create_token(&user, &description, expires))?;
            match out.output {
                Format::Json => print_json(&json!({
                    "id": row.id, "user": row.user, "description": row.description,
                    "created": row.created_at, "expires": row.expires_at, "token": token,
                })),
                Format::Table => {
                    eprintln!(
                        "Created token {} for {} (expires: {}). It is shown once:",
                        row.id,
                        row.user,
                        opt_time(row.expires_at)
                    );
                    println!("{token}");
                    Ok(())
                }
            }
        }
        TokensCommand::Ls { user, out } => {
            let rows = off.run(off.engine.list_tokens(user))?;
            match out.output {
                Format::Json => print_json(
                    &rows
                        .iter()
                        .map(|t| {
                            json!({"id": t.id, "user": t.user, "description": t.description,
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
        TokensCommand::Revoke { target, user } => {
            let which = match (target, user) {
                (_, Some(u)) => TokenSelector::User(u),
                (Some(t), None) if t.starts_with("tok-") => TokenSelector::Id(t),
                (Some(t), None) => TokenSelector::User(t),
                (None, None) => {
                    return Err(CliError::Invalid(
                        "name a token id or a user: `pbackend tokens revoke alice`".into(),
                    ));
                }
            };
            let ids = off.run(off.engine.revoke_tokens(which.clone()))?;
            if ids.is_empty() {
                return Err(CliError::Failed(match which {
                    TokenSelector::Id(id) => format!("no active token with id {id}"),
                    TokenSelector::User(u) => format!("{u} has no active tokens"),
                }));
            }
            eprintln!("Revoked {} token(s): {}", ids.len(), ids.join(", "));
            Ok(())
        }
    }
}
