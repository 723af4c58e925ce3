//! Backup sets: `pbackend backup --to DEST` and `serve --backup-to DEST --backup-schedule 1h`,
//! where DEST is a directory or `s3://bucket/prefix` ([`super::dest`]).
//!
//! A backup is a whole-instance archive (this module's parent) taken from one read
//! transaction while the server runs, named `pbackend-<UTC time>.pbk`, with a
//! `<name>.sha256` beside it in `sha256sum` format. The archive is stored first (renamed into
//! place, or uploaded whole), its checksum second: a backup without its checksum is
//! incomplete and is never listed, restored or counted as one to keep; pruning deletes the
//! checksum first for the same reason. `restore` checks the checksum and the master key
//! before a database is even created.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::read::GzDecoder;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::engine::Engine;
use crate::engine::backup::dest::Destination;
use crate::engine::crypto::MasterKey;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::operator::Progress;
use crate::store::backup::{LoadReport, Merge, Record};

const PREFIX: &str = "pbackend-";
const EXT: &str = ".pbk";
const SUM_EXT: &str = ".sha256";

/// One complete backup of a destination.
#[derive(Debug, Clone, Serialize)]
pub struct BackupFile {
    pub name: String,
    /// Where it is: a path, or an `s3://` URL.
    pub location: String,
    pub bytes: u64,
    pub sha256: String,
    /// Unix seconds it was stored at, when the destination says.
    pub modified: Option<i64>,
}

/// What one `backup` did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupOutcome {
    pub backup: BackupFile,
    pub stacks: u64,
    pub records: u64,
    pub seconds: f64,
    /// Older backups deleted to keep `--keep`.
    pub pruned: Vec<String>,
}

/// What one `restore` did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    pub backup: BackupFile,
    pub stacks: u64,
    pub records: u64,
    pub seconds: f64,
}

/// A backup checked and readable on this machine (fetched, for a bucket's).
pub struct VerifiedBackup {
    pub file: BackupFile,
    local: PathBuf,
    /// A fetched copy, deleted when this is dropped.
    fetched: bool,
}

impl Drop for VerifiedBackup {
    fn drop(&mut self) {
        if self.fetched {
            let _ = std::fs::remove_file(&self.local);
        }
    }
}

