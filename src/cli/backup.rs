//! `pbackend export --all` and `pbackend import --all`: whole-instance disaster recovery.

use crate::cli::error::{CliError, CliResult};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};

use crate::cli::args::DbArgs;
use crate::cli::offline::{Offline, OpenOptions};
use crate::cli::output::{QuietArgs, Reporter};
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
