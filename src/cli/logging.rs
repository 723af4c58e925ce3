//! Where logs go. Three streams, each to stderr, a file or nowhere, in text or JSON:
//!
//! * operational — everything the process says about itself (`--log-file`, `--log-format`,
//!   filtered by `--log-level`);
//! * access — one line per request, target `pbackend::access` (`--access-log`): with the
//!   operational stream by default, at debug for answers, info for refusals, error for
//!   failures; to a file of its own, every request whatever the level;
//! * audit — one line per audit event once its change has committed, target
//!   `pbackend::audit` (`--audit-log`, off by default; the audit log itself is always in the
//!   database).
//!
//! Files are opened for appending, so `logrotate` with `copytruncate` works beside them.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Mutex;

use clap::Args;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, FilterFn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;
use crate::cli::error::{CliError, CliResult};

use crate::telemetry::{ACCESS_TARGET, AUDIT_TARGET};

/// A stream's destination: `stderr`, `off`, or a file path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Stderr,
    Off,
    File(PathBuf),
}

impl std::str::FromStr for Dest {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "stderr" | "" => Dest::Stderr,
            "off" | "none" => Dest::Off,
            path => Dest::File(PathBuf::from(path)),
        })
    }
}

impl std::fmt::Display for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dest::Stderr => f.write_str("stderr"),
            Dest::Off => f.write_str("off"),
            Dest::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    /// Where the operational log goes: `stderr` or a file (appended to).
    #[arg(
        long,
        global = true,
        env = "PULUMI_BACKEND_LOG_FILE",
        default_value = "stderr",
        value_name = "stderr|FILE"
    )]
    pub log_file: Dest,

    /// Where the access log (one line per request) goes: `stderr` (with the operational log,
    /// answers at debug level), `off`, or a file of its own (every request).
    #[arg(
        long,
        global = true,
        env = "PULUMI_BACKEND_ACCESS_LOG",
        default_value = "stderr",
        value_name = "stderr|off|FILE"
    )]
    pub access_log: Dest,

    /// Format of the access log (default: --log-format).
    #[arg(
        long,
        global = true,
        env = "PULUMI_BACKEND_ACCESS_LOG_FORMAT",
        value_enum
    )]
    pub access_log_format: Option<LogFormat>,

    /// Where audit events also go as log lines, once their change has committed: `off`,
    /// `stderr` or a file (for a log shipper or SIEM; the audit log is always in the
    /// database too).
    #[arg(
        long,
        global = true,
        env = "PULUMI_BACKEND_AUDIT_LOG",
        default_value = "off",
        value_name = "stderr|off|FILE"
    )]
    pub audit_log: Dest,

    /// Format of the audit log lines (default: --log-format).
    #[arg(
        long,
        global = true,
        env = "PULUMI_BACKEND_AUDIT_LOG_FORMAT",
        value_enum
    )]
    pub audit_log_format: Option<LogFormat>,

    /// Send traces to this OpenTelemetry collector over OTLP/HTTP (JSON), e.g.
    /// `http://otel-collector:4318`: a span per request with child spans for its store
    /// transactions. Off unless given.
    #[arg(
        long,
        global = true,
        env = "PULUMI_BACKEND_OTEL_ENDPOINT",
        value_name = "URL"
    )]
    pub otel_endpoint: Option<String>,
}

type Boxed = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

fn open(path: &PathBuf) -> CliResult<File> {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(CliError::io(format!(
            "cannot open the log file {}",
            path.display()
        )))
}

/// One fmt layer writing to `dest` in `format`, or `None` for `off`.
fn layer(dest: &Dest, format: LogFormat) -> CliResult<Option<Boxed>> {
    use std::io::IsTerminal;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let (writer, ansi) = match dest {
        Dest::Off => return Ok(None),
        Dest::Stderr => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
        Dest::File(p) => (BoxMakeWriter::new(Mutex::new(open(p)?)), false),
    };
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    Ok(Some(match format {
        LogFormat::Text => layer.with_ansi(ansi).boxed(),
        LogFormat::Json => layer.json().boxed(),
    }))
}

/// Installs the process's logging. A log file that cannot be opened is an error here, at
/// start, rather than silence later.
pub fn init(format: LogFormat, level: &str, args: &LogArgs) -> CliResult {
    let access_apart = args.access_log != Dest::Stderr;
    let mut layers: Vec<Boxed> = Vec::new();

    // Operational: the level filter, minus the streams routed elsewhere.
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let main = layer(&args.log_file, format)?.map(|l| {
        l.with_filter(FilterFn::new(move |m| {
            let t = m.target();
            !(t == AUDIT_TARGET || (access_apart && t == ACCESS_TARGET))
        }))
        .with_filter(filter)
        .boxed()
    });
    layers.extend(main);

    if access_apart {
        let access = layer(&args.access_log, args.access_log_format.unwrap_or(format))?;
        layers.extend(access.map(|l| {
            l.with_filter(FilterFn::new(|m| m.target() == ACCESS_TARGET))
                .boxed()
        }));
    }
    // Audit lines go to their destination whatever the level.
    let audit = layer(&args.audit_log, args.audit_log_format.unwrap_or(format))?;
    layers.extend(audit.map(|l| {
        l.with_filter(FilterFn::new(|m| m.target() == AUDIT_TARGET))
            .boxed()
    }));

    if let Some(endpoint) = &args.otel_endpoint {
        let otel = crate::cli::otel::layer(endpoint)?;
        layers.push(
            otel.with_filter(FilterFn::new(|m| {
                m.is_span() && m.target().starts_with("pbackend")
            }))
            .boxed(),
        );
    }

    let _ = tracing_subscriber::registry().with(layers).try_init();
    Ok(())
}
