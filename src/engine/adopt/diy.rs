//! Reading a DIY ("self-managed") backend: a directory or bucket holding `.pulumi/`.
//!
//! Layout 1 (`.pulumi/meta.yaml` says `version: 1`): stacks at
//! `.pulumi/stacks/<project>/<stack>.json`, history at
//! `.pulumi/history/<project>/<stack>/<stack>-<unix nanos>.history.json` with its
//! `.checkpoint.json`, tags in `.pulumi/stacks/<project>/<stack>.pulumi-tags`, locks under
//! `.pulumi/locks/organization/<project>/<stack>/`. The legacy layout (no meta file) drops the
//! `<project>/` level; the project is then read from the stack's resource URNs. Any file may
//! be gzip (`.gz`) — recognised by its magic bytes, as the CLI does. Everything else the CLI
//! leaves there (`.bak`, `.attrs`, backups, temporary files) is ignored.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::engine::error::{EngineError, EngineResult};

pub enum DiySource {
    Dir(PathBuf),
    Bucket {
        store: Arc<dyn ObjectStore>,
        prefix: String,
        url: String,
    },
}

/// A file of the backend: its key below the root (`.pulumi/...`) and when it last changed.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    modified: i64,
}

/// One stack found in the backend.
#[derive(Debug, Clone)]
pub struct DiyStack {
    /// `None` in the legacy layout until read from the state.
    pub project: Option<String>,
    pub stack: String,
    pub file: String,
    pub tags: Option<String>,
    /// (unix nanos, history file, checkpoint file), oldest first.
    pub history: Vec<(i128, String, Option<String>)>,
    pub locked: bool,
    /// Seconds of the stack file's last change.
    pub modified: i64,
}

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> EngineError {
    EngineError::Invalid(format!("{what}: {e}"))
}

impl DiySource {
    /// `file:///path`, a plain path, or `s3://bucket/prefix` (credentials from `AWS_*`).
    pub fn parse(url: &str) -> EngineResult<DiySource> {
        if let Some((store, prefix)) = crate::engine::backup::dest::open_bucket(url)? {
            return Ok(DiySource::Bucket {
                store,
                prefix,
                url: url.to_owned(),
            });
        }
        if url.contains("://") && !url.starts_with("file://") {
            return Err(EngineError::Invalid(format!(
                "{url}: only file:// (or a path) and s3:// backends can be adopted"
            )));
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        // `file://~/state` as the CLI accepts it.
        let path = match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
            (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
            _ => PathBuf::from(path),
        };
        Ok(DiySource::Dir(path))
    }

    pub fn shown(&self) -> String {
        match self {
            DiySource::Dir(p) => p.display().to_string(),
            DiySource::Bucket { url, .. } => url.clone(),
        }
    }

    async fn list(&self) -> EngineResult<Vec<Entry>> {
        match self {
            DiySource::Dir(root) => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || {
                    let mut out = Vec::new();
                    walk(&root, &root.join(".pulumi"), &mut out)?;
                    Ok(out)
                })
                .await
                .map_err(EngineError::internal)?
            }
            DiySource::Bucket { store, prefix, url } => {
                let base = if prefix.is_empty() {
                    ".pulumi".to_owned()
                } else {
                    format!("{prefix}/.pulumi")
                };
                let listed: Vec<object_store::ObjectMeta> = store
                    .list(Some(&object_store::path::Path::from(base)))
                    .try_collect()
                    .await
                    .map_err(|e| err(url, e))?;
                Ok(listed
                    .into_iter()
                    .filter_map(|m| {
                        let key = m.location.to_string();
                        let key = match prefix.is_empty() {
                            true => key,
                            false => key.strip_prefix(&format!("{prefix}/"))?.to_owned(),
                        };
                        Some(Entry {
                            key,
                            modified: m.last_modified.timestamp(),
                        })
                    })
                    .collect())
            }
        }
    }

    /// A file's content, decompressed.
    pub async fn read(&self, key: &str) -> EngineResult<Vec<u8>> {
        let raw = match self {
            DiySource::Dir(root) => {
                let path = root.join(key);
                tokio::fs::read(&path)
                    .await
                    .map_err(|e| err(path.display(), e))?
            }
            DiySource::Bucket { store, prefix, url } => {
                let full = match prefix.is_empty() {
                    true => key.to_owned(),
                    false => format!("{prefix}/{key}"),
                };
                store
                    .get(&object_store::path::Path::from(full))
                    .await
                    .map_err(|e| err(format!("{url}/{key}"), e))?
                    .bytes()
                    .await
                    .map_err(|e| err(format!("{url}/{key}"), e))?
                    .to_vec()
            }
        };
        decompress(key, raw)
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Entry>) -> EngineResult<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == root.join(".pulumi") => {
            return Err(EngineError::Invalid(format!(
                "{} holds no .pulumi directory: not a DIY backend",
                root.display()
            )));
        }
        Err(e) => return Err(err(dir.display(), e)),
    };
    for e in rd.flatten() {
        let path = e.path();
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if let Ok(rel) = path.strip_prefix(root) {
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            out.push(Entry {
                key: rel.to_string_lossy().replace('\\', "/"),
                modified,
            });
        }
    }
    Ok(())
}

