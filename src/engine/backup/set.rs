//! Backup sets: `pbackend backup --to DIR` and `serve --backup-to DIR --backup-schedule 1h`.
//!
//! A backup is a whole-instance archive (this module's parent) taken from one read
//! transaction while the server runs, named `pbackend-<UTC time>.pbk`, with a
//! `<name>.sha256` beside it in `sha256sum` format. Both are written under temporary names
//! and renamed into place, the archive first: a backup without its checksum file is
//! incomplete and is neither listed, pruned as a good one, nor restored. `restore` checks the
//! checksum and the master key before it writes a row.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use flate2::read::GzDecoder;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::engine::Engine;
use crate::engine::crypto::MasterKey;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::operator::Progress;
use crate::store::backup::{LoadReport, Merge, Record};

const PREFIX: &str = "pbackend-";
const EXT: &str = ".pbk";
const SUM_EXT: &str = ".sha256";

/// One complete backup in a directory.
#[derive(Debug, Clone, Serialize)]
pub struct BackupFile {
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
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
    /// Takes a backup into `dir` (created if missing), then deletes the oldest complete
    /// backups there beyond `keep` (0 keeps all).
    pub async fn backup_to(
        &self,
        dir: &Path,
        keep: usize,
        progress: Arc<dyn Progress>,
    ) -> EngineResult<BackupOutcome> {
        let start = Instant::now();
        let now = self.now();
        let d = dir.to_owned();
        let name = blocking(move || {
            std::fs::create_dir_all(&d).map_err(|e| io_err(&d, e))?;
            free_name(&d, now)
        })
        .await?;
        let path = dir.join(&name);
        let written = self.write_archive(&path, progress).await?;
        let sum = dir.join(format!("{name}{SUM_EXT}"));
        let line = format!("{}  {name}\n", written.sha256);
        let d = dir.to_owned();
        let pruned = blocking(move || {
            write_atomically(&sum, line.as_bytes())?;
            sync_dir(&d);
            prune(&d, keep)
        })
        .await?;
        Ok(BackupOutcome {
            backup: BackupFile {
                name,
                path,
                bytes: written.bytes,
                sha256: written.sha256,
            },
            stacks: written.report.stacks,
            records: written.report.records,
            seconds: start.elapsed().as_secs_f64(),
            pruned,
        })
    }

    /// Restores a backup that [`verify_backup`] passed into this database, which must be
    /// empty; the rows go in one transaction.
    pub async fn restore_backup(
        &self,
        backup: BackupFile,
        progress: Arc<dyn Progress>,
    ) -> EngineResult<RestoreOutcome> {
        let start = Instant::now();
        let loaded: LoadReport = self
            .import_all(&backup.path, Merge::Refuse, progress)
            .await?;
        Ok(RestoreOutcome {
            backup,
            stacks: loaded.stacks,
            records: loaded.records,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

/// Finds the backup to restore (`from` itself, or the newest complete backup in the directory
/// `from`) and checks its checksum and that `master` opens it — all before any database is
/// opened or created. Blocking: reads the whole archive.
pub fn verify_backup(from: &Path, master: &MasterKey) -> EngineResult<BackupFile> {
    let backup = if from.is_dir() {
        list_backups(from)?.pop().ok_or_else(|| {
            EngineError::Invalid(format!(
                "{} holds no complete backup (pbackend-*.pbk with its .sha256)",
                from.display()
            ))
        })?
    } else {
        checked_file(from)?
    };
    check_sum(&backup)?;
    check_key(&backup.path, master)?;
    Ok(backup)
}

/// `pbackend-20261206T020304Z.pbk`, or with `-2`, `-3`… when two backups share a second.
fn free_name(dir: &Path, now: i64) -> EngineResult<String> {
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
        if !dir.join(&name).exists() && !dir.join(format!("{name}.partial")).exists() {
            return Ok(name);
        }
    }
    Err(EngineError::internal("no free backup name"))
}

fn write_atomically(path: &Path, data: &[u8]) -> EngineResult<()> {
    let tmp = PathBuf::from(format!("{}.partial", path.display()));
    let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

/// Makes the renames durable (best effort: not every filesystem lets a directory be synced).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The checksum a backup's `.sha256` file records.
fn recorded_sum(archive: &Path) -> EngineResult<String> {
    let sum = PathBuf::from(format!("{}{SUM_EXT}", archive.display()));
    let text = std::fs::read_to_string(&sum).map_err(|_| {
        EngineError::Invalid(format!(
            "{} has no checksum file {} beside it: the backup is incomplete, or is an \
             `export --all` archive (restore those with `pbackend import --all`)",
            archive.display(),
            sum.display()
        ))
    })?;
    let hex = text.split_whitespace().next().unwrap_or_default();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(EngineError::Invalid(format!(
            "{} is not a SHA-256 checksum file",
            sum.display()
        )));
    }
    Ok(hex.to_ascii_lowercase())
}

fn checked_file(path: &Path) -> EngineResult<BackupFile> {
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    Ok(BackupFile {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.to_owned(),
        bytes: meta.len(),
        sha256: recorded_sum(path)?,
    })
}

/// The complete backups in `dir`, oldest first (their names sort by time).
pub fn list_backups(dir: &Path) -> EngineResult<Vec<BackupFile>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| io_err(dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(PREFIX) && name.ends_with(EXT)) {
            continue;
        }
        if let Ok(b) = checked_file(&entry.path()) {
            out.push(b);
        }
    }
    out.sort_by_key(|b| order(&b.name));
    Ok(out)
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

fn prune(dir: &Path, keep: usize) -> EngineResult<Vec<String>> {
    if keep == 0 {
        return Ok(Vec::new());
    }
    let all = list_backups(dir)?;
    let excess = all.len().saturating_sub(keep);
    let mut pruned = Vec::new();
    for b in all.into_iter().take(excess) {
        // The checksum first: a crash in between leaves an incomplete backup, never a
        // checksum that names a missing archive.
        let _ = std::fs::remove_file(format!("{}{SUM_EXT}", b.path.display()));
        std::fs::remove_file(&b.path).map_err(|e| io_err(&b.path, e))?;
        pruned.push(b.name);
    }
    Ok(pruned)
}

/// Reads the whole archive and compares its SHA-256 with the recorded one.
fn check_sum(b: &BackupFile) -> EngineResult<()> {
    let mut f = File::open(&b.path).map_err(|e| io_err(&b.path, e))?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err(&b.path, e))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
    }
    let actual = hex::encode(sha.finalize());
    if actual != b.sha256 {
        return Err(EngineError::Invalid(format!(
            "{} is damaged: its SHA-256 is {actual} but its checksum file records {}; nothing \
             was restored",
            b.path.display(),
            b.sha256
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
