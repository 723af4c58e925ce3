//! `pbackend serve`.

use crate::cli::error::{CliError, CliResult};
use crate::engine::integration::delivery::WebhookConfig;
use crate::server::client_addr::TrustedProxies;
use crate::server::ratelimit::RateLimits;
use crate::store::lock::LockMode;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::net::TcpListener;

use crate::cli::args::{DbArgs, KeySource, Secret, parse_duration_secs};
use crate::engine::backup::dest::Destination;
use crate::engine::clock::SystemClock;
use crate::engine::{Engine, EngineConfig};
use crate::server::ServerConfig;
use crate::store::open::open;
use crate::store::postgres::PgOptions;
use crate::store::sqlite::{Durability, SqliteOptions};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PULUMI_BACKEND_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,

    /// Serve HTTPS with this PEM certificate chain (leaf first). It and --tls-key are loaded
    /// again when either file changes on disk, and on SIGHUP.
    #[arg(long, env = "PULUMI_BACKEND_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "PULUMI_BACKEND_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve plain HTTP on a non-loopback --addr. Refused without this flag: tokens and
    /// secrets would cross the network in clear. Give it when a proxy in front terminates
    /// TLS (and set --trusted-proxies to that proxy).
    #[arg(
        long,
        env = "PULUMI_BACKEND_INSECURE_HTTP",
        conflicts_with = "tls_cert"
    )]
    pub insecure_http: bool,

    /// Serve the web console at the API's address (`--console=false` turns it off). Point
    /// the CLI's links at it with PULUMI_CONSOLE_DOMAIN=<host:port>, printed at start.
    #[arg(long, env = "PULUMI_BACKEND_CONSOLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub console: bool,

    /// Proxies (addresses or networks, comma-separated: `10.0.0.0/8,192.168.1.10`) whose
    /// X-Forwarded-For / X-Real-IP headers name the client. The client's address then goes to
    /// the logs, audit events and leases; from anyone else those headers are ignored.
    /// Default: none.
    #[arg(long, env = "PULUMI_BACKEND_TRUSTED_PROXIES", default_value = "", hide_default_value = true, value_parser = TrustedProxies::parse)]
    pub trusted_proxies: TrustedProxies,

    /// On SIGTERM or SIGINT: stop accepting, fail /readyz, and give requests in flight this
    /// long to finish before their connections are closed (the CLI retries what was cut).
    #[arg(long, env = "PULUMI_BACKEND_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration_secs)]
    pub shutdown_grace: i64,

    #[command(flatten)]
    pub db: DbArgs,

    #[command(flatten)]
    pub auth: crate::cli::auth::AuthArgs,

    /// The API token that grants access (as `--user`). When not given, the token from the
    /// previous start is kept; on a new database one is generated and printed once.
    #[arg(
        long,
        env = "PULUMI_BACKEND_SINGLE_TENANT_TOKEN",
        hide_env_values = true
    )]
    pub single_tenant_token: Option<Secret>,

    /// The organization stacks live in (the CLI's default organization).
    #[arg(long, env = "PULUMI_BACKEND_ORG", default_value = "organization")]
    pub org: String,

    /// The user name the API token acts as.
    #[arg(long, env = "PULUMI_BACKEND_USER", default_value = "admin")]
    pub user: String,

    /// How long audit events are kept (a duration: 365d, 90d, ...); older ones are deleted
    /// daily. `0` keeps them forever.
    #[arg(long, env = "PULUMI_BACKEND_AUDIT_RETENTION", default_value = "365d", value_parser = parse_retention)]
    pub audit_retention: i64,

    /// Address of the management listener (`/healthz`, `/readyz`, `/metrics`); off unless
    /// given. Keep it off the public network.
    #[arg(long, env = "PULUMI_BACKEND_MANAGEMENT_ADDR")]
    pub management_addr: Option<SocketAddr>,

    /// Let webhooks deliver to loopback addresses (refused by default, as are link-local
    /// and cloud-metadata addresses, always).
    #[arg(long, env = "PULUMI_BACKEND_WEBHOOKS_ALLOW_LOOPBACK")]
    pub webhooks_allow_loopback: bool,

    /// Attempts per webhook delivery before it is given up (retries back off from 1 s,
    /// doubling, up to an hour apart).
    #[arg(long, env = "PULUMI_BACKEND_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(i64).range(1..=50))]
    pub webhook_max_attempts: i64,

    /// The longest one webhook delivery may take.
    #[arg(long, env = "PULUMI_BACKEND_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = parse_duration_secs)]
    pub webhook_timeout: i64,

    /// Take scheduled backups into this directory or `s3://bucket/prefix` (S3 credentials,
    /// region and endpoint from the AWS_* environment variables): `pbackend-<UTC time>.pbk`
    /// with a `.sha256`, as `pbackend backup` makes them; restore with `pbackend restore`.
    /// Off unless given. With replicas on PostgreSQL, give it to one of them.
    #[arg(long, env = "PULUMI_BACKEND_BACKUP_TO", value_name = "DEST")]
    pub backup_to: Option<String>,

    /// How often to back up to --backup-to. The first backup is due one interval after the
    /// newest one already there (at once when there is none).
    #[arg(long, env = "PULUMI_BACKEND_BACKUP_SCHEDULE", default_value = "1h", value_parser = parse_duration_secs)]
    pub backup_schedule: i64,

    /// Backups to keep in --backup-to; the oldest beyond this are deleted after each
    /// successful backup (0 keeps all).
    #[arg(long, env = "PULUMI_BACKEND_BACKUP_KEEP", default_value_t = 48)]
    pub backup_keep: usize,

    /// How long an update's lease lasts without renewal (seconds, or with s/m/h). The CLI
    /// renews every 2.5 minutes assuming 5; keep it at 5m or more outside tests.
    #[arg(long, env = "PULUMI_BACKEND_LEASE_DURATION", default_value = "5m", value_parser = parse_duration_secs)]
    pub lease_duration: i64,

    /// Versions of each stack's state to keep (older ones are deleted).
    #[arg(long, env = "PULUMI_BACKEND_MAX_STATE_VERSIONS", default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
    pub max_state_versions: i64,

    /// Checkpoints smaller than this are uploaded whole instead of as deltas.
    #[arg(long, env = "PULUMI_BACKEND_DELTA_CUTOFF_BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(i64).range(0..))]
    pub delta_cutoff_bytes: i64,

    /// Largest decompressed body accepted for a whole deployment (checkpoints, import).
    /// Other bodies are capped at 32 MiB and journal batches at 64 MiB (or this, if smaller).
    #[arg(long, env = "PULUMI_BACKEND_MAX_STATE_BYTES", default_value_t = 512 * 1024 * 1024)]
    pub max_state_bytes: usize,

    /// Highest journal protocol offered to a CLI that asks for journaling (CLI v3.277+ asks
    /// for 2, earlier ones for 1); 0 makes every CLI send checkpoints instead.
    #[arg(long, env = "PULUMI_BACKEND_MAX_JOURNAL_VERSION", default_value_t = 2, value_parser = clap::value_parser!(i64).range(0..=2))]
    pub max_journal_version: i64,

    /// Connections to a PostgreSQL database held open at most (each write is one
    /// transaction on one of them).
    #[arg(long, env = "PULUMI_BACKEND_DB_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub db_pool_size: u32,

    #[command(flatten)]
    pub limits: LimitArgs,

    /// What an acknowledged write survives: `normal` survives the process being killed;
    /// `full` also survives an OS crash or power loss, at the cost of an fsync per write
    /// (see reference/reliability.md for the measured cost).
    #[arg(long, env = "PULUMI_BACKEND_DURABILITY", value_enum, default_value_t = DurabilityArg::Normal)]
    pub durability: DurabilityArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DurabilityArg {
    Normal,
    Full,
}

