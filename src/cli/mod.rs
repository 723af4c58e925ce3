//! The `pbackend` command line: `serve` runs the server; the other subcommands maintain the
//! database directly, through the same engine and store as the server.
//!
//! Exit codes: 0 success, 1 the operation failed, 2 usage error (clap's own).

pub mod access;
pub mod adopt;
pub mod args;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod completions;
pub mod config;
pub mod error;
pub mod jsonfmt;
pub mod logging;
pub mod maint;
pub mod migrate;
pub mod offline;
pub mod otel;
pub mod output;
pub mod serve;
pub mod stack;
pub mod tokens;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "pbackend",
    version,
    about = "A self-hosted, Pulumi Cloud-compatible state backend",
    long_about = "A self-hosted, Pulumi Cloud-compatible state backend.\n\n\
        `pbackend serve` runs the HTTP API that the unchanged `pulumi` CLI logs in to \
        (`pulumi login http://HOST:PORT`). The other subcommands maintain the database \
        directly, through the same rules as the server.\n\n\
        Every flag can also be set through an environment variable PULUMI_BACKEND_<FLAG> \
        (for example PULUMI_BACKEND_DB), or in the --config file under its long name; a \
        flag given on the command line wins over the environment, which wins over the file."
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "PULUMI_BACKEND_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive such as
    /// `pbackend=debug`. Successful requests are logged at debug.
    #[arg(
        long,
        global = true,
        env = "PULUMI_BACKEND_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,

    #[command(flatten)]
    pub logs: logging::LogArgs,

    #[command(flatten)]
    pub config: config::ConfigArg,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP server.
    Serve(Box<serve::ServeArgs>),
    /// Inspect and maintain stacks on the database directly.
    #[command(alias = "stacks")]
    Stack {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(subcommand)]
        cmd: stack::StackCommand,
    },
    /// Export the whole instance to an archive (`--all`), for disaster recovery.
    Export {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(flatten)]
        args: backup::ExportAllArgs,
    },
    /// Restore a whole-instance archive (`--all`) into a database.
    Import {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(flatten)]
        args: backup::ImportAllArgs,
    },
    /// Take a checksummed backup into a directory, safe while the server runs (`--keep N`
    /// rotates).
    Backup {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(flatten)]
        args: backup::BackupArgs,
    },
    /// Restore a backup made by `pbackend backup` into a new database, after checking its
    /// checksum and master key.
    Restore {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(flatten)]
        args: backup::RestoreArgs,
    },
    /// Adopt every stack of a DIY backend (`file://…` or `s3://…`), with its history and
    /// secrets re-encrypted for the service.
    Adopt {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(flatten)]
        args: adopt::AdoptArgs,
    },
    /// Create, list and revoke API access tokens.
    Tokens {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(subcommand)]
        cmd: tokens::TokensCommand,
    },
    /// Users: list, create, disable (their tokens stop at the next request), enable.
    Users {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(subcommand)]
        cmd: access::UsersCommand,
    },
    /// Organizations, their members and default stack permission.
    Orgs {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(subcommand)]
        cmd: access::OrgsCommand,
    },
    /// Teams: members and the stacks they may use.
    Teams {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(subcommand)]
        cmd: access::TeamsCommand,
    },
    /// Custom roles and their assignment to teams.
    Roles {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(subcommand)]
        cmd: access::RolesCommand,
    },
    /// OIDC trust policies for `pulumi login --oidc-token`.
    Oidc {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(subcommand)]
        cmd: access::OidcCommand,
    },
    /// Read the audit log: every change and refused request, by whom, from where.
    Audit {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(subcommand)]
        cmd: audit::AuditCommand,
    },
    /// Re-wrap every stack's secrets key under a new master key, in one transaction.
    RotateKeys {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(flatten)]
        args: maint::RotateKeysArgs,
    },
    /// Delete old versions of stack states beyond --keep.
    PruneVersions {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(flatten)]
        args: maint::PruneArgs,
    },
    /// Check every stored version, journal, key and the database itself; exit 1 on problems.
    Verify {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(flatten)]
        args: maint::VerifyArgs,
    },
    /// Rebuild a stack's state from its stored journal.
    ReplayJournal {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(flatten)]
        args: maint::ReplayArgs,
    },
    /// Copy a whole instance to another database (SQLite to PostgreSQL, or back), verified.
    MigrateStore {
        #[command(flatten)]
        db: args::DbArgs,
        #[command(flatten)]
        args: migrate::MigrateStoreArgs,
    },
    /// Show the effective configuration (`config show`).
    Config {
        #[command(subcommand)]
        cmd: config::ConfigCommand,
    },
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: completions::CompletionShell,
    },
}

/// Prints an error the way every subcommand reports failure: one line naming what to do.
pub fn report(err: &dyn std::fmt::Display) {
    eprintln!("error: {err}");
}

pub fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Err(e) = config::apply(&argv) {
        report(&e);
        return ExitCode::from(1);
    }
    let cli = Cli::parse_from(argv);
    if !matches!(cli.command, Command::Serve(_)) {
        // A listing piped into `head` ends quietly, as other command-line tools do, rather
        // than with a panic about a broken pipe. (The server keeps Rust's default: a client
        // closing its socket must surface as an error, not end the process.)
        // SAFETY: resetting a signal's disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if let Err(e) = logging::init(cli.log_format, &cli.log_level, &cli.logs) {
        report(&e);
        return ExitCode::from(1);
    }
    for w in args::warn_secret_flags(std::env::args()) {
        eprintln!("{w}");
    }
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Stack { db, cmd } => stack::run(&db, cmd),
        Command::Export { db, args } => backup::export_all(&db, args),
        Command::Import { db, args } => backup::import_all(&db, args),
        Command::Backup { db, args } => backup::backup(&db, args),
        Command::Restore { db, args } => backup::restore(&db, args),
        Command::Adopt { db, args } => adopt::run(&db, args),
        Command::Tokens { db, cmd } => tokens::run(&db, cmd),
        Command::Users { db, cmd } => access::users(&db, cmd),
        Command::Orgs { db, cmd } => access::orgs(&db, cmd),
        Command::Teams { db, cmd } => access::teams(&db, cmd),
        Command::Roles { db, cmd } => access::roles(&db, cmd),
        Command::Oidc { db, cmd } => access::oidc(&db, cmd),
        Command::Audit { db, cmd } => audit::run(&db, cmd),
        Command::RotateKeys { db, args } => maint::rotate_keys(&db, args),
        Command::PruneVersions { db, args } => maint::prune(&db, args),
        Command::Verify { db, args } => maint::verify(&db, args),
        Command::ReplayJournal { db, args } => maint::replay_journal(&db, args),
        Command::MigrateStore { db, args } => migrate::run(&db, args),
        Command::Config { cmd } => config::run(cmd),
        Command::Completions { shell } => completions::run(shell),
    };
    otel::shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(1)
        }
    }
}
