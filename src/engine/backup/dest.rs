//! Where backup sets live: a directory, or an S3-compatible bucket (`s3://bucket/prefix`,
//! through `object_store`; credentials, region and endpoint from the usual `AWS_*`
//! environment variables, as every S3 tool reads them).
//!
//! A destination only stores, lists, fetches and deletes named files; what a complete backup
//! is, and the order things are written and removed in, is [`super::set`]'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::engine::error::{EngineError, EngineResult};

/// Upload part size: above S3's 5 MiB minimum, small enough to keep four in flight cheaply.
const PART: usize = 8 << 20;

pub enum Destination {
    Dir(PathBuf),
    Bucket(Bucket),
}

pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// The key prefix the backups sit under ("" for the bucket's root).
    prefix: String,
    url: String,
}

/// A file or object of a destination.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub bytes: u64,
    /// Unix seconds of its last change, when known.
    pub modified: Option<i64>,
}

fn io_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> EngineError {
    EngineError::Invalid(format!("{what}: {e}"))
}

impl Destination {
    /// `s3://bucket[/prefix]` or a directory path.
    pub fn parse(s: &str) -> EngineResult<Destination> {
        Ok(match open_bucket(s)? {
            Some((store, prefix)) => Destination::Bucket(Bucket {
                store,
                prefix,
                url: s.trim_end_matches('/').to_owned(),
            }),
            None => Destination::Dir(PathBuf::from(s)),
        })
    }

    /// As people should see it in messages.
    pub fn shown(&self) -> String {
        match self {
            Destination::Dir(d) => d.display().to_string(),
            Destination::Bucket(b) => b.url.clone(),
        }
    }

    /// Where a file of this destination is, for people.
    pub fn location(&self, name: &str) -> String {
        match self {
            Destination::Dir(d) => d.join(name).display().to_string(),
            Destination::Bucket(b) => format!("{}/{name}", b.url),
        }
    }

    /// The local file a file of this destination can be read from: itself for a directory;
    /// for a bucket, `None` (fetch it first).
    pub fn local(&self, name: &str) -> Option<PathBuf> {
        match self {
            Destination::Dir(d) => Some(d.join(name)),
            Destination::Bucket(_) => None,
        }
    }

    /// Makes the destination ready to receive (a directory is created).
    pub async fn prepare(&self) -> EngineResult<()> {
        match self {
            Destination::Dir(d) => tokio::fs::create_dir_all(d)
                .await
                .map_err(|e| io_err(d.display(), e)),
            Destination::Bucket(_) => Ok(()),
        }
    }

    /// Where to write a new file before [`Destination::publish`]: in place for a directory
    /// (the archive writer renames into place itself), a temporary file for a bucket.
    pub fn staging(&self, name: &str) -> PathBuf {
        match self {
            Destination::Dir(d) => d.join(name),
            Destination::Bucket(_) => {
                std::env::temp_dir().join(format!("pbackend-{}-{name}", std::process::id()))
            }
        }
    }

    /// Stores the file staged for `name`; a bucket receives it by multipart upload (the
    /// object appears whole or not at all) and the staged copy is deleted.
    pub async fn publish(&self, staged: &Path, name: &str) -> EngineResult<()> {
        let Destination::Bucket(b) = self else {
            return Ok(());
        };
        let result = b.upload(staged, name).await;
        let _ = tokio::fs::remove_file(staged).await;
        result
    }

    /// Writes a small file (a checksum) whole: renamed into place, or one PUT.
    pub async fn put_small(&self, name: &str, data: &[u8]) -> EngineResult<()> {
        match self {
            Destination::Dir(d) => {
                let path = d.join(name);
                let tmp = d.join(format!("{name}.partial"));
                let mut f = tokio::fs::File::create(&tmp)
                    .await
                    .map_err(|e| io_err(tmp.display(), e))?;
                f.write_all(data)
                    .await
                    .map_err(|e| io_err(tmp.display(), e))?;
                f.sync_all().await.map_err(|e| io_err(tmp.display(), e))?;
                tokio::fs::rename(&tmp, &path)
                    .await
                    .map_err(|e| io_err(path.display(), e))?;
                // Make the renames durable (not every filesystem lets a directory be synced).
                if let Ok(dir) = tokio::fs::File::open(d).await {
                    let _ = dir.sync_all().await;
                }
                Ok(())
            }
            Destination::Bucket(b) => b
                .store
                .put(&b.key(name), PutPayload::from(data.to_vec()))
                .await
                .map(|_| ())
                .map_err(|e| io_err(b.location(name), e)),
        }
    }

