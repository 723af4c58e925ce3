//! Flags shared by several subcommands, and resolving them into what the engine needs.

use crate::cli::error::{CliError, CliResult};
use std::path::{Path, PathBuf};

use clap::Args;

use crate::engine::crypto::MasterKey;
use crate::store::open::Location;

/// A secret given as a flag or environment variable: its `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Flags whose value is a secret, with the safer way to pass each.
const SECRET_FLAGS: &[(&str, &str)] = &[
    (
        "--master-key",
        "--master-key-file or PULUMI_BACKEND_MASTER_KEY",
    ),
    ("--new-master-key", "PULUMI_BACKEND_NEW_MASTER_KEY"),
    (
        "--single-tenant-token",
        "PULUMI_BACKEND_SINGLE_TENANT_TOKEN",
    ),
    (
        "--oidc-client-secret",
        "--oidc-client-secret-file or PULUMI_BACKEND_OIDC_CLIENT_SECRET",
    ),
    (
        "--jwt-hmac-secret",
        "--jwt-hmac-secret-file or PULUMI_BACKEND_JWT_HMAC_SECRET",
    ),
];

/// Warns about secrets given on the command line, where other users of the machine can read
/// them (`ps`, `/proc`) and shells keep them in history.
pub fn warn_secret_flags(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut warnings = Vec::new();
    for arg in args {
        for (flag, instead) in SECRET_FLAGS {
            let given = arg == *flag || arg.starts_with(&format!("{flag}="));
            if given {
                warnings.push(format!(
                    "warning: {flag} on the command line is visible to other users of this \
                     machine and kept in shell history; use {instead} instead"
                ));
            }
        }
    }
    warnings
}

/// Where the database is and how to unlock its secrets.
#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// The database: a SQLite file (created on first start), or a PostgreSQL URL
    /// (`postgres://user:password@host:5432/dbname`) for several servers sharing one database.
    #[arg(
        long,
        global = true,
        env = "PULUMI_BACKEND_DB",
        default_value = "pbackend.db"
    )]
    pub db: PathBuf,

    /// Master key that wraps every stack's secrets key: 64 hex characters (32 bytes). When
    /// neither this nor --master-key-file is given, the key is read from `<db>.key`, which
    /// `serve` creates on a new database.
    #[arg(
        long,
        global = true,
        env = "PULUMI_BACKEND_MASTER_KEY",
        hide_env_values = true
    )]
    pub master_key: Option<Secret>,

    /// File holding the master key (64 hex characters).
    #[arg(
        long,
        env = "PULUMI_BACKEND_MASTER_KEY_FILE",
        conflicts_with = "master_key"
    )]
    pub master_key_file: Option<PathBuf>,
}

/// Where the master key came from.
#[derive(Debug, PartialEq, Eq)]
pub enum KeySource {
    Given,
    DefaultFile(PathBuf),
    /// Generated now and written to this file.
    Generated(PathBuf),
}

impl DbArgs {
    /// The key file used when no key is given: next to the database.
    pub fn default_key_file(&self) -> PathBuf {
        let mut name = self.db.as_os_str().to_owned();
        name.push(".key");
        PathBuf::from(name)
    }

    pub fn location(&self) -> Location {
        Location::parse(&self.db)
    }

    /// Resolves the master key. With `may_generate`, a missing key is generated and saved
    /// to the default key file (only ever for a SQLite database that has no key yet; servers
    /// sharing a PostgreSQL database must all be given the same key).
    pub fn master_key(&self, may_generate: bool) -> CliResult<(MasterKey, KeySource)> {
        if let Some(hex) = &self.master_key {
            return Ok((
                MasterKey::from_hex(&hex.0).map_err(CliError::Invalid)?,
                KeySource::Given,
            ));
        }
        if let Some(path) = &self.master_key_file {
            return Ok((read_key_file(path)?, KeySource::Given));
        }
        if matches!(self.location(), Location::Postgres(_)) {
            return Err(CliError::Invalid(
                "a PostgreSQL database needs its master key given: pass --master-key-file (or \
                 PULUMI_BACKEND_MASTER_KEY); every server sharing the database must use the \
                 same key"
                    .into(),
            ));
        }
        let path = self.default_key_file();
        if path.exists() {
            return Ok((read_key_file(&path)?, KeySource::DefaultFile(path)));
        }
        if !may_generate {
            return Err(CliError::Invalid(format!(
                "no master key: pass --master-key (or PULUMI_BACKEND_MASTER_KEY), or \
                 --master-key-file; {} does not exist",
                path.display()
            )));
        }
        let key = MasterKey::generate();
        write_secret_file(&path, &format!("{}\n", key.to_hex())).map_err(CliError::io(format!(
            "cannot write the new master key to {}",
            path.display()
        )))?;
        Ok((key, KeySource::Generated(path)))
    }
}

impl DbArgs {
    /// The master key when one is given or the default key file exists; `None` otherwise.
    pub fn master_key_if_available(&self) -> CliResult<Option<MasterKey>> {
        let pg = matches!(self.location(), Location::Postgres(_));
        if self.master_key.is_none()
            && self.master_key_file.is_none()
            && (pg || !self.default_key_file().exists())
        {
            return Ok(None);
        }
        self.master_key(false).map(|(k, _)| Some(k))
    }
}

fn read_key_file(path: &Path) -> CliResult<MasterKey> {
    let text = std::fs::read_to_string(path).map_err(CliError::io(format!(
        "cannot read the master key file {}",
        path.display()
    )))?;
    MasterKey::from_hex(text.trim())
        .map_err(|e| CliError::Invalid(format!("{}: {e}", path.display())))
}

/// Writes a file readable by its owner only; refuses to overwrite.
fn write_secret_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Parses a duration: plain seconds, or a number with `s`, `m`, `h` or `d`.
pub fn parse_duration_secs(s: &str) -> CliResult<i64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86400),
        _ => (s, 1),
    };
    let n: i64 = num.trim().parse().map_err(|_| {
        CliError::Invalid(format!(
            "invalid duration {s:?}: use seconds or a number with s, m, h or d"
        ))
    })?;
    if n <= 0 {
        return Err(CliError::Invalid(format!(
            "invalid duration {s:?}: must be positive"
        )));
    }
    Ok(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_on_the_command_line_are_flagged() {
        let w = warn_secret_flags(
            [
                "pbackend",
                "serve",
                "--master-key=ab",
                "--single-tenant-token",
                "x",
            ]
            .map(String::from),
        );
        assert_eq!(w.len(), 2);
        assert!(w[0].contains("--master-key-file"));
        assert!(warn_secret_flags(["--master-key-file", "k"].map(String::from)).is_empty());
        assert_eq!(
            format!("{:?}", Secret("hunter2".into())),
            "Secret(<redacted>)"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("300").unwrap(), 300);
        assert_eq!(parse_duration_secs("5m").unwrap(), 300);
        assert_eq!(parse_duration_secs("2h").unwrap(), 7200);
        assert_eq!(parse_duration_secs("1d").unwrap(), 86400);
        assert!(parse_duration_secs("0").is_err());
        assert!(parse_duration_secs("x").is_err());
        assert!(parse_duration_secs("-5s").is_err());
    }
}
