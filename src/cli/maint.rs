//! Maintenance: rotate-keys, prune-versions, verify, replay-journal.

use crate::cli::error::{CliError, CliResult};
use clap::Args;
use serde_json::json;

use crate::cli::args::{DbArgs, Secret};
use crate::cli::offline::{Offline, OpenOptions};
use crate::cli::output::{Format, OutputArgs, QuietArgs, Reporter, bytes, print_json, print_table};
use crate::engine::crypto::MasterKey;
use crate::store::StackKey;

fn keys(list: &[String]) -> CliResult<Vec<StackKey>> {
    list.iter()
        .map(|s| StackKey::parse(s).map_err(|e| CliError::Invalid(e.to_string())))
        .collect()
}

#[derive(Args, Debug)]
pub struct RotateKeysArgs {
    /// The new master key (64 hex characters). The current one (--master-key or the key
    /// file) must still open every stack key.
    #[arg(long, env = "PULUMI_BACKEND_NEW_MASTER_KEY", hide_env_values = true)]
    pub new_master_key: Secret,
    /// Check that every key re-wraps, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub quiet: QuietArgs,
}

pub fn rotate_keys(db: &DbArgs, a: RotateKeysArgs) -> CliResult {
    let new = MasterKey::from_hex(&a.new_master_key.0)
        .map_err(|e| CliError::Invalid(format!("--new-master-key: {e}")))?;
    let off = Offline::open(
        db,
        OpenOptions {
            need_key: true,
            exclusive: (!a.dry_run).then_some("the server holds the old master key in memory"),
            ..Default::default()
        },
    )?;
    let progress = Reporter::new(a.quiet.quiet);
    let n = off.run(off.engine.rotate_keys(&new, a.dry_run, &progress))?;
    if a.dry_run {
        eprintln!("Dry run: all {n} stack keys re-wrap under the new master key; nothing changed.");
    } else {
        eprintln!(
            "Re-wrapped {n} stack keys under the new master key. Start the server with it from \
             now on (and replace {} if you keep the key there).",
            db.default_key_file().display()
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Versions of each stack to keep (the current one is always kept).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
    pub keep: i64,
    /// Only these stacks (ORG/PROJECT/STACK; repeatable).
    #[arg(long = "stack")]
    pub stacks: Vec<String>,
    /// Report what would be deleted, and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Afterwards, VACUUM the database to return the freed space to the filesystem (needs the
    /// database to itself).
    #[arg(long)]
    pub vacuum: bool,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub quiet: QuietArgs,
}

pub fn prune(db: &DbArgs, a: PruneArgs) -> CliResult {
    let off = Offline::open(
        db,
        OpenOptions {
            exclusive: (a.vacuum && !a.dry_run).then_some("VACUUM needs the database to itself"),
            ..Default::default()
        },
    )?;
    let progress = Reporter::new(a.quiet.quiet);
    let report =
        off.run(
            off.engine
                .prune_versions(&keys(&a.stacks)?, a.keep, a.dry_run, &progress),
        )?;
    if a.vacuum && !a.dry_run {
        off.run(off.engine.vacuum())?;
    }
    let total_v: i64 = report.iter().map(|(_, r)| r.versions).sum();
    let total_b: i64 = report.iter().map(|(_, r)| r.bytes).sum();
    match a.out.output {
        Format::Json => print_json(&json!({
            "dryRun": a.dry_run,
            "versions": total_v,
            "bytes": total_b,
            "stacks": report.iter().map(|(k, r)| json!({"stack": k.to_string(), "versions": r.versions, "bytes": r.bytes})).collect::<Vec<_>>(),
        })),
        Format::Table => {
            print_table(
                &["STACK", "VERSIONS", "STORED BYTES"],
                report
                    .iter()
                    .filter(|(_, r)| r.versions > 0)
                    .map(|(k, r)| vec![k.to_string(), r.versions.to_string(), bytes(r.bytes)])
                    .collect(),
            );
            eprintln!(
                "{} {total_v} versions ({}){}.",
                if a.dry_run { "Would delete" } else { "Deleted" },
                bytes(total_b),
                if a.vacuum && !a.dry_run {
                    "; database vacuumed"
                } else {
                    ""
                }
            );
            Ok(())
        }
    }
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Only these stacks (ORG/PROJECT/STACK; repeatable).
    #[arg(long = "stack")]
    pub stacks: Vec<String>,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub quiet: QuietArgs,
}

/// Exit status 1 when anything is wrong.
pub fn verify(db: &DbArgs, a: VerifyArgs) -> CliResult {
    let off = Offline::open(db, OpenOptions::default())?;
    let progress = Reporter::new(a.quiet.quiet);
    let findings = off.run(off.engine.verify(&keys(&a.stacks)?, &progress))?;
    match a.out.output {
        Format::Json => print_json(&findings)?,
        Format::Table => {
            if !findings.is_empty() {
                print_table(
                    &["STACK", "CHECK", "PROBLEM"],
                    findings
                        .iter()
                        .map(|f| {
                            vec![
                                f.stack.clone().unwrap_or_else(|| "-".into()),
                                f.check.into(),
                                f.problem.clone(),
                            ]
                        })
                        .collect(),
                );
            }
        }
    }
    if findings.is_empty() {
        if db.master_key_if_available()?.is_none() {
            eprintln!("No problems found (stack keys not checked: no master key given).");
        } else {
            eprintln!("No problems found.");
        }
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "verify found {} problem(s)",
            findings.len()
        )))
    }
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// ORG/PROJECT/STACK
    pub stack: String,
    /// The update whose journal to replay (default: the stack's latest journaled update).
    #[arg(long)]
    pub update: Option<String>,
    /// Print the differences from the stored state, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub quiet: QuietArgs,
}

pub fn replay_journal(db: &DbArgs, a: ReplayArgs) -> CliResult {
    let off = Offline::open(db, OpenOptions::default())?;
    let key = StackKey::parse(&a.stack).map_err(|e| CliError::Invalid(e.to_string()))?;
    let progress = Reporter::new(a.quiet.quiet);
    use crate::engine::operator::Progress;
    progress.start(0, "replaying");
    let r = off.run(
        off.engine
            .replay_journal(&key, a.update.as_deref(), a.dry_run),
    );
    progress.finish();
    let r = r?;
    match a.out.output {
        Format::Json => print_json(&r),
        Format::Table => {
            eprintln!(
                "Replayed update {} (version {}): {} batches, {} entries, {} resources.",
                r.update_id, r.version, r.batches, r.entries, r.resources
            );
            if r.diff.is_empty() {
                eprintln!("The rebuilt state matches the stored state.");
            } else {
                println!("Differences (+ only rebuilt, - only stored, ~ different):");
                for d in &r.diff {
                    println!("  {d}");
                }
                if r.written {
                    eprintln!("Stored the rebuilt state as version {}.", r.version);
                } else {
                    eprintln!("Dry run: nothing changed.");
                }
            }
            Ok(())
        }
    }
}