/// Limits on what clients can make the server do at once.
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Open client connections at most; further ones wait until one closes.
    #[arg(long, env = "PULUMI_BACKEND_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Requests handled at once; more wait up to --request-queue-timeout, then get 503.
    #[arg(long, env = "PULUMI_BACKEND_MAX_CONCURRENT_REQUESTS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_requests: u32,

    /// How long a request waits for one of those slots (seconds, or with s/m/h).
    #[arg(long, env = "PULUMI_BACKEND_REQUEST_QUEUE_TIMEOUT", default_value = "10s", value_parser = parse_duration_secs)]
    pub request_queue_timeout: i64,

    /// Request-body bytes (as received and decompressed) held at once across all requests;
    /// beyond it requests get 503 and are retried. Default and minimum: 1.25 × --max-state-bytes.
    #[arg(long, env = "PULUMI_BACKEND_MAX_INFLIGHT_BODY_BYTES")]
    pub max_inflight_body_bytes: Option<usize>,

    /// A client must send a request's headers within this.
    #[arg(long, env = "PULUMI_BACKEND_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration_secs)]
    pub header_read_timeout: i64,

    /// A request body may pause this long between two pieces.
    #[arg(long, env = "PULUMI_BACKEND_BODY_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration_secs)]
    pub body_idle_timeout: i64,

    /// A request body must arrive whole within this.
    #[arg(long, env = "PULUMI_BACKEND_BODY_DEADLINE", default_value = "10m", value_parser = parse_duration_secs)]
    pub body_deadline: i64,

    /// Writes waiting for the database writer at most; a write that finds the queue full
    /// for 10 s gets 503.
    #[arg(long, env = "PULUMI_BACKEND_WRITER_QUEUE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub writer_queue: u32,

    /// Reads (GET/HEAD) each credential may make, per window: `100/10s,600/1m` (the
    /// service's published limits), or `off`. Over it: 429 with Retry-After, which the CLI
    /// honours. Writes and calls under an update's lease are never limited; each replica
    /// counts its own.
    #[arg(long, env = "PULUMI_BACKEND_RATE_LIMIT", default_value = "100/10s,600/1m", value_parser = RateLimits::parse)]
    pub rate_limit: RateLimits,
}

