//! `pbackend stack …`: stacks on the database directly.

use crate::cli::error::{CliError, CliResult};
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::cli::args::DbArgs;
use crate::cli::jsonfmt::go_indent;
use crate::cli::offline::{Offline, OpenOptions};
use crate::cli::output::{Format, OutputArgs, bytes, opt_time, print_json, print_table, time};
use crate::engine::StackListQuery;
use crate::engine::UpdateView;
use crate::engine::operator::StackOverview;
use crate::types::StackKey;

#[derive(Subcommand, Debug)]
pub enum StackCommand {
    /// List stacks: resources, last update, version, the update holding it, state size.
    #[command(alias = "list")]
    Ls {
        /// Only this organization.
        #[arg(long)]
        org: Option<String>,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Only stacks with this tag (NAME or NAME=VALUE).
        #[arg(long, value_name = "NAME[=VALUE]")]
        tag: Option<String>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Show one stack: tags, kept versions, recent history, lock, secrets key.
    Show {
        /// ORG/PROJECT/STACK
        stack: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Delete a stack with its history. Refused while it has resources, unless --force.
    Rm {
        /// ORG/PROJECT/STACK
        stack: String,
        /// Delete even with resources in its state, or while an update holds it.
        #[arg(long)]
        force: bool,
    },
    /// Cancel the update holding a stack (a crashed CLI, a stuck lease), keeping the state
    /// it reached. The CLI's `pulumi cancel`, for when the CLI cannot.
    Unlock {
        /// ORG/PROJECT/STACK
        stack: String,
    },
    /// Write a stack's deployment exactly as `pulumi stack export` does, for
    /// `pulumi stack import` anywhere.
    Export {
        /// ORG/PROJECT/STACK
        stack: String,
        /// A kept older version instead of the current state.
        #[arg(long)]
        version: Option<i64>,
        /// Decrypt service-encrypted secrets (needs the master key).
        #[arg(long)]
        show_secrets: bool,
        /// Write to this file instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Store a deployment file as a new version of a stack. Plaintext secrets (from
    /// --show-secrets exports) are encrypted with the stack's key; secrets of another stack of
    /// this database are re-encrypted; secrets that would not decrypt are refused.
    Import {
        /// ORG/PROJECT/STACK
        stack: String,
        /// The deployment (JSON, as `pulumi stack export` writes it).
        file: PathBuf,
        /// Create the stack when it does not exist.
        #[arg(long)]
        create: bool,
    },
    /// Roll a stack back to a kept version: that version's state becomes the newest version
    /// (recorded as an import, with an audit event), and the versions in between stay in the
    /// history. Refused while an update holds the stack. The console's "Roll back".
    Rollback {
        /// ORG/PROJECT/STACK
        stack: String,
        /// The kept version whose state to restore (`pbackend stack show` lists them).
        #[arg(long, value_name = "N")]
        to_version: i64,
    },
}

fn key(s: &str) -> CliResult<StackKey> {
    StackKey::parse(s).map_err(|e| CliError::Invalid(e.to_string()))
}

fn lock_json(lock: &Option<UpdateView>, now: i64) -> Value {
    match lock {
        None => Value::Null,
        Some(u) => json!({
            "update": u.id,
            "kind": u.kind,
            "author": u.author,
            "started": u.started_at,
            "leaseExpires": u.lease_expires,
            "expired": !u.lease_live(now),
        }),
    }
}

fn lock_text(lock: &Option<UpdateView>, now: i64) -> String {
    match lock {
        None => "-".into(),
        Some(u) => format!(
            "{} {} by {}{}",
            u.kind,
            u.id,
            u.author,
            if u.lease_live(now) {
                ""
            } else {
                " (lease expired)"
            }
        ),
    }
}

fn overview_json(o: &StackOverview, now: i64) -> Value {
    let s = &o.stack;
    json!({
        "org": s.key.org, "project": s.key.project, "stack": s.key.stack,
        "resources": s.resource_count,
        "lastUpdate": s.last_update_at,
        "version": s.current_version,
        "lock": lock_json(&o.lock, now),
        "stateBytes": s.state_size,
    })
}

pub fn run(db: &DbArgs, cmd: StackCommand) -> CliResult {
    match cmd {
        StackCommand::Ls {
            org,
            project,
            tag,
            out,
        } => {
            let off = Offline::open(db, OpenOptions::default())?;
            let (tag_name, tag_value) = match tag {
                Some(t) => match t.split_once('=') {
                    Some((n, v)) => (Some(n.to_owned()), Some(v.to_owned())),
                    None => (Some(t), None),
                },
                None => (None, None),
            };
            let list = off.run(off.engine.operator_stacks(StackListQuery {
                org,
                project,
                tag_name,
                tag_value,
                continuation: None,
            }))?;
            let now = off.engine.now();
            match out.output {
                Format::Json => print_json(
                    &list
                        .iter()
                        .map(|o| overview_json(o, now))
                        .collect::<Vec<_>>(),
                ),
                Format::Table => {
                    print_table(
                        &[
                            "STACK",
                            "RESOURCES",
                            "LAST UPDATE",
                            "VERSION",
                            "LOCKED BY",
                            "SIZE",
                        ],
                        list.iter()
                            .map(|o| {
                                vec![
                                    o.stack.key.to_string(),
                                    o.stack.resource_count.to_string(),
                                    opt_time(o.stack.last_update_at),
                                    o.stack
                                        .current_version
                                        .map(|v| v.to_string())
                                        .unwrap_or_else(|| "-".into()),
                                    lock_text(&o.lock, now),
                                    bytes(o.stack.state_size),
                                ]
                            })
                            .collect(),
                    );
                    Ok(())
                }
            }
        }
        StackCommand::Show { stack, out } => {
            let off = Offline::open(db, OpenOptions::default())?;
            let k = key(&stack)?;
            let d = off.run(off.engine.stack_details(&k))?;
            let now = off.engine.now();
            let key_status = match &d.key {
                Ok(true) => "ok".to_owned(),
                Ok(false) => "not checked (no master key given)".to_owned(),
                Err(e) => format!("error: {e}"),
            };
            let v = json!({
                "org": k.org, "project": k.project, "stack": k.stack,
                "tags": d.stack.tags,
                "resources": d.stack.resource_count,
                "version": d.stack.current_version,
                "lastVersion": d.stack.last_version,
                "activeUpdate": d.stack.active_update,
                "lock": lock_json(&d.lock, now),
                "versions": d.versions.iter().map(|v| json!({
                    "version": v.version, "sha256": v.sha256, "bytes": v.size,
                    "storedBytes": v.stored_size, "resources": v.resource_count, "created": v.created_at,
                })).collect::<Vec<_>>(),
                "history": d.history.iter().map(|u| json!({
                    "version": u.version, "kind": u.kind, "result": u.status.as_str(),
                    "started": u.started_at, "ended": u.ended_at, "author": u.author,
                    "message": u.message, "journal": u.journal_version >= 1,
                })).collect::<Vec<_>>(),
                "secretsKey": key_status,
            });
            match out.output {
                Format::Json => print_json(&v),
                Format::Table => {
                    println!("Stack:        {k}");
                    println!(
                        "Version:      {} ({} resources, {})",
                        d.stack
                            .current_version
                            .map(|v| v.to_string())
                            .unwrap_or("-".into()),
                        d.stack.resource_count,
                        bytes(d.stack.state_size)
                    );
                    println!("Locked by:    {}", lock_text(&d.lock, now));
                    println!("Secrets key:  {key_status}");
                    println!("Tags:");
                    for (t, val) in &d.stack.tags {
                        println!("    {t} = {val}");
                    }
                    println!("Versions kept: {}", d.versions.len());
                    print_table(
                        &["VERSION", "RESOURCES", "SIZE", "STORED", "CREATED"],
                        d.versions
                            .iter()
                            .map(|v| {
                                vec![
                                    v.version.to_string(),
                                    v.resource_count.to_string(),
                                    bytes(v.size),
                                    bytes(v.stored_size),
                                    time(v.created_at),
                                ]
                            })
                            .collect(),
                    );
                    println!("Recent updates:");
                    print_table(
                        &["VERSION", "KIND", "RESULT", "STARTED", "ENDED", "BY"],
                        d.history
                            .iter()
                            .map(|u| {
                                vec![
                                    u.version.to_string(),
                                    u.kind.clone(),
                                    u.status.as_str().to_owned(),
                                    opt_time(u.started_at),
                                    opt_time(u.ended_at),
                                    u.author.clone(),
                                ]
                            })
                            .collect(),
                    );
                    Ok(())
                }
            }
        }
        StackCommand::Rm { stack, force } => {
            let off = Offline::open(db, OpenOptions::default())?;
            let k = key(&stack)?;
            off.run(off.engine.operator_delete_stack(&k, force))
                .map_err(|e| match e {
                    crate::engine::EngineError::StackHasResources => CliError::Failed(format!(
                        "'{k}' still has resources: run `pulumi destroy` first, or pass --force \
                         to delete it with them"
                    )),
                    other => other.into(),
                })?;
            eprintln!("Deleted stack {k}.");
            Ok(())
        }
        StackCommand::Unlock { stack } => {
            let off = Offline::open(db, OpenOptions::default())?;
            let k = key(&stack)?;
            match off.run(off.engine.force_unlock(&k))? {
                Some(u) => eprintln!(
                    "Cancelled {} {} (started by {}); the state it reached is kept.",
                    u.kind, u.id, u.author
                ),
                None => eprintln!("No update holds {k}."),
            }
            Ok(())
        }
        StackCommand::Export {
            stack,
            version,
            show_secrets,
            file,
        } => {
            let off = Offline::open(
                db,
                OpenOptions {
                    need_key: show_secrets,
                    ..Default::default()
                },
            )?;
            let k = key(&stack)?;
            let json = off.run(off.engine.operator_export(&k, version, show_secrets))?;
            let text = pulumi_export_layout(&json)?;
            match file {
                Some(path) => std::fs::write(&path, text)
                    .map_err(CliError::io(format!("cannot write {}", path.display()))),
                None => {
                    use std::io::Write;
                    std::io::stdout()
                        .write_all(&text)
                        .map_err(CliError::io("cannot write to stdout"))
                }
            }
        }
        StackCommand::Import {
            stack,
            file,
            create,
        } => {
            let off = Offline::open(
                db,
                OpenOptions {
                    need_key: true,
                    ..Default::default()
                },
            )?;
            let k = key(&stack)?;
            let json = std::fs::read(&file)
                .map_err(CliError::io(format!("cannot read {}", file.display())))?;
            let r = off.run(off.engine.operator_import(&k, json, create))?;
            eprintln!(
                "Imported into {k}{} (update {}; {} secrets encrypted, {} re-encrypted).",
                if r.created { " (created)" } else { "" },
                r.update_id,
                r.encrypted,
                r.reencrypted
            );
            Ok(())
        }
        StackCommand::Rollback { stack, to_version } => {
            let off = Offline::open(db, OpenOptions::default())?;
            let k = key(&stack)?;
            let update = off.run(off.engine.operator_rollback(&k, to_version))?;
            eprintln!("Rolled {k} back to version {to_version} (update {update}).");
            Ok(())
        }
    }
}

#[derive(serde::Deserialize)]
struct Untyped<'a> {
    version: i64,
    #[serde(default)]
    features: Option<Vec<String>>,
    #[serde(borrow)]
    deployment: Option<&'a serde_json::value::RawValue>,
}

/// The CLI prints `{version, features?, deployment}` in that order, indented by four spaces.
pub fn pulumi_export_layout(json: &[u8]) -> CliResult<Vec<u8>> {
    let u: Untyped<'_> = serde_json::from_slice(json)
        .map_err(|e| CliError::Failed(format!("the stored deployment: {e}")))?;
    let mut compact = format!("{{\"version\":{}", u.version).into_bytes();
    if let Some(f) = u.features.filter(|f| !f.is_empty()) {
        compact.extend_from_slice(b",\"features\":");
        compact.extend_from_slice(
            &serde_json::to_vec(&f)
                .map_err(|e| CliError::Failed(format!("cannot encode JSON: {e}")))?,
        );
    }
    if let Some(d) = u.deployment {
        compact.extend_from_slice(b",\"deployment\":");
        compact.extend_from_slice(d.get().as_bytes());
    }
    compact.push(b'}');
    Ok(go_indent(&compact))
}
