//! How subcommands show things: tables (comfy-table) or JSON (`--output json`) on stdout,
//! progress on stderr — a bar on a terminal, plain lines otherwise, nothing with `--quiet`.

use crate::cli::error::{CliError, CliResult};
use std::io::IsTerminal;
use std::sync::Mutex;

use clap::{Args, ValueEnum};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::engine::operator::Progress;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// `--output` for commands that print listings.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Output format; JSON field names are documented in reference/cli.md.
    #[arg(long, value_enum, default_value_t = Format::Table, env = "PULUMI_BACKEND_OUTPUT")]
    pub output: Format,
}

/// `--quiet` for commands with long work.
#[derive(Args, Debug, Clone)]
pub struct QuietArgs {
    /// Show no progress.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn print_json<T: Serialize + ?Sized>(v: &T) -> CliResult {
    let text = serde_json::to_string_pretty(v)
        .map_err(|e| CliError::Failed(format!("cannot encode JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

pub fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.to_vec());
    for r in rows {
        t.add_row(r);
    }
    println!("{t}");
}

/// A listing as JSON (the items themselves) or as a table (one row per item).
pub fn print_listing<T: Serialize>(
    format: Format,
    items: &[T],
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> CliResult {
    match format {
        Format::Json => print_json(items),
        Format::Table => {
            print_table(headers, items.iter().map(row).collect());
            Ok(())
        }
    }
}

/// Unix seconds as an RFC 3339 UTC time.
pub fn time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

pub fn opt_time(secs: Option<i64>) -> String {
    secs.map(time).unwrap_or_else(|| "-".into())
}

pub fn bytes(n: i64) -> String {
    let n = n as f64;
    if n >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} GiB", n / 1024.0 / 1024.0 / 1024.0)
    } else if n >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / 1024.0 / 1024.0)
    } else if n >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// Progress on stderr.
pub struct Reporter {
    bar: Option<ProgressBar>,
    plain: bool,
    what: Mutex<String>,
}

impl Reporter {
    pub fn new(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        Reporter {
            bar: (!quiet && tty).then(ProgressBar::hidden),
            plain: !quiet && !tty,
            what: Mutex::new(String::new()),
        }
    }
}

impl Progress for Reporter {
    fn start(&self, total: u64, what: &str) {
        if let Ok(mut w) = self.what.lock() {
            *w = what.to_owned();
        }
        if let Some(bar) = &self.bar {
            let (style, len) = if total > 0 {
                (
                    ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {prefix}")
                        .map(|s| s.progress_chars("=> ")),
                    total,
                )
            } else {
                (
                    ProgressStyle::with_template("{spinner} {msg} {pos} {prefix}"),
                    0,
                )
            };
            if let Ok(s) = style {
                bar.set_style(s);
            }
            bar.set_length(len);
            bar.set_message(what.to_owned());
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
    }

    fn step(&self, item: &str) {
        if let Some(bar) = &self.bar {
            bar.set_prefix(item.to_owned());
            bar.inc(1);
        } else if self.plain {
            let what = self.what.lock().map(|w| w.clone()).unwrap_or_default();
            eprintln!("{what} {item}");
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
