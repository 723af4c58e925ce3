//! `pbackend users|orgs|teams|roles|oidc`: who may do what, maintained on the database
//! directly (so an admin who lost every credential can get back in), through the same
//! engine rules as the HTTP API.

use std::collections::BTreeMap;

use clap::Subcommand;

use crate::cli::args::{DbArgs, parse_duration_secs};
use crate::cli::error::{CliError, CliResult};
use crate::cli::offline::{Offline, OpenOptions};
use crate::cli::output::{
    Format, OutputArgs, opt_time, print_json, print_listing, print_table, time,
};
use crate::engine::Identity;
use crate::engine::access::people::TeamChange;
use crate::types::{Grantee, StackKey, StackPermission, TokenKind};

fn split_team(s: &str) -> CliResult<(String, String)> {
    s.split_once('/')
        .filter(|(o, t)| !o.is_empty() && !t.is_empty())
        .map(|(o, t)| (o.to_owned(), t.to_owned()))
        .ok_or_else(|| CliError::Invalid(format!("{s:?}: a team is ORG/TEAM")))
}

fn permission(s: &str) -> Result<StackPermission, String> {
    StackPermission::parse(s).ok_or_else(|| format!("{s:?}: use none, read, write or admin"))
}

fn stack_key(s: &str) -> CliResult<StackKey> {
    StackKey::parse(s).map_err(|e| CliError::Invalid(e.to_string()))
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// List users.
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Add a user (they log in with a token from `pbackend tokens create --user`).
    Create { login: String },
    /// Disable a user: every token of theirs stops at the next request; logins refused.
    Disable { login: String },
    /// Enable a disabled user again.
    Enable { login: String },
}

