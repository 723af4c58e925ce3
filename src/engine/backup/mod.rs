//! Whole-instance archives (`pbackend export --all` / `import --all`, and the backup sets of
//! `pbackend backup` in [`set`]).
//!
//! Archive format, version 1: a gzip stream of JSON lines. The first line is the header
//! `{"format":"pbackend-backup","version":1,"created":<unix seconds>,"pbackend":"<version>"}`;
//! every following line is one database row as a `store::backup::Record` (an object whose
//! `table` field names the kind of row; binary columns in standard base64). Rows come parents
//! first: metadata, tokens, stacks, former names, versions, updates, working checkpoints,
//! deltas, engine events, journal batches. Stack keys stay wrapped by the master key, so an
//! archive restores only with the key it was made with (checked against its canary).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::operator::Progress;
use crate::store::StoreError;
use crate::store::backup::{DumpReport, LoadReport, Merge, Record};

pub mod dest;
pub mod set;

pub const ARCHIVE_FORMAT: &str = "pbackend-backup";
pub const ARCHIVE_VERSION: i64 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: i64,
    created: i64,
    pbackend: String,
}

type Writer = GzEncoder<Hashing<BufWriter<File>>>;

/// Passes bytes through to `inner`, hashing and counting them: an archive's checksum is made
/// as it is written, not by reading it back.
struct Hashing<W> {
    inner: W,
    sha: sha2::Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// An archive written: what went in, and the SHA-256 and size of the file.
pub struct Written {
    pub report: DumpReport,
    pub sha256: String,
    pub bytes: u64,
}

fn io_err(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::Invalid(format!("{}: {e}", path.display()))
}

impl Engine {
    /// Writes every row of the database to a new archive at `path` (written to a temporary
    /// file first and renamed, so a failed export leaves no partial archive behind).
    pub async fn export_all(
        &self,
        path: &Path,
        progress: Arc<dyn Progress>,
    ) -> EngineResult<DumpReport> {
        Ok(self.write_archive(path, progress).await?.report)
    }

    /// [`Engine::export_all`], also giving the archive's checksum and size. The rows come
    /// from one read transaction: a consistent snapshot, even while updates run.
    pub async fn write_archive(
        &self,
        path: &Path,
        progress: Arc<dyn Progress>,
    ) -> EngineResult<Written> {
        let tmp = PathBuf::from(format!("{}.partial", path.display()));
        let file = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        let hashing = Hashing {
            inner: BufWriter::new(file),
            sha: Default::default(),
            bytes: 0,
        };
        let mut w: Writer = GzEncoder::new(hashing, Compression::fast());
        let header = Header {
            format: ARCHIVE_FORMAT.into(),
            version: ARCHIVE_VERSION,
            created: self.now(),
            pbackend: env!("CARGO_PKG_VERSION").into(),
        };
        serde_json::to_writer(&mut w, &header).map_err(EngineError::internal)?;
        w.write_all(b"\n").map_err(|e| io_err(&tmp, e))?;
        let shared = Arc::new(Mutex::new(Some(w)));
        let sink_w = shared.clone();
        progress.start(0, "exporting");
        let p = progress.clone();
        let sink = Box::new(move |rec: Record| -> Result<(), StoreError> {
            if let Some(name) = rec.stack_name() {
                p.step(&name);
            }
            let mut guard = sink_w.lock().map_err(|_| StoreError::Closed)?;
            let w = guard.as_mut().ok_or(StoreError::Closed)?;
            serde_json::to_writer(&mut *w, &rec).map_err(StoreError::backend)?;
            w.write_all(b"\n").map_err(StoreError::backend)
        });
        let report = self.store.dump(sink).await;
        progress.finish();
        let w = shared.lock().ok().and_then(|mut g| g.take());
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.into());
            }
        };
        let w = w.ok_or_else(|| EngineError::Internal("archive writer lost".into()))?;
        let finish = w.finish().and_then(|h| {
            use sha2::Digest;
            let (sha256, bytes) = (hex::encode(h.sha.finalize()), h.bytes);
            let file = h.inner.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok((sha256, bytes))
        });
        let (sha256, bytes) = match finish {
            Ok(done) => done,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(io_err(&tmp, e));
            }
        };
        std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
        Ok(Written {
            report,
            sha256,
            bytes,
        })
    }

    /// Restores an archive into this database in one transaction. Needs the master key the
    /// archive was made with.
    pub async fn import_all(
        &self,
        path: &Path,
        merge: Merge,
        progress: Arc<dyn Progress>,
    ) -> EngineResult<LoadReport> {
        let master = self.master()?.clone();
        let file = File::open(path).map_err(|e| io_err(path, e))?;
        let mut lines = BufReader::new(GzDecoder::new(file)).lines();
        let first = lines
            .next()
            .ok_or_else(|| EngineError::Invalid(format!("{} is empty", path.display())))?
            .map_err(|e| {
                EngineError::Invalid(format!("{} is not a pbackend archive: {e}", path.display()))
            })?;
        let header: Header = serde_json::from_str(&first).map_err(|_| {
            EngineError::Invalid(format!("{} is not a pbackend archive", path.display()))
        })?;
        if header.format != ARCHIVE_FORMAT {
            return Err(EngineError::Invalid(format!(
                "{} is not a pbackend archive",
                path.display()
            )));
        }
        if header.version != ARCHIVE_VERSION {
            return Err(EngineError::Invalid(format!(
                "{} is archive format version {}; this pbackend reads version {ARCHIVE_VERSION}",
                path.display(),
                header.version
            )));
        }
        progress.start(0, "importing");
        let p = progress.clone();
        let mut line_no = 1u64;
        let source = Box::new(lines.map(move |line| {
            line_no += 1;
            let line = line.map_err(StoreError::backend)?;
            let rec: Record = serde_json::from_str(&line).map_err(|e| {
                StoreError::Corrupt(format!("archive line {line_no} is not a valid record: {e}"))
            })?;
            if rec.table == "meta"
                && rec.text("key") == Some("master_key_canary")
                && !rec
                    .bytes("value")
                    .is_some_and(|value| master.opens_canary(&value))
            {
                return Err(StoreError::Corrupt(
                    "the archive was made with a different master key; pass the key of the \
                     database it was exported from"
                        .into(),
                ));
            }
            if let Some(name) = rec.stack_name() {
                p.step(&name);
            }
            Ok(rec)
        }));
        let result = self.store.load(source, merge).await;
        progress.finish();
        match result {
            Ok(r) => Ok(r),
            Err(StoreError::Conflict(msg)) => Err(EngineError::Conflict(format!(
                "{msg}: restore into an empty database, or pass --merge skip-existing"
            ))),
            Err(StoreError::Corrupt(msg)) => Err(EngineError::Invalid(msg)),
            Err(e) => Err(e.into()),
        }
    }

    /// Every row of the database as records (tests compare two databases with it).
    pub async fn dump_records(&self) -> EngineResult<Vec<Record>> {
        let out = Arc::new(Mutex::new(Vec::new()));
        let o = out.clone();
        self.store
            .dump(Box::new(move |r| {
                o.lock().map_err(|_| StoreError::Closed)?.push(r);
                Ok(())
            }))
            .await?;
        let v = std::mem::take(&mut *out.lock().map_err(|_| EngineError::internal("lock"))?);
        Ok(v)
    }
}