    /// Reads a small file whole; `None` when it does not exist.
    pub async fn get_small(&self, name: &str) -> EngineResult<Option<Vec<u8>>> {
        match self {
            Destination::Dir(d) => match tokio::fs::read(d.join(name)).await {
                Ok(v) => Ok(Some(v)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_err(d.join(name).display(), e)),
            },
            Destination::Bucket(b) => match b.store.get(&b.key(name)).await {
                Ok(r) => Ok(Some(
                    r.bytes()
                        .await
                        .map_err(|e| io_err(b.location(name), e))?
                        .to_vec(),
                )),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(io_err(b.location(name), e)),
            },
        }
    }

    /// Every file directly in the destination.
    pub async fn entries(&self) -> EngineResult<Vec<Entry>> {
        match self {
            Destination::Dir(d) => {
                let mut out = Vec::new();
                let mut rd = match tokio::fs::read_dir(d).await {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(io_err(d.display(), e)),
                };
                while let Some(e) = rd.next_entry().await.map_err(|e| io_err(d.display(), e))? {
                    let Ok(meta) = e.metadata().await else {
                        continue;
                    };
                    if !meta.is_file() {
                        continue;
                    }
                    let modified = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_secs() as i64);
                    out.push(Entry {
                        name: e.file_name().to_string_lossy().into_owned(),
                        bytes: meta.len(),
                        modified,
                    });
                }
                Ok(out)
            }
            Destination::Bucket(b) => {
                let prefix = (!b.prefix.is_empty()).then(|| ObjectPath::from(b.prefix.as_str()));
                let listed: Vec<object_store::ObjectMeta> = b
                    .store
                    .list(prefix.as_ref())
                    .try_collect()
                    .await
                    .map_err(|e| io_err(&b.url, e))?;
                let depth = prefix.as_ref().map(|p| p.parts().count()).unwrap_or(0);
                Ok(listed
                    .into_iter()
                    // Only what sits directly under the prefix, as a directory listing would.
                    .filter(|m| m.location.parts().count() == depth + 1)
                    .filter_map(|m| {
                        Some(Entry {
                            name: m.location.filename()?.to_owned(),
                            bytes: m.size,
                            modified: Some(m.last_modified.timestamp()),
                        })
                    })
                    .collect())
            }
        }
    }

    pub async fn exists(&self, name: &str) -> EngineResult<bool> {
        match self {
            Destination::Dir(d) => Ok(d.join(name).is_file()),
            Destination::Bucket(b) => match b.store.head(&b.key(name)).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(io_err(b.location(name), e)),
            },
        }
    }

    pub async fn remove(&self, name: &str) -> EngineResult<()> {
        match self {
            Destination::Dir(d) => match tokio::fs::remove_file(d.join(name)).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err(d.join(name).display(), e)),
            },
            Destination::Bucket(b) => match b.store.delete(&b.key(name)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(io_err(b.location(name), e)),
            },
        }
    }

    /// Copies a bucket's file to the local file `into` (streamed, never whole in memory).
    pub async fn fetch(&self, name: &str, into: &Path) -> EngineResult<()> {
        let Destination::Bucket(b) = self else {
            return Ok(());
        };
        let got = b
            .store
            .get(&b.key(name))
            .await
            .map_err(|e| io_err(b.location(name), e))?;
        let mut stream = got.into_stream();
        let mut f = tokio::fs::File::create(into)
            .await
            .map_err(|e| io_err(into.display(), e))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| io_err(b.location(name), e))?;
            f.write_all(&chunk)
                .await
                .map_err(|e| io_err(into.display(), e))?;
        }
        f.sync_all().await.map_err(|e| io_err(into.display(), e))
    }
}

/// The bucket and key prefix an `s3://bucket[/prefix]` URL names, its credentials, region
/// and endpoint from the `AWS_*` environment variables; `None` for anything else.
pub(crate) fn open_bucket(url: &str) -> EngineResult<Option<(Arc<dyn ObjectStore>, String)>> {
    let Some(rest) = url.strip_prefix("s3://") else {
        return Ok(None);
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(EngineError::Invalid(format!(
            "{url}: no bucket; write s3://BUCKET or s3://BUCKET/PREFIX"
        )));
    }
    let store = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| io_err(url, e))?;
    Ok(Some((Arc::new(store), prefix.trim_matches('/').to_owned())))
}

impl Bucket {
    fn key(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }

    fn location(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    async fn upload(&self, staged: &Path, name: &str) -> EngineResult<()> {
        let upload = self
            .store
            .put_multipart(&self.key(name))
            .await
            .map_err(|e| io_err(self.location(name), e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut f = tokio::fs::File::open(staged)
            .await
            .map_err(|e| io_err(staged.display(), e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match f.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(io_err(staged.display(), e));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = w.wait_for_capacity(4).await {
                return Err(io_err(self.location(name), e));
            }
            w.write(&buf[..n]);
        }
        w.finish()
            .await
            .map(|_| ())
            .map_err(|e| io_err(self.location(name), e))
    }
}