fn io_err(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::Invalid(format!("{}: {e}", path.display()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> EngineResult<T> + Send + 'static,
) -> EngineResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(EngineError::internal)?
}

impl Engine {
    /// Takes a backup into `dest`, then deletes the oldest complete backups there beyond
    /// `keep` (0 keeps all).
    pub async fn backup_to(
        &self,
        dest: &Destination,
        keep: usize,
        progress: Arc<dyn Progress>,
    ) -> EngineResult<BackupOutcome> {
        let start = Instant::now();
        dest.prepare().await?;
        let taken: Vec<String> = dest.entries().await?.into_iter().map(|e| e.name).collect();
        let name = free_name(&taken, self.now())?;
        let staged = dest.staging(&name);
        let written = self.write_archive(&staged, progress).await?;
        dest.publish(&staged, &name).await?;
        let line = format!("{}  {name}\n", written.sha256);
        dest.put_small(&format!("{name}{SUM_EXT}"), line.as_bytes())
            .await?;
        let pruned = prune(dest, keep).await?;
        Ok(BackupOutcome {
            backup: BackupFile {
                location: dest.location(&name),
                name,
                bytes: written.bytes,
                sha256: written.sha256,
                modified: Some(self.now()),
            },
            stacks: written.report.stacks,
            records: written.report.records,
            seconds: start.elapsed().as_secs_f64(),
            pruned,
        })
    }

    /// Takes a backup every `every` into `dest`, keeping `keep` (the server runs it beside
    /// itself). A failed backup is logged and counted, and tried again at the next interval.
    pub async fn run_scheduled_backups(
        self: Arc<Self>,
        dest: Destination,
        every: Duration,
        keep: usize,
    ) {
        // Due one interval after the newest backup already there (at once when there is none).
        let newest = match list_backups(&dest).await {
            Ok(list) => list.last().and_then(|b| b.modified),
            Err(e) => {
                tracing::warn!(dest = %dest.shown(), error = %e, "cannot list the backups already taken");
                None
            }
        };
        let age = newest.map(|t| (self.now() - t).max(0) as u64);
        let mut wait = match age {
            Some(age) => every.saturating_sub(Duration::from_secs(age)),
            None => Duration::ZERO,
        };
        loop {
            tokio::time::sleep(wait).await;
            let progress = Arc::new(crate::engine::operator::NoProgress);
            match self.backup_to(&dest, keep, progress).await {
                Ok(r) => {
                    crate::telemetry::metrics().backup("succeeded", Some(self.now()));
                    tracing::info!(
                        backup = %r.backup.location,
                        bytes = r.backup.bytes,
                        stacks = r.stacks,
                        seconds = r.seconds,
                        pruned = r.pruned.len(),
                        "scheduled backup taken"
                    );
                }
                Err(e) => {
                    crate::telemetry::metrics().backup("failed", None);
                    tracing::error!(dest = %dest.shown(), error = %e, "scheduled backup failed");
                }
            }
            wait = every;
        }
    }

    /// Restores a backup that [`verify_backup`] passed into this database, which must be
    /// empty; the rows go in one transaction.
    pub async fn restore_backup(
        &self,
        backup: VerifiedBackup,
        progress: Arc<dyn Progress>,
    ) -> EngineResult<RestoreOutcome> {
        let start = Instant::now();
        let loaded: LoadReport = self
            .import_all(&backup.local, Merge::Refuse, progress)
            .await?;
        Ok(RestoreOutcome {
            backup: backup.file.clone(),
            stacks: loaded.stacks,
            records: loaded.records,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

/// Finds the backup `from` names — a backup file or object (`…/pbackend-….pbk`), or a
/// destination whose newest complete backup is meant — fetches it when it is in a bucket,
/// and checks its checksum and that `master` opens it: all before any database is opened.
pub async fn verify_backup(from: &str, master: &MasterKey) -> EngineResult<VerifiedBackup> {
    let (dest, name) = match from.strip_suffix('/').unwrap_or(from) {
        f if f.ends_with(EXT) => {
            let (parent, name) = match f.rsplit_once('/') {
                Some(("", name)) => ("/", name),
                Some(split) => split,
                None => (".", f),
            };
            (Destination::parse(parent)?, Some(name.to_owned()))
        }
        f => (Destination::parse(f)?, None),
    };
    let backups = list_backups(&dest).await?;
    let file = match name {
        Some(n) => match backups.into_iter().find(|b| b.name == n) {
            Some(b) => b,
            None if dest.exists(&n).await? => {
                return Err(EngineError::Invalid(format!(
                    "{} has no checksum file {n}{SUM_EXT} beside it: the backup is incomplete, \
                     or is an `export --all` archive (restore those with `pbackend import --all`)",
                    dest.location(&n)
                )));
            }
            None => {
                return Err(EngineError::Invalid(format!(
                    "no backup at {}",
                    dest.location(&n)
                )));
            }
        },
        None => backups.into_iter().last().ok_or_else(|| {
            EngineError::Invalid(format!(
                "{} holds no complete backup (pbackend-*.pbk with its .sha256)",
                dest.shown()
            ))
        })?,
    };
    let (local, fetched) = match dest.local(&file.name) {
        Some(p) => (p, false),
        None => {
            let into = dest.staging(&file.name);
            dest.fetch(&file.name, &into).await?;
            (into, true)
        }
    };
    let verified = VerifiedBackup {
        file,
        local,
        fetched,
    };
    let (path, sum, key) = (
        verified.local.clone(),
        verified.file.sha256.clone(),
        master.clone(),
    );
    blocking(move || {
        check_sum(&path, &sum)?;
        check_key(&path, &key)
    })
    .await?;
    Ok(verified)
}

/// `pbackend-20261206T020304Z.pbk`, or with `-2`, `-3`… when two backups share a second.
fn free_name(taken: &[String], now: i64) -> EngineResult<String> {
    let stamp = time::OffsetDateTime::from_unix_timestamp(now)
        .map_err(EngineError::internal)?
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .map_err(EngineError::internal)?;
    for n in 1u32.. {
        let name = match n {
            1 => format!("{PREFIX}{stamp}{EXT}"),
            n => format!("{PREFIX}{stamp}-{n}{EXT}"),
        };
        let partial = format!("{name}.partial");
        if !taken.iter().any(|t| *t == name || *t == partial) {
            return Ok(name);
        }
    }
    Err(EngineError::internal("no free backup name"))
}

/// The complete backups of a destination, oldest first.
pub async fn list_backups(dest: &Destination) -> EngineResult<Vec<BackupFile>> {
    let entries = dest.entries().await?;
    let mut out = Vec::new();
    for e in &entries {
        if !(e.name.starts_with(PREFIX) && e.name.ends_with(EXT)) {
            continue;
        }
        let sum_name = format!("{}{SUM_EXT}", e.name);
        if !entries.iter().any(|x| x.name == sum_name) {
            continue;
        }
        let Some(text) = dest.get_small(&sum_name).await? else {
            continue;
        };
        let Some(sha256) = parse_sum(&text) else {
            continue;
        };
        out.push(BackupFile {
            name: e.name.clone(),
            location: dest.location(&e.name),
            bytes: e.bytes,
            sha256,
            modified: e.modified,
        });
    }
    out.sort_by_key(|b| order(&b.name));
    Ok(out)
}

/// The hex digest of a `sha256sum` line.
fn parse_sum(text: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
    let hex = text.split_whitespace().next()?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// Sort key of a backup name: its time stamp, then its `-N` (a later backup in the same
/// second), so that plain name order (where `-` sorts before `.`) cannot misplace one.
fn order(name: &str) -> (String, u32) {
    let core = name
        .strip_prefix(PREFIX)
        .and_then(|n| n.strip_suffix(EXT))
        .unwrap_or(name);
    match core.rsplit_once('-') {
        Some((stamp, n)) if n.parse::<u32>().is_ok() => (stamp.to_owned(), n.parse().unwrap_or(1)),
        _ => (core.to_owned(), 1),
    }
}

async fn prune(dest: &Destination, keep: usize) -> EngineResult<Vec<String>> {
    if keep == 0 {
        return Ok(Vec::new());
    }
    let all = list_backups(dest).await?;
    let excess = all.len().saturating_sub(keep);
    let mut pruned = Vec::new();
    for b in all.into_iter().take(excess) {
        // The checksum first: a failure in between leaves an incomplete backup, never a
        // checksum that names a missing archive.
        dest.remove(&format!("{}{SUM_EXT}", b.name)).await?;
        dest.remove(&b.name).await?;
        pruned.push(b.name);
    }
    Ok(pruned)
}

/// Reads the whole archive and compares its SHA-256 with the recorded one.
fn check_sum(path: &Path, recorded: &str) -> EngineResult<()> {
    let mut f = File::open(path).map_err(|e| io_err(path, e))?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err(path, e))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
    }
    let actual = hex::encode(sha.finalize());
    if actual != recorded {
        return Err(EngineError::Invalid(format!(
            "{} is damaged: its SHA-256 is {actual} but its checksum file records {recorded}; \
             nothing was restored",
            path.display()
        )));
    }
    Ok(())
}

/// Checks the archive's master-key canary (among its first rows) against `master`.
fn check_key(path: &Path, master: &MasterKey) -> EngineResult<()> {
    let f = File::open(path).map_err(|e| io_err(path, e))?;
    for (i, line) in BufReader::new(GzDecoder::new(f)).lines().enumerate() {
        let line = line.map_err(|e| io_err(path, e))?;
        if i == 0 {
            continue; // the header
        }
        let Ok(rec) = serde_json::from_str::<Record>(&line) else {
            break;
        };
        if rec.table != "meta" {
            break;
        }
        if rec.text("key") == Some("master_key_canary") {
            return match rec.bytes("value") {
                Some(v) if master.opens_canary(&v) => Ok(()),
                _ => Err(EngineError::Invalid(format!(
                    "{} was made with a different master key; give the key of the database \
                     it was taken from. Nothing was restored",
                    path.display()
                ))),
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn backups_sort_by_time_then_by_their_number_within_a_second() {
        let mut names = vec![
            "pbackend-20261206T020305Z.pbk",
            "pbackend-20261206T020304Z-2.pbk",
            "pbackend-20261206T020304Z-10.pbk",
            "pbackend-20261206T020304Z.pbk",
        ];
        names.sort_by_key(|n| super::order(n));
        assert_eq!(
            names,
            [
                "pbackend-20261206T020304Z.pbk",
                "pbackend-20261206T020304Z-2.pbk",
                "pbackend-20261206T020304Z-10.pbk",
                "pbackend-20261206T020305Z.pbk",
            ]
        );
    }
}