/// Reads the header line of an archive (for `--help`-level inspection and tests).
pub fn read_header(path: &Path) -> EngineResult<(String, i64)> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut line = String::new();
    BufReader::new(GzDecoder::new(file))
        .read_line(&mut line)
        .map_err(|e| io_err(path, e))?;
    let h: Header = serde_json::from_str(&line).map_err(EngineError::internal)?;
    Ok((h.format, h.version))
}

/// What copying an instance did.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    pub records: u64,
    pub stacks: u64,
    /// SHA-256 over every record of the source, and of the target after the copy.
    pub source_digest: String,
    pub target_digest: String,
}

impl Engine {
    /// Copies every row of this instance into `target`, which must be empty, streaming (no
    /// archive on disk, nothing held whole in memory); then dumps both and compares digests.
    /// Rows keep their ids, so the two dump the same when nothing was lost.
    pub async fn copy_instance_to(
        &self,
        target: &Engine,
        progress: Arc<dyn Progress>,
    ) -> EngineResult<CopyReport> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Record>(1024);
        progress.start(0, "copying");
        let p = progress.clone();
        let sink = Box::new(move |rec: Record| -> Result<(), StoreError> {
            if let Some(name) = rec.stack_name() {
                p.step(&name);
            }
            tx.send(rec).map_err(|_| StoreError::Closed)
        });
        let source = Box::new(rx.into_iter().map(Ok));
        let (dumped, loaded) = tokio::join!(
            self.store.dump(sink),
            target.store.load(source, Merge::Refuse)
        );
        progress.finish();
        let loaded = loaded?;
        dumped?;
        let source_digest = self.digest().await?;
        let target_digest = target.digest().await?;
        if source_digest != target_digest {
            return Err(EngineError::Internal(format!(
                "the copy differs from the source (digests {source_digest} and {target_digest})"
            )));
        }
        Ok(CopyReport {
            records: loaded.records,
            stacks: loaded.stacks,
            source_digest,
            target_digest,
        })
    }

    /// SHA-256 over every record of the instance, in dump order.
    async fn digest(&self) -> EngineResult<String> {
        use sha2::{Digest, Sha256};
        let hasher = Arc::new(Mutex::new(Sha256::new()));
        let h = hasher.clone();
        self.store
            .dump(Box::new(move |rec: Record| {
                let line = serde_json::to_vec(&rec).map_err(StoreError::backend)?;
                let mut h = h.lock().map_err(|_| StoreError::Closed)?;
                h.update(&line);
                h.update(b"\n");
                Ok(())
            }))
            .await?;
        let h = hasher
            .lock()
            .map_err(|_| EngineError::Internal("digest".into()))?
            .clone();
        Ok(hex::encode(h.finalize()))
    }
}
