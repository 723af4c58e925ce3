//! `pbackend adopt`: bring every stack of a DIY backend, with its history, into the database.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::cli::args::DbArgs;
use crate::cli::error::{CliError, CliResult};
use crate::cli::offline::{Offline, OpenOptions};
use crate::cli::output::{Format, OutputArgs, QuietArgs, Reporter, print_json, print_table};
use crate::engine::adopt::AdoptOptions;
use crate::engine::adopt::diy::DiySource;

#[derive(Args, Debug)]
pub struct AdoptArgs {
    /// The DIY backend: `file:///path` (or a path) holding `.pulumi/`, or
    /// `s3://bucket/prefix` (credentials from the AWS_* variables).
    pub backend: String,
    /// The organization the stacks go to.
    #[arg(long, default_value = "organization")]
    pub org: String,
    /// A file holding the passphrase of passphrase-encrypted stacks (else
    /// PULUMI_CONFIG_PASSPHRASE, as the CLI reads it).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// The URL users `pulumi login` to (the server's --public-url); adopted states name it
    /// as their secrets service, as the CLI would.
    #[arg(long, env = "PULUMI_BACKEND_PUBLIC_URL")]
    pub public_url: String,
    /// Read and check everything (passphrase included), write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub quiet: QuietArgs,
}

pub fn run(db: &DbArgs, a: AdoptArgs) -> CliResult {
    let passphrase = match &a.passphrase_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(CliError::io(format!("cannot read {}", f.display())))?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        ),
        None => std::env::var("PULUMI_CONFIG_PASSPHRASE").ok(),
    };
    let src = DiySource::parse(&a.backend)?;
    let off = Offline::open(
        db,
        OpenOptions {
            create: true,
            need_key: true,
            exclusive: None,
        },
    )?;
    let opts = AdoptOptions {
        org: a.org.clone(),
        passphrase,
        public_url: a.public_url.trim_end_matches('/').to_owned(),
        dry_run: a.dry_run,
    };
    let progress = Arc::new(Reporter::new(
        a.quiet.quiet || a.output.output == Format::Json,
    ));
    let report = off.run(off.engine.adopt(&src, &opts, progress))?;
    let failed = report.iter().filter(|r| !r.adopted && !a.dry_run).count()
        + report
            .iter()
            .filter(|r| a.dry_run && r.outcome.starts_with("left out"))
            .count();
    match a.output.output {
        Format::Json => print_json(&report)?,
        Format::Table => {
            print_table(
                &["STACK", "UPDATES", "VERSIONS", "SECRETS", "TAGS", "OUTCOME"],
                report
                    .iter()
                    .map(|r| {
                        vec![
                            r.stack.clone(),
                            r.updates.to_string(),
                            r.versions.to_string(),
                            r.secrets.to_string(),
                            r.tags.to_string(),
                            r.outcome.clone(),
                        ]
                    })
                    .collect(),
            );
        }
    }
    if failed > 0 {
        return Err(CliError::Failed(format!(
            "{failed} of {} stacks of {} were left out (see the table)",
            report.len(),
            src.shown()
        )));
    }
    Ok(())
}
