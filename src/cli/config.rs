//! `--config pbackend.toml`: one file with the same keys as the flags, and `pbackend config
//! show`, which prints what `serve` would run with and where each value came from.
//!
//! The file sits under the environment in precedence (flag > env > file > default), so it
//! is applied by filling in the `PULUMI_BACKEND_*` variables it names that are not already
//! set, before the command line is parsed: clap then does the rest, and every subcommand
//! sees the file the same way. The variables set this way are remembered, so `config show`
//! can tell a value from the file from one from the environment.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, Subcommand};
use serde::Serialize;

use crate::cli::Cli;
use crate::cli::error::{CliError, CliResult};
use crate::cli::output::{Format, OutputArgs, print_json, print_table};

pub const CONFIG_ENV: &str = "PULUMI_BACKEND_CONFIG";

/// The variables the file filled in, and the file.
struct Applied {
    file: PathBuf,
    /// Environment variable → the key that set it.
    vars: BTreeMap<String, String>,
}

static APPLIED: OnceLock<Applied> = OnceLock::new();

/// `--config` as clap sees it (the file itself is read before clap runs, by [`apply`]).
#[derive(Args, Debug, Clone)]
pub struct ConfigArg {
    /// A TOML file of settings: keys are the long flag names (`addr = "0.0.0.0:8443"`,
    /// `tls-cert = "/etc/pbackend/tls.crt"`, `rate-limit = "off"`). Flags and environment
    /// variables override it; `pbackend config show` prints the result.
    #[arg(long, global = true, env = CONFIG_ENV, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// The configuration `pbackend serve` would run with here (flags aside): each setting,
    /// its value (secrets redacted) and where it came from (env, file, default).
    Show {
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// The config file named by `--config FILE`/`--config=FILE` in `argv` or by the environment.
fn named_file(argv: &[OsString]) -> Option<PathBuf> {
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        let Some(s) = a.to_str() else { continue };
        if s == "--" {
            break;
        }
        if s == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(v) = s.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os(CONFIG_ENV).map(PathBuf::from)
}

/// Every setting a file may hold: long flag name → (environment variable, delimiter of a
/// list-valued flag).
fn settable() -> BTreeMap<String, (String, Option<char>)> {
    fn walk(cmd: &clap::Command, out: &mut BTreeMap<String, (String, Option<char>)>) {
        for arg in cmd.get_arguments() {
            let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
                continue;
            };
            if env == CONFIG_ENV {
                continue;
            }
            out.entry(long.to_owned()).or_insert_with(|| {
                (
                    env.to_string_lossy().into_owned(),
                    arg.get_value_delimiter(),
                )
            });
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = BTreeMap::new();
    walk(&Cli::command(), &mut out);
    out
}

/// Reads the config file, if one is named, and fills in the environment from it. Runs first
/// thing in `main`, while the process has a single thread.
pub fn apply(argv: &[OsString]) -> CliResult {
    let Some(file) = named_file(argv) else {
        return Ok(());
    };
    let values = read(&file)?;
    let mut vars = BTreeMap::new();
    for (key, (env, value)) in values {
        if std::env::var_os(&env).is_none() {
            // SAFETY: called from `main` before any thread is started (no runtime, no
            // logging thread), so nothing can read the environment concurrently.
            unsafe { std::env::set_var(&env, &value) };
            vars.insert(env, key);
        }
    }
    let _ = APPLIED.set(Applied { file, vars });
    Ok(())
}

/// The file's settings as (key → (variable, value)), checked against the known keys.
fn read(file: &Path) -> CliResult<BTreeMap<String, (String, String)>> {
    let text = std::fs::read_to_string(file)
        .map_err(CliError::io(format!("cannot read {}", file.display())))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| CliError::Invalid(format!("{}: {e}", file.display())))?;
    let known = settable();
    let mut out = BTreeMap::new();
    for (raw_key, value) in table {
        if value.is_table() {
            return Err(CliError::Invalid(format!(
                "{}: `[{raw_key}]` is a section; settings sit at the top of the file, without \
                 sections",
                file.display()
            )));
        }
        let key = raw_key.replace('_', "-");
        let Some((env, delimiter)) = known.get(&key) else {
            let names: Vec<&str> = known.keys().map(String::as_str).collect();
            return Err(CliError::Invalid(format!(
                "{}: unknown setting `{raw_key}`; settings are the long flag names: {}",
                file.display(),
                names.join(", ")
            )));
        };
        let bad = |what: &str| CliError::Invalid(format!("{}: `{raw_key}` {what}", file.display()));
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => {
                let Some(d) = delimiter else {
                    return Err(bad("takes one value, not a list"));
                };
                let mut parts = Vec::new();
                for item in items {
                    match item {
                        toml::Value::String(s) if !s.contains(*d) => parts.push(s),
                        toml::Value::String(_) => {
                            return Err(bad(&format!("items may not contain `{d}`")));
                        }
                        _ => return Err(bad("must be a list of strings")),
                    }
                }
                parts.join(&d.to_string())
            }
            toml::Value::Datetime(_) | toml::Value::Table(_) => {
                return Err(bad("must be a string, number, boolean or list of strings"));
            }
        };
        out.insert(key, (env.clone(), text));
    }
    Ok(out)
}

#[derive(Serialize)]
struct Setting {
    key: String,
    value: Option<String>,
    /// `flag`, `env PULUMI_BACKEND_…`, `file PATH`, `default` or `unset`.
    source: String,
}

pub fn run(cmd: ConfigCommand) -> CliResult {
    match cmd {
        ConfigCommand::Show { output } => show(output.output),
    }
}

fn show(format: Format) -> CliResult {
    let matches = Cli::command()
        .try_get_matches_from(["pbackend", "serve"])
        .map_err(|e| CliError::Invalid(format!("the configuration does not parse: {e}")))?;
    let Some(("serve", serve)) = matches.subcommand() else {
        return Err(CliError::Failed("no serve settings".into()));
    };
    let cmd = Cli::command();
    let Some(serve_cmd) = cmd.find_subcommand("serve") else {
        return Err(CliError::Failed("no serve settings".into()));
    };
    let applied = APPLIED.get();
    let mut args: Vec<&clap::Arg> = cmd.get_arguments().collect();
    args.extend(serve_cmd.get_arguments());
    let mut seen = std::collections::BTreeSet::new();
    let mut rows = Vec::new();
    for arg in args {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        if long == "help" || long == "version" || !seen.insert(long) {
            continue;
        }
        let env = arg
            .get_env()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source = match serve.value_source(id) {
            Some(ValueSource::CommandLine) => "flag".to_owned(),
            Some(ValueSource::EnvVariable) => match applied {
                Some(a) if a.vars.contains_key(&env) => format!("file {}", a.file.display()),
                _ => format!("env {env}"),
            },
            Some(ValueSource::DefaultValue) => "default".to_owned(),
            _ => "unset".to_owned(),
        };
        let raw = serve.get_raw(id).map(|vs| {
            vs.map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(",")
        });
        // `show` parses an empty command line, so a file named by the flag is not in it.
        let (raw, source) = match (long, applied) {
            ("config", Some(a)) if raw.is_none() => {
                (Some(a.file.display().to_string()), "flag".to_owned())
            }
            _ => (raw, source),
        };
        let value = raw.map(|v| {
            if arg.is_hide_env_values_set() && !v.is_empty() {
                "<redacted>".to_owned()
            } else {
                redact_url_password(&v)
            }
        });
        rows.push(Setting {
            key: long.to_owned(),
            value,
            source,
        });
    }
    match format {
        Format::Json => print_json(&rows),
        Format::Table => {
            print_table(
                &["SETTING", "VALUE", "SOURCE"],
                rows.into_iter()
                    .map(|s| vec![s.key, s.value.unwrap_or_default(), s.source])
                    .collect(),
            );
            Ok(())
        }
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:<redacted>@host/db`.
fn redact_url_password(v: &str) -> String {
    let Some((scheme, rest)) = v.split_once("://") else {
        return v.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return v.to_owned();
    };
    let Some((user, _password)) = userinfo.split_once(':') else {
        return v.to_owned();
    };
    format!("{scheme}://{user}:<redacted>@{host}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url_password("postgres://pb:s3cret@db:5432/pbackend"),
            "postgres://pb:<redacted>@db:5432/pbackend"
        );
        assert_eq!(
            redact_url_password("postgres://pb@db/x"),
            "postgres://pb@db/x"
        );
        assert_eq!(redact_url_password("pbackend.db"), "pbackend.db");
    }

    #[test]
    fn every_flag_with_a_variable_is_a_setting() {
        let s = settable();
        for key in [
            "addr",
            "db",
            "tls-cert",
            "rate-limit",
            "group-map",
            "log-level",
        ] {
            assert!(s.contains_key(key), "{key}");
        }
        assert!(!s.contains_key("config"));
        assert_eq!(s["group-map"].1, Some(','));
    }
}