impl ServeArgs {
    /// Clients reach the server over HTTPS: its own TLS, or a proxy's public URL.
    fn https(&self, tls: bool) -> bool {
        tls || self
            .auth
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }

    pub fn server_config(&self, tls: Option<crate::server::tls::Tls>) -> ServerConfig {
        let l = &self.limits;
        let secs = |s: i64| Duration::from_secs(s.max(1) as u64);
        ServerConfig {
            max_connections: l.max_connections as usize,
            max_concurrent_requests: l.max_concurrent_requests as usize,
            queue_timeout: secs(l.request_queue_timeout),
            // Never below one whole body (inflated, plus its gzip as received): a body the
            // limit admits must be able to arrive on its own.
            max_inflight_body_bytes: l.max_inflight_body_bytes.unwrap_or(0).max(
                self.max_state_bytes
                    .saturating_add(self.max_state_bytes / 4),
            ),
            header_read_timeout: secs(l.header_read_timeout),
            body_idle_timeout: secs(l.body_idle_timeout),
            body_deadline: secs(l.body_deadline),
            rate_limits: l.rate_limit.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            secure_cookies: self.https(tls.is_some()),
            tls,
            shutdown_grace: Duration::from_secs(self.shutdown_grace.max(0) as u64),
            console: self.console,
        }
    }

    pub fn pg_options(&self) -> PgOptions {
        PgOptions {
            pool_size: self.db_pool_size as usize,
        }
    }

    pub fn store_options(&self) -> SqliteOptions {
        SqliteOptions {
            durability: match self.durability {
                DurabilityArg::Normal => Durability::Normal,
                DurabilityArg::Full => Durability::Full,
            },
            writer_queue: self.limits.writer_queue as usize,
        }
    }