pub fn users(db: &DbArgs, cmd: UsersCommand) -> CliResult {
    let off = Offline::open(db, OpenOptions::default())?;
    match cmd {
        UsersCommand::Ls { out } => {
            let users = off.run(off.engine.users())?;
            print_listing(
                out.output,
                &users,
                &["LOGIN", "NAME", "EMAIL", "PROVIDER", "LAST LOGIN", "STATUS"],
                |u| {
                    vec![
                        u.login.clone(),
                        u.name.clone(),
                        u.email.clone(),
                        u.issuer.clone().unwrap_or_else(|| "-".into()),
                        opt_time(u.last_login_at),
                        if u.disabled_at.is_some() {
                            "disabled".into()
                        } else {
                            "active".into()
                        },
                    ]
                },
            )
        }
        UsersCommand::Create { login } => {
            crate::engine::names::check_org(&login)
                .map_err(|_| CliError::Invalid(format!("invalid login {login:?}")))?;
            off.run(off.engine.ensure_user(&login))?;
            eprintln!("User {login} is ready.");
            Ok(())
        }
        UsersCommand::Disable { login } => {
            off.run(off.engine.set_user_disabled(&login, true))?;
            eprintln!("Disabled {login}: their tokens stop working at the next request.");
            Ok(())
        }
        UsersCommand::Enable { login } => {
            off.run(off.engine.set_user_disabled(&login, false))?;
            eprintln!("Enabled {login}.");
            Ok(())
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum OrgsCommand {
    /// List organizations.
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Create an organization.
    Create { org: String },
    /// Set what every member may do with every stack (grants add to it).
    SetDefaultPermission {
        org: String,
        #[arg(value_parser = permission)]
        permission: StackPermission,
    },
    /// List an organization's members.
    Members {
        org: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Add a member, or change a member's role (the user is created when new).
    SetMember {
        org: String,
        login: String,
        #[arg(long, default_value = "member", value_parser = ["member", "admin", "billing-manager"])]
        role: String,
    },
    /// Remove a member (and their places in the organization's teams).
    RemoveMember { org: String, login: String },
}

pub fn orgs(db: &DbArgs, cmd: OrgsCommand) -> CliResult {
    let off = Offline::open(db, OpenOptions::default())?;
    match cmd {
        OrgsCommand::Ls { out } => {
            let orgs = off.run(off.engine.orgs())?;
            print_listing(
                out.output,
                &orgs,
                &["ORGANIZATION", "DEFAULT STACK PERMISSION", "CREATED"],
                |o| {
                    vec![
                        o.name.clone(),
                        o.default_permission.as_str().into(),
                        time(o.created_at),
                    ]
                },
            )
        }
        OrgsCommand::Create { org } => {
            off.run(off.engine.ensure_org(&org))?;
            eprintln!("Organization {org} is ready.");
            Ok(())
        }
        OrgsCommand::SetDefaultPermission { org, permission } => {
            off.run(off.engine.set_org_default_permission(&org, permission))?;
            eprintln!(
                "Members of {org} now have {} on every stack by default.",
                permission.as_str()
            );
            Ok(())
        }
        OrgsCommand::Members { org, out } => {
            let members = off.run(off.engine.members(&org))?;
            print_listing(
                out.output,
                &members,
                &["LOGIN", "NAME", "ROLE", "CUSTOM ROLE", "JOINED"],
                |m| {
                    vec![
                        m.login.clone(),
                        m.name.clone(),
                        m.role.as_str().into(),
                        m.role_id.clone().unwrap_or_else(|| "-".into()),
                        time(m.created_at),
                    ]
                },
            )
        }
        OrgsCommand::SetMember { org, login, role } => {
            off.run(
                off.engine
                    .set_member(&Identity::operator(), &org, &login, &role),
            )?;
            eprintln!("{login} is in {org} with the role {role}.");
            Ok(())
        }
        OrgsCommand::RemoveMember { org, login } => {
            off.run(
                off.engine
                    .remove_member(&Identity::operator(), &org, &login),
            )?;
            eprintln!("Removed {login} from {org}.");
            Ok(())
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum TeamsCommand {
    /// List an organization's teams.
    #[command(alias = "list")]
    Ls {
        org: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Create a team.
    Create {
        #[arg(value_name = "ORG/TEAM")]
        team: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a team (its tokens are revoked, its stack grants removed).
    Delete {
        #[arg(value_name = "ORG/TEAM")]
        team: String,
    },
    /// Show a team: members and stacks.
    Show {
        #[arg(value_name = "ORG/TEAM")]
        team: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Add an organization member to a team.
    AddMember {
        #[arg(value_name = "ORG/TEAM")]
        team: String,
        login: String,
        /// As a team admin.
        #[arg(long)]
        admin: bool,
    },
    /// Remove a member from a team.
    RemoveMember {
        #[arg(value_name = "ORG/TEAM")]
        team: String,
        login: String,
    },
    /// Give the team a permission on a stack of its organization (none removes it).
    Grant {
        #[arg(value_name = "ORG/TEAM")]
        team: String,
        #[arg(value_name = "ORG/PROJECT/STACK")]
        stack: String,
        #[arg(value_parser = permission)]
        permission: StackPermission,
    },
}

pub fn teams(db: &DbArgs, cmd: TeamsCommand) -> CliResult {
    let off = Offline::open(db, OpenOptions::default())?;
    match cmd {
        TeamsCommand::Ls { org, out } => {
            let teams = off.run(off.engine.teams(&org))?;
            print_listing(
                out.output,
                &teams,
                &["TEAM", "DISPLAY NAME", "DESCRIPTION", "ROLE"],
                |t| {
                    vec![
                        t.name.clone(),
                        t.display_name.clone(),
                        t.description.clone(),
                        t.role_id.clone().unwrap_or_else(|| "-".into()),
                    ]
                },
            )
        }
        TeamsCommand::Create { team, description } => {
            let (org, name) = split_team(&team)?;
            off.run(
                off.engine
                    .create_team(&Identity::operator(), &org, &name, "", &description),
            )?;
            eprintln!("Created team {org}/{name}.");
            Ok(())
        }
        TeamsCommand::Delete { team } => {
            let (org, name) = split_team(&team)?;
            off.run(off.engine.delete_team(&Identity::operator(), &org, &name))?;
            eprintln!("Deleted team {org}/{name}.");
            Ok(())
        }
        TeamsCommand::Show { team, out } => {
            let (org, name) = split_team(&team)?;
            let (t, members) = off.run(off.engine.team(&org, &name))?;
            let stacks = off.run(off.engine.team_stacks(&org, &name))?;
            match out.output {
                Format::Json => print_json(&serde_json::json!({
                    "team": t,
                    "members": members,
                    "stacks": stacks.iter().map(|(k, p)| serde_json::json!({
                        "stack": k.to_string(), "permission": p.as_str()
                    })).collect::<Vec<_>>(),
                })),
                Format::Table => {
                    print_table(
                        &["MEMBER", "NAME", "TEAM ROLE"],
                        members
                            .iter()
                            .map(|m| vec![m.login.clone(), m.name.clone(), m.role.clone()])
                            .collect(),
                    );
                    print_table(
                        &["STACK", "PERMISSION"],
                        stacks
                            .iter()
                            .map(|(k, p)| vec![k.to_string(), p.as_str().into()])
                            .collect(),
                    );
                    Ok(())
                }
            }
        }
        TeamsCommand::AddMember { team, login, admin } => {
            let (org, name) = split_team(&team)?;
            off.run(async {
                off.engine
                    .change_team(
                        &Identity::operator(),
                        &org,
                        &name,
                        TeamChange::AddMember(login.clone()),
                    )
                    .await?;
                if admin {
                    off.engine
                        .change_team(
                            &Identity::operator(),
                            &org,
                            &name,
                            TeamChange::Promote(login.clone()),
                        )
                        .await?;
                }
                Ok::<_, crate::engine::EngineError>(())
            })?;
            eprintln!("{login} is in team {org}/{name}.");
            Ok(())
        }
        TeamsCommand::RemoveMember { team, login } => {
            let (org, name) = split_team(&team)?;
            off.run(off.engine.change_team(
                &Identity::operator(),
                &org,
                &name,
                TeamChange::RemoveMember(login.clone()),
            ))?;
            eprintln!("{login} left team {org}/{name}.");
            Ok(())
        }
        TeamsCommand::Grant {
            team,
            stack,
            permission,
        } => {
            let (org, name) = split_team(&team)?;
            let key = stack_key(&stack)?;
            if key.org != org {
                return Err(CliError::Invalid(format!(
                    "{stack} is not in organization {org}"
                )));
            }
            off.run(off.engine.grant_stack(
                &Identity::operator(),
                &key,
                Grantee::Team(name.clone()),
                permission,
            ))?;
            eprintln!("Team {org}/{name} has {} on {stack}.", permission.as_str());
            Ok(())
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum RolesCommand {
    /// List an organization's custom roles.
    #[command(alias = "list")]
    Ls {
        org: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Create a custom role granting scopes (stack:read, stack:write, team:create, ...).
    Create {
        org: String,
        name: String,
        /// Scopes, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a custom role (with --force also when assigned).
    Rm {
        org: String,
        /// The role's id or name.
        #[arg(value_name = "ROLE")]
        id: String,
        #[arg(long)]
        force: bool,
    },
    /// Assign a role to a team (replacing its role), or with --none remove it.
    Assign {
        #[arg(value_name = "ORG/TEAM")]
        team: String,
        /// The role's id or name.
        #[arg(value_name = "ROLE", required_unless_present = "none")]
        id: Option<String>,
        #[arg(long)]
        none: bool,
    },
}

pub fn roles(db: &DbArgs, cmd: RolesCommand) -> CliResult {
    let off = Offline::open(db, OpenOptions::default())?;
    match cmd {
        RolesCommand::Ls { org, out } => {
            let roles = off.run(off.engine.roles(&org, None))?;
            print_listing(
                out.output,
                &roles,
                &["ID", "NAME", "DESCRIPTION", "VERSION", "MODIFIED"],
                |r| {
                    vec![
                        r.id.clone(),
                        r.name.clone(),
                        r.description.clone(),
                        r.version.to_string(),
                        time(r.modified_at),
                    ]
                },
            )
        }
        RolesCommand::Create {
            org,
            name,
            scopes,
            description,
        } => {
            let details = serde_json::json!({
                "__type": "PermissionDescriptorAllow",
                "permissions": scopes,
            })
            .to_string();
            let r = off.run(off.engine.create_role(
                &Identity::operator(),
                &org,
                &name,
                &description,
                "role",
                &details,
            ))?;
            eprintln!("Created role {name} (id {}).", r.id);
            println!("{}", r.id);
            Ok(())
        }
        RolesCommand::Rm { org, id, force } => {
            let id = role_id(&off, &org, &id)?;
            off.run(
                off.engine
                    .delete_role(&Identity::operator(), &org, &id, force),
            )?;
            eprintln!("Deleted role {id}.");
            Ok(())
        }
        RolesCommand::Assign { team, id, none } => {
            let (org, name) = split_team(&team)?;
            let id = match id {
                Some(key) if !none => Some(role_id(&off, &org, &key)?),
                _ => None,
            };
            off.run(off.engine.assign_team_role(
                &Identity::operator(),
                &org,
                &name,
                id.as_deref(),
            ))?;
            eprintln!(
                "Team {org}/{name} role: {}.",
                id.as_deref().unwrap_or("none")
            );
            Ok(())
        }
    }
}

/// Operators name roles; the API keys them by id. Accept either.
fn role_id(off: &Offline, org: &str, key: &str) -> Result<String, CliError> {
    Ok(off.run(off.engine.role_by_id_or_name(org, key))?.id)
}

#[derive(Subcommand, Debug)]
pub enum OidcCommand {
    /// List trust policies: which identity providers' tokens an organization exchanges.
    #[command(alias = "list")]
    Ls {
        /// Only this organization's policies.
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Trust an issuer's ID tokens for `pulumi login --oidc-token`.
    Add {
        /// The organization whose tokens the exchange issues (`pulumi login --oidc-org`).
        #[arg(long)]
        org: String,
        /// The token's `iss` (its keys come from the issuer's OpenID discovery).
        #[arg(long)]
        issuer: String,
        /// The `aud` the token must carry (default: urn:pulumi:org:<org>).
        #[arg(long)]
        audience: Option<String>,
        /// What token the exchange issues.
        #[arg(long, value_parser = ["organization", "team", "personal"])]
        token_kind: String,
        /// The team of a team token.
        #[arg(long)]
        team: Option<String>,
        /// The user of a personal token.
        #[arg(long)]
        user: Option<String>,
        /// CLAIM=VALUE the token must carry (VALUE may end in `*`); repeat for more.
        #[arg(long = "rule")]
        rules: Vec<String>,
        /// The longest lifetime of an issued token.
        #[arg(long, default_value = "2h", value_parser = parse_duration_secs)]
        max_expiration: i64,
    },
    /// Remove a trust policy.
    Rm { id: String },
}

pub fn oidc(db: &DbArgs, cmd: OidcCommand) -> CliResult {
    let off = Offline::open(db, OpenOptions::default())?;
    match cmd {
        OidcCommand::Ls { org, out } => {
            let ps = off.run(off.engine.trust_policies(org.as_deref()))?;
            match out.output {
                Format::Json => print_json(
                    &ps.iter()
                        .map(|p| {
                            serde_json::json!({
                                "id": p.id, "org": p.org, "issuer": p.issuer,
                                "audience": p.audience,
                                "rules": serde_json::from_str::<serde_json::Value>(&p.rules)
                                    .unwrap_or_default(),
                                "tokenKind": p.token_kind.as_str(), "team": p.team,
                                "user": p.login, "maxExpiration": p.max_expiration,
                            })
                        })
                        .collect::<Vec<_>>(),
                ),
                Format::Table => {
                    print_table(
                        &["ID", "ORG", "ISSUER", "AUDIENCE", "ISSUES", "RULES"],
                        ps.iter()
                            .map(|p| {
                                let issues = match (&p.team, &p.login) {
                                    (Some(t), _) => format!("team {t}"),
                                    (_, Some(u)) => format!("personal {u}"),
                                    _ => p.token_kind.as_str().to_owned(),
                                };
                                vec![
                                    p.id.clone(),
                                    p.org.clone(),
                                    p.issuer.clone(),
                                    p.audience.clone(),
                                    issues,
                                    p.rules.clone(),
                                ]
                            })
                            .collect(),
                    );
                    Ok(())
                }
            }
        }
        OidcCommand::Add {
            org,
            issuer,
            audience,
            token_kind,
            team,
            user,
            rules,
            max_expiration,
        } => {
            let mut map = BTreeMap::new();
            for r in &rules {
                let (k, v) = r
                    .split_once('=')
                    .ok_or_else(|| CliError::Invalid(format!("{r:?}: a rule is CLAIM=VALUE")))?;
                map.insert(k.to_owned(), v.to_owned());
            }
            let kind = TokenKind::parse(&token_kind).unwrap_or(TokenKind::Organization);
            let p = off.run(off.engine.add_trust_policy(
                &org,
                &issuer,
                audience.as_deref(),
                map,
                kind,
                team.as_deref(),
                user.as_deref(),
                max_expiration,
            ))?;
            eprintln!("Added trust policy {} for {} in {}.", p.id, p.issuer, p.org);
            println!("{}", p.id);
            Ok(())
        }
        OidcCommand::Rm { id } => {
            off.run(off.engine.remove_trust_policy(&id))?;
            eprintln!("Removed trust policy {id}.");
            Ok(())
        }
    }
}
