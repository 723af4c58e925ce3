//! `pbackend audit ls|export|prune`: the audit log read on the database directly, through
//! the same engine listing as `GET /api/orgs/{org}/auditlogs/v2`. Without `--org` it shows
//! every organization's events and the instance's own (credentials that matched nobody,
//! personal tokens).

use clap::{Args, Subcommand};

use crate::cli::args::{DbArgs, parse_duration_secs};
use crate::cli::error::{CliError, CliResult};
use crate::cli::offline::{Offline, OpenOptions};
use crate::cli::output::{OutputArgs, print_listing, time};
use crate::engine::integration::audit::{
    AuditEventView, AuditListing, ExportFormat, TimeSemantics, export,
};

#[derive(Args, Debug, Clone)]
pub struct Filters {
    /// Only this organization's events.
    #[arg(long)]
    org: Option<String>,
    /// Only events of this kind (`stack-created`, `auth-failure`, ...; see
    /// reference/integrations.md).
    #[arg(long)]
    event: Option<String>,
    /// Only events by this user (login).
    #[arg(long)]
    user: Option<String>,
    /// Events at or after: a Unix timestamp, RFC 3339, or a duration ago (`24h`, `7d`).
    #[arg(long)]
    since: Option<String>,
    /// Events at or before (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// The newest this many events.
    #[arg(long, default_value_t = 100)]
    limit: i64,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// List audit events, newest first.
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        filters: Filters,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Print audit events as CSV or CEF (for a SIEM), newest first.
    Export {
        #[command(flatten)]
        filters: Filters,
        /// csv or cef.
        #[arg(long, default_value = "csv")]
        format: String,
    },
    /// Delete events older than a duration (`90d`); `serve --audit-retention` does it daily.
    Prune {
        /// How long events are kept.
        #[arg(long)]
        older_than: String,
    },
}

/// A point in time as the operator writes it.
fn point(now: i64, s: &str) -> CliResult<i64> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs);
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    parse_duration_secs(s).map(|ago| now - ago).map_err(|_| {
        CliError::Invalid(format!(
            "invalid time {s:?}: use a Unix timestamp, RFC 3339 or a duration ago (24h)"
        ))
    })
}

fn read(off: &Offline, f: &Filters) -> CliResult<Vec<AuditEventView>> {
    let now = off.engine.now();
    let listing = AuditListing {
        start_time: f.since.as_deref().map(|s| point(now, s)).transpose()?,
        end_time: f.until.as_deref().map(|s| point(now, s)).transpose()?,
        event: f.event.clone(),
        user: f.user.clone(),
        continuation: None,
    };
    let page =
        off.run(
            off.engine
                .audit_log(f.org.as_deref(), listing, TimeSemantics::V2, f.limit),
        )?;
    Ok(page.audit_log_events)
}

pub fn run(db: &DbArgs, cmd: AuditCommand) -> CliResult {
    let off = Offline::open(db, OpenOptions::default())?;
    match cmd {
        AuditCommand::Ls { filters, out } => {
            let events = read(&off, &filters)?;
            print_listing(
                out.output,
                &events,
                &["TIME", "ORG", "EVENT", "USER", "SOURCE IP", "DESCRIPTION"],
                |e| {
                    vec![
                        time(e.timestamp),
                        e.org.clone().unwrap_or_else(|| "-".into()),
                        e.event.clone(),
                        e.user.github_login.clone(),
                        e.source_ip.clone(),
                        e.description.clone(),
                    ]
                },
            )
        }
        AuditCommand::Export { filters, format } => {
            let format = ExportFormat::parse(Some(&format))?;
            let events = read(&off, &filters)?;
            let page = crate::engine::integration::audit::AuditPage {
                audit_log_events: events,
                continuation_token: None,
            };
            print!("{}", export(&page, format));
            Ok(())
        }
        AuditCommand::Prune { older_than } => {
            let keep = parse_duration_secs(&older_than)?;
            let n = off.run(off.engine.prune_audit(keep))?;
            eprintln!("Deleted {n} audit event(s) older than {older_than}.");
            Ok(())
        }
    }
}