    pub fn engine_config(&self, public_url: &str) -> CliResult<EngineConfig> {
        Ok(EngineConfig {
            org: self.org.clone(),
            user: self.user.clone(),
            lease_duration: self.lease_duration,
            max_state_versions: self.max_state_versions,
            delta_cutoff_bytes: self.delta_cutoff_bytes,
            max_state_bytes: self.max_state_bytes,
            max_journal_version: self.max_journal_version,
            login: self.auth.login_config(public_url)?,
            webhooks: WebhookConfig {
                allow_loopback: self.webhooks_allow_loopback,
                max_attempts: self.webhook_max_attempts,
                timeout: Duration::from_secs(self.webhook_timeout.max(1) as u64),
                first_retry_secs: 1,
            },
        })
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

fn parse_retention(s: &str) -> CliResult<i64> {
    if s.trim() == "0" {
        return Ok(0);
    }
    parse_duration_secs(s)
}

/// Deletes audit events past their retention and old webhook delivery records: at start,
/// then once a day.
async fn prune_daily(engine: Arc<Engine>, audit_keep_secs: i64) {
    let mut tick = tokio::time::interval(Duration::from_secs(86_400));
    loop {
        tick.tick().await;
        if audit_keep_secs > 0 {
            match engine.prune_audit(audit_keep_secs).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "pruned audit events past their retention"),
                Err(e) => tracing::warn!(error = %e, "pruning the audit log failed"),
            }
        }
        // Webhook delivery records are kept 30 days (the audit log records hook changes).
        match engine.prune_deliveries(30 * 86_400).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned webhook delivery records"),
            Err(e) => tracing::warn!(error = %e, "pruning webhook delivery records failed"),
        }
    }
}

/// The URL to give `pulumi login` for a listening address.
pub fn login_url(addr: SocketAddr, https: bool) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        other => other,
    };
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

/// Plain HTTP only where nothing crosses a network: on loopback, or when the operator says
/// a proxy in front terminates TLS.
/// The host (and port) of a URL: what `PULUMI_CONSOLE_DOMAIN` takes, the CLI keeping the
/// scheme of the URL it logged in to.
fn console_domain(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

fn check_plain_http(addr: SocketAddr, args: &ServeArgs) -> CliResult {
    if args.tls_cert.is_some() || args.insecure_http || addr.ip().is_loopback() {
        return Ok(());
    }
    Err(CliError::Invalid(format!(
        "refusing to serve plain HTTP on {addr}, which is reachable from other machines: API \
         tokens and decrypted secrets would cross the network in clear. Give --tls-cert and \
         --tls-key, or --insecure-http when a proxy in front terminates TLS"
    )))
}

fn load_tls(args: &ServeArgs) -> CliResult<Option<crate::server::tls::Tls>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let files = crate::server::tls::TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
    };
    crate::server::tls::Tls::load(files)
        .map(Some)
        .map_err(|e| CliError::Invalid(format!("TLS: {e}")))
}

