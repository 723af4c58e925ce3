//! `pbackend export --all` / `import --all` (whole-instance archives) and `pbackend backup` /
//! `restore` (checksummed, rotated backup sets).

use crate::cli::error::{CliError, CliResult};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};

use crate::cli::args::DbArgs;
use crate::cli::offline::{Offline, OpenOptions};
use crate::cli::output::{Format, OutputArgs, QuietArgs, Reporter, print_json};
use crate::engine::backup::dest::Destination;
use crate::store::backup::Merge;

#[derive(Args, Debug)]
pub struct ExportAllArgs {
    /// Export the whole instance (every stack with its versions, history, tags, events,
    /// journals and wrapped keys, and the access tokens).
    #[arg(long, required = true)]
    pub all: bool,
    /// The archive to write (gzip; format in reference/cli.md).
    #[arg(short = 'o', long = "output", value_name = "BACKUP")]
    pub file: PathBuf,
    #[command(flatten)]
    pub quiet: QuietArgs,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum MergeMode {
    /// Add the stacks whose names are free; leave existing ones alone.
    SkipExisting,
}

#[derive(Args, Debug)]
pub struct ImportAllArgs {
    /// Import a whole-instance archive made by `pbackend export --all`.
    #[arg(long, required = true)]
    pub all: bool,
    /// The archive.
    pub file: PathBuf,
    /// How to merge into a database that already has stacks (default: refuse).
    #[arg(long, value_enum)]
    pub merge: Option<MergeMode>,
    #[command(flatten)]
    pub quiet: QuietArgs,
}

pub fn export_all(db: &DbArgs, a: ExportAllArgs) -> CliResult {
    let off = Offline::open(db, OpenOptions::default())?;
    let progress = Arc::new(Reporter::new(a.quiet.quiet));
    let r = off.run(off.engine.export_all(&a.file, progress))?;
    let size = std::fs::metadata(&a.file).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "Exported {} stacks ({} records, {}) to {}.",
        r.stacks,
        r.records,
        crate::cli::output::bytes(size as i64),
        a.file.display()
    );
    Ok(())
}

pub fn import_all(db: &DbArgs, a: ImportAllArgs) -> CliResult {
    if !a.file.exists() {
        return Err(CliError::Invalid(format!(
            "no archive at {}",
            a.file.display()
        )));
    }
    let off = Offline::open(
        db,
        OpenOptions {
            create: true,
            need_key: true,
            exclusive: Some("an import must have the database to itself"),
        },
    )?;
    let merge = match a.merge {
        None => Merge::Refuse,
        Some(MergeMode::SkipExisting) => Merge::SkipExisting,
    };
    let progress = Arc::new(Reporter::new(a.quiet.quiet));
    let r = off.run(off.engine.import_all(&a.file, merge, progress))?;
    eprintln!(
        "Imported {} stacks ({} records) into {}.",
        r.stacks,
        r.records,
        db.db.display()
    );
    if !r.skipped_stacks.is_empty() {
        eprintln!(
            "Skipped {} stacks that already exist: {}",
            r.skipped_stacks.len(),
            r.skipped_stacks.join(", ")
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Where to write the backup: a directory (created if missing) or `s3://bucket/prefix`
    /// (S3 credentials, region and endpoint from the AWS_* environment variables). It gets
    /// an archive `pbackend-<UTC time>.pbk` and its `.sha256`. Safe while the server runs:
    /// the backup is one consistent snapshot.
    #[arg(long = "to", value_name = "DEST")]
    pub to: String,
    /// Complete backups to keep in DEST; after a successful backup the oldest beyond this are
    /// deleted. 0 keeps them all.
    #[arg(long, default_value_t = 0)]
    pub keep: usize,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub quiet: QuietArgs,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A backup made by `pbackend backup` (its `.sha256` beside it), or a directory or
    /// `s3://bucket/prefix` of them (the newest is restored). Its checksum and master key are
    /// checked before anything is written; the database (--db) must be new or empty.
    pub from: String,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub quiet: QuietArgs,
}

pub fn backup(db: &DbArgs, a: BackupArgs) -> CliResult {
    let off = Offline::open(db, OpenOptions::default())?;
    let progress = Arc::new(Reporter::new(
        a.quiet.quiet || a.output.output == Format::Json,
    ));
    let dest = Destination::parse(&a.to)?;
    let r = off.run(off.engine.backup_to(&dest, a.keep, progress))?;
    if a.output.output == Format::Json {
        return print_json(&r);
    }
    println!(
        "Backed up {} stacks ({} records, {}) to {} in {:.1} s (SHA-256 {}).",
        r.stacks,
        r.records,
        crate::cli::output::bytes(r.backup.bytes as i64),
        r.backup.location,
        r.seconds,
        r.backup.sha256
    );
    if !r.pruned.is_empty() {
        println!(
            "Deleted {} older backups beyond --keep {}: {}",
            r.pruned.len(),
            a.keep,
            r.pruned.join(", ")
        );
    }
    Ok(())
}

pub fn restore(db: &DbArgs, a: RestoreArgs) -> CliResult {
    // The checks come first, before the target database is even created.
    let Some(master) = db.master_key_if_available()? else {
        return Err(CliError::Invalid(format!(
            "restore needs the master key the backup was made with: pass --master-key-file \
             (or PULUMI_BACKEND_MASTER_KEY); {} does not exist",
            db.default_key_file().display()
        )));
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::io("cannot start the async runtime"))?;
    let backup = rt.block_on(crate::engine::backup::set::verify_backup(&a.from, &master))?;
    drop(rt);
    let off = Offline::open(
        db,
        OpenOptions {
            create: true,
            need_key: true,
            exclusive: Some("a restore must have the database to itself"),
        },
    )?;
    let progress = Arc::new(Reporter::new(
        a.quiet.quiet || a.output.output == Format::Json,
    ));
    let r = off.run(off.engine.restore_backup(backup, progress))?;
    if a.output.output == Format::Json {
        return print_json(&r);
    }
    println!(
        "Restored {} stacks ({} records) from {} into {} in {:.1} s; checksum and master key \
         verified.",
        r.stacks,
        r.records,
        r.backup.location,
        db.db.display(),
        r.seconds
    );
    Ok(())
}