fn decompress(key: &str, raw: Vec<u8>) -> EngineResult<Vec<u8>> {
    if raw.starts_with(&[0x1f, 0x8b, 0x08]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| err(key, e))?;
        return Ok(out);
    }
    if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(EngineError::Invalid(format!(
            "{key} is zstd-compressed, which pbackend does not read yet; rewrite the backend \
             without PULUMI_DIY_BACKEND_ZSTD (or gzip) first"
        )));
    }
    Ok(raw)
}

/// `name.json`, `name.json.gz` → `name`; anything else → `None`.
fn state_name(file: &str) -> Option<&str> {
    file.strip_suffix(".json.gz")
        .or_else(|| file.strip_suffix(".json"))
}

/// The backend's layout version and its stacks.
pub async fn discover(src: &DiySource) -> EngineResult<(u32, Vec<DiyStack>)> {
    let entries = src.list().await?;
    let layout = if entries.iter().any(|e| e.key == ".pulumi/meta.yaml") {
        let text = String::from_utf8_lossy(&src.read(".pulumi/meta.yaml").await?).into_owned();
        text.lines()
            .find_map(|l| l.trim().strip_prefix("version:"))
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(0)
    } else {
        0
    };
    if layout > 1 {
        return Err(EngineError::Invalid(format!(
            "{}: DIY layout version {layout} is newer than this pbackend knows (1)",
            src.shown()
        )));
    }
    // (project or "", stack) → the newest state file of that stack.
    let mut stacks: BTreeMap<(String, String), DiyStack> = BTreeMap::new();
    for e in &entries {
        let Some(rest) = e.key.strip_prefix(".pulumi/stacks/") else {
            continue;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let (project, file) = match (layout, parts.as_slice()) {
            (1, [p, f]) => (Some((*p).to_owned()), *f),
            (0, [f]) => (None, *f),
            _ => continue,
        };
        let Some(stack) = state_name(file) else {
            continue;
        };
        let id = (project.clone().unwrap_or_default(), stack.to_owned());
        let newer = stacks.get(&id).is_none_or(|s| s.modified < e.modified);
        if newer {
            stacks.insert(
                id,
                DiyStack {
                    project,
                    stack: stack.to_owned(),
                    file: e.key.clone(),
                    tags: None,
                    history: Vec::new(),
                    locked: false,
                    modified: e.modified,
                },
            );
        }
    }
    for ((project, stack), s) in stacks.iter_mut() {
        let dir = match layout {
            1 => format!("{project}/{stack}"),
            _ => stack.clone(),
        };
        let tags = match layout {
            1 => format!(".pulumi/stacks/{project}/{stack}.pulumi-tags"),
            _ => format!(".pulumi/stacks/{stack}.pulumi-tags"),
        };
        s.tags = entries.iter().any(|e| e.key == tags).then_some(tags);
        let lock_dir = match layout {
            1 => format!(".pulumi/locks/organization/{project}/{stack}/"),
            _ => format!(".pulumi/locks/{stack}/"),
        };
        s.locked = entries
            .iter()
            .any(|e| e.key.starts_with(&lock_dir) && e.key.ends_with(".json"));
        let history_dir = format!(".pulumi/history/{dir}/");
        let prefix = format!("{stack}-");
        for e in &entries {
            let Some(file) = e.key.strip_prefix(&history_dir) else {
                continue;
            };
            let Some(core) = file
                .strip_suffix(".history.json.gz")
                .or_else(|| file.strip_suffix(".history.json"))
            else {
                continue;
            };
            let Some(nanos) = core
                .strip_prefix(&prefix)
                .and_then(|n| n.parse::<i128>().ok())
            else {
                continue;
            };
            let checkpoint = [".checkpoint.json", ".checkpoint.json.gz"]
                .iter()
                .map(|ext| format!("{history_dir}{core}{ext}"))
                .find(|k| entries.iter().any(|e| &e.key == k));
            s.history.push((nanos, e.key.clone(), checkpoint));
        }
        s.history.sort_by_key(|h| h.0);
    }
    Ok((layout, stacks.into_values().collect()))
}