pub fn run(args: ServeArgs) -> CliResult {
    crate::engine::names::check_org(&args.org)?;
    if args.lease_duration < 300 {
        tracing::warn!(
            lease_seconds = args.lease_duration,
            "--lease-duration is under 5 minutes: CLIs assume 5 and first renew after 2.5, so \
             updates running longer than the lease will be refused"
        );
    }
    crate::engine::memory::limit_arenas();
    // Blocking work (SQLite reads, gzip, parsing) needs a few threads, not tokio's default
    // of 512: each thread can bring its own allocator arena and stack.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .map_err(CliError::io("cannot start the async runtime"))?;
    let location = args.db.location();
    // Held for the server's lifetime: maintenance commands that need the database to
    // themselves see it and refuse; so does a second server on a SQLite file. Servers
    // sharing a PostgreSQL database hold it shared: they are replicas of one service.
    let _lock = crate::cli::offline::instance_lock(
        &location,
        LockMode::Serve,
        "only one server may serve a SQLite database (use PostgreSQL for replicas)",
    )?;
    rt.block_on(async move {
        let store = open(&location, args.store_options(), args.pg_options())
            .await
            .map_err(|source| CliError::Open {
                db: location.shown(),
                source,
            })?;
        let listener = TcpListener::bind(&args.addr)
            .await
            .map_err(CliError::io(format!("cannot listen on {}", args.addr)))?;
        let local = listener
            .local_addr()
            .map_err(CliError::io("cannot read the listening address"))?;
        check_plain_http(local, &args)?;
        let tls = load_tls(&args)?;
        let listening = login_url(local, tls.is_some());
        // What users reach: the public URL when one is set (a proxy, a DNS name), else the
        // listening address. Every URL printed or logged is this one.
        let url = args
            .auth
            .public_url
            .clone()
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| listening.clone());
        let has_key = crate::engine::bootstrap_has_master_key(store.store.as_ref()).await?;
        let (master, key_source) = args.db.master_key(!has_key)?;
        let (engine, boot) = Engine::open(
            store.store.clone(),
            master,
            args.single_tenant_token.as_ref().map(|t| t.0.clone()),
            args.engine_config(&listening)?,
            Arc::new(SystemClock),
        )
        .await?;
        if let KeySource::Generated(path) = &key_source {
            println!(
                "Generated a master key and saved it to {} (owner-only). Keep a copy somewhere \
                 safe: without it the secrets in this database cannot be decrypted.",
                path.display()
            );
        }
        if let Some(token) = &boot.generated_token {
            println!(
                "Generated an API token (shown once; only its hash is stored):\n\n    {token}\n"
            );
            println!("Log in with:\n\n    PULUMI_ACCESS_TOKEN={token} pulumi login {url}\n");
        }
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            url = %url,
            listening = %listening,
            db = %location.shown(),
            org = %args.org,
            "pbackend is serving"
        );
        if args.console {
            println!(
                "Web console at {url}; for the CLI's links to open it, set\n\n    \
                 PULUMI_CONSOLE_DOMAIN={}\n",
                console_domain(&url)
            );
        }
        let engine = Arc::new(engine);
        tokio::spawn(prune_daily(engine.clone(), args.audit_retention));
        if let Some(dest) = &args.backup_to {
            let dest = Destination::parse(dest)?;
            let every = Duration::from_secs(args.backup_schedule.max(1) as u64);
            tracing::info!(dest = %dest.shown(), every_secs = every.as_secs(), keep = args.backup_keep, "scheduled backups");
            tokio::spawn(engine.clone().run_scheduled_backups(dest, every, args.backup_keep));
        }
        let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let management = match args.management_addr {
            Some(addr) => {
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(CliError::io(format!("cannot listen on {addr}")))?;
                let m = crate::server::management::Management {
                    engine: engine.clone(),
                    draining: draining.clone(),
                    sqlite_file: match &location {
                        crate::store::open::Location::Sqlite(p) => Some(p.clone()),
                        crate::store::open::Location::Postgres(_) => None,
                    },
                };
                tracing::info!(addr = %addr, "management listener: /healthz, /readyz, /metrics");
                Some(tokio::spawn(crate::server::management::serve(l, m)))
            }
            None => None,
        };
        let shutdown = {
            let draining = draining.clone();
            async move {
                shutdown_signal().await;
                draining.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        };
        let reload = match tls.clone() {
            Some(t) => tokio::spawn(t.watch()),
            None => tokio::spawn(crate::server::tls::absorb_hangups()),
        };
        let result =
            crate::server::serve(listener, engine, args.server_config(tls), shutdown).await;
        reload.abort();
        if let Some(m) = management {
            m.abort();
        }
        store.close();
        result.map_err(CliError::io("the server stopped"))
    })
}
