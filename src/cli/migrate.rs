//! `pbackend migrate-store`: moves a whole instance from one database to another (SQLite to
//! PostgreSQL, or back), verified.

use crate::cli::error::CliResult;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::cli::args::DbArgs;
use crate::cli::offline::{Offline, OpenOptions};
use crate::cli::output::{QuietArgs, Reporter};

#[derive(Args, Debug)]
pub struct MigrateStoreArgs {
    /// The database to copy from: a SQLite file or a postgres:// URL. Stop every server on it
    /// first: writes made during the copy would not be in the target.
    #[arg(long, value_name = "DB")]
    pub from: PathBuf,
    /// The database to copy into: a SQLite file (created) or a postgres:// URL. It must hold
    /// no stacks and no tokens.
    #[arg(long, value_name = "DB")]
    pub to: PathBuf,
    #[command(flatten)]
    pub quiet: QuietArgs,
}

pub fn run(db: &DbArgs, a: MigrateStoreArgs) -> CliResult {
    let with = |path: &PathBuf| DbArgs {
        db: path.clone(),
        ..db.clone()
    };
    let source = Offline::open(
        &with(&a.from),
        OpenOptions {
            exclusive: Some("migrate-store copies a database that nothing else writes"),
            ..OpenOptions::default()
        },
    )?;
    let target = Offline::open(
        &with(&a.to),
        OpenOptions {
            create: true,
            exclusive: Some("migrate-store writes a database nothing else uses"),
            ..OpenOptions::default()
        },
    )?;
    let progress = Arc::new(Reporter::new(a.quiet.quiet));
    let report = source.run(source.engine.copy_instance_to(&target.engine, progress))?;
    eprintln!(
        "Copied {} stacks ({} records) from {} to {}; verified: both dump to sha256 {}.",
        report.stacks,
        report.records,
        source.shown(),
        target.shown(),
        report.target_digest
    );
    Ok(())
}
