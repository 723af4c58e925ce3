//! The operator's use cases, run by `pbackend` subcommands directly on the database: the same
//! rules as the server (stack removal, cancelling an update, importing) plus maintenance that
//! has no HTTP face (tokens, retention, key rotation, verification, journal replay).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::engine::blocking::run_blocking;
use crate::engine::crypto::{MasterKey, sha256_hex};
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::state::checkpoint::{engine_version, now_rfc3339};
use crate::engine::state::deployment::{
    EMPTY_DEPLOYMENT, blob_of, check_untyped, count_resources, gunzip_stored,
};
use crate::engine::state::history::SecretsOwner;
use crate::engine::state::{rekey, reveal};
use crate::engine::views::{PruneSummary, StackView, UpdateView, VersionView};
use crate::engine::{CreateStack, Engine, Identity, StackListQuery, names};
use crate::store::{StackKey, UpdateRow, UpdateStatus};

/// Reports progress of long operations to whoever shows it.
pub trait Progress: Send + Sync {
    fn start(&self, _total: u64, _what: &str) {}
    fn step(&self, _item: &str) {}
    fn finish(&self) {}
}

/// Shows nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

#[derive(Debug, Clone)]
pub struct StackOverview {
    pub stack: StackView,
    /// The running update holding the stack, if any (its lease may have expired).
    pub lock: Option<UpdateView>,
}

#[derive(Debug, Clone)]
pub struct StackDetails {
    pub stack: StackView,
    pub lock: Option<UpdateView>,
    pub versions: Vec<VersionView>,
    pub history: Vec<UpdateView>,
    /// `Ok(true)`: the key unwraps; `Ok(false)`: not checked (no master key given).
    pub key: Result<bool, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub update_id: String,
    pub created: bool,
    /// Plaintext secrets encrypted with the stack's key.
    pub encrypted: usize,
    /// Secrets re-encrypted from another stack's key.
    pub reencrypted: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub stack: Option<String>,
    pub check: &'static str,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub update_id: String,
    pub version: i64,
    pub batches: i64,
    pub entries: u64,
    pub resources: i64,
    /// Differences between the rebuilt and the stored state (`+` only rebuilt, `-` only
    /// stored, `~` different).
    pub diff: Vec<String>,
    pub written: bool,
}

fn parse_key(text: &str) -> EngineResult<StackKey> {
    let parts: Vec<&str> = text.split('/').collect();
    let [org, project, stack] = parts.as_slice() else {
        return Err(EngineError::Invalid(format!(
            "{text:?} is not a fully qualified stack name: use ORG/PROJECT/STACK"
        )));
    };
    let key = StackKey {
        org: (*org).into(),
        project: (*project).into(),
        stack: (*stack).into(),
    };
    names::check_key(&key)?;
    Ok(key)
}

impl StackKey {
    /// Parses `ORG/PROJECT/STACK`.
    pub fn parse(text: &str) -> EngineResult<StackKey> {
        parse_key(text)
    }
}

fn resources_by_urn(d: &Value) -> BTreeMap<String, Value> {
    d["deployment"]["resources"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| (r["urn"].as_str().unwrap_or("").to_owned(), r.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Differences between two deployments that matter (not the manifest).
fn diff_deployments(rebuilt: &Value, stored: &Value) -> Vec<String> {
    let a = resources_by_urn(rebuilt);
    let b = resources_by_urn(stored);
    let mut out = Vec::new();
    for (urn, r) in &a {
        match b.get(urn) {
            None => out.push(format!("+ {urn}")),
            Some(s) if s != r => {
                let mut fields: Vec<String> = Vec::new();
                if let (Some(x), Some(y)) = (r.as_object(), s.as_object()) {
                    for k in x.keys().chain(y.keys()) {
                        if x.get(k) != y.get(k) && !fields.contains(k) {
                            fields.push(k.clone());
                        }
                    }
                }
                out.push(format!("~ {urn} ({})", fields.join(", ")));
            }
            _ => {}
        }
    }
    for urn in b.keys() {
        if !a.contains_key(urn) {
            out.push(format!("- {urn}"));
        }
    }
    let order = |d: &Value| -> Vec<String> {
        d["deployment"]["resources"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| r["urn"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    if out.is_empty() && order(rebuilt) != order(stored) {
        out.push("~ resource order differs".into());
    }
    for key in [
        "pending_operations",
        "secrets_providers",
        "snippets",
        "extensions",
    ] {
        if rebuilt["deployment"].get(key) != stored["deployment"].get(key) {
            out.push(format!("~ {key}"));
        }
    }
    out
}

impl Engine {
    /// Every stack matching the filters, with the update that holds it.
    pub async fn operator_stacks(&self, q: StackListQuery) -> EngineResult<Vec<StackOverview>> {
        self.stacks_with_locks(&Identity::operator(), q, usize::MAX)
            .await
    }

    /// The stacks matching the filters that `caller` may see (at most `cap`), each with the
    /// update that holds it (the web console's lists, `pbackend stack ls`).
    pub async fn stacks_with_locks(
        &self,
        caller: &Identity,
        q: StackListQuery,
        cap: usize,
    ) -> EngineResult<Vec<StackOverview>> {
        let mut out = Vec::new();
        let mut q = q;
        loop {
            let page = self.list_stacks(caller, q.clone()).await?;
            for s in page.stacks {
                if out.len() >= cap {
                    return Ok(out);
                }
                let lock = match s.active_update {
                    Some(_) => self.store.running_update(s.id).await?.map(Into::into),
                    None => None,
                };
                out.push(StackOverview { stack: s, lock });
            }
            match page.continuation {
                Some(c) => q.continuation = Some(c),
                None => return Ok(out),
            }
        }
    }

    pub async fn stack_details(&self, key: &StackKey) -> EngineResult<StackDetails> {
        let stack = self.stack(&Identity::operator(), key).await?;
        let lock = self.store.running_update(stack.id).await?;
        let versions = self.store.list_versions(stack.id).await?;
        let history = self.store.list_updates(stack.id, 0, 10).await?;
        let key = match &self.master {
            None => Ok(false),
            Some(_) => self
                .stack_secret_key(stack.id)
                .await
                .map(|_| true)
                .map_err(|e| e.to_string()),
        };
        Ok(StackDetails {
            stack: stack.into(),
            lock: lock.map(Into::into),
            versions: versions.into_iter().map(Into::into).collect(),
            history: history.into_iter().map(Into::into).collect(),
            key,
        })
    }

    pub async fn operator_delete_stack(&self, key: &StackKey, force: bool) -> EngineResult<()> {
        self.delete_stack(&Identity::operator(), key, force).await
    }

    /// Cancels the update holding a stack (a crashed CLI, an abandoned lease), keeping the
    /// state it reached. Returns its id, or `None` when nothing held the stack.
    pub async fn force_unlock(&self, key: &StackKey) -> EngineResult<Option<UpdateView>> {
        let caller = Identity::operator();
        let stack = self.stack(&caller, key).await?;
        let Some(running) = self.store.running_update(stack.id).await? else {
            return Ok(None);
        };
        self.cancel_update(&caller, key, &running.id).await?;
        tracing::warn!(stack = %key, update = %running.id, author = %running.author,
            "operator force-unlocked the stack (update cancelled)");
        Ok(Some(running.into()))
    }

    /// The deployment `pulumi stack export` would give (compact; the CLI layer formats it).
    /// With `show_secrets`, service-encrypted values are decrypted.
    pub async fn operator_export(
        &self,
        key: &StackKey,
        version: Option<i64>,
        show_secrets: bool,
    ) -> EngineResult<Vec<u8>> {
        let export = self.export(&Identity::operator(), key, version).await?;
        let json = match (export.gz, export.plain) {
            (Some(gz), _) => run_blocking(move || gunzip_stored(&gz)).await?,
            (None, plain) => plain.unwrap_or(EMPTY_DEPLOYMENT).to_vec(),
        };
        if !show_secrets {
            return Ok(json);
        }
        let owner = match rekey::service_provider_stack(&json) {
            Some(k) => self.store.get_stack_or_former(&k).await?,
            None => None,
        };
        let owner = match owner {
            Some(s) => s,
            None => self.stack(&Identity::operator(), key).await?,
        };
        let k = self.stack_secret_key(owner.id).await?;
        let (json, _) = run_blocking(move || reveal::reveal(&json, &k)).await?;
        Ok(json)
    }

    /// Rolls a stack back to a kept version (see [`Engine::rollback`]).
    pub async fn operator_rollback(&self, key: &StackKey, version: i64) -> EngineResult<String> {
        let id = self.rollback(&Identity::operator(), key, version).await?;
        tracing::warn!(stack = %key, version, update = %id, "operator rolled the stack back");
        Ok(id)
    }

    /// Stores a deployment file as a new version of a stack. Plaintext secrets are encrypted
    /// with the stack's key; secrets of another stack of this database are re-encrypted; a
    /// secret that would not decrypt afterwards is refused.
    pub async fn operator_import(
        &self,
        key: &StackKey,
        json: Vec<u8>,
        create: bool,
    ) -> EngineResult<ImportReport> {
        let caller = Identity::operator();
        let mut created = false;
        let stack = match self.store.get_stack(key).await? {
            Some(s) => s,
            None if create => {
                created = true;
                self.create_stack(
                    &caller,
                    &key.org,
                    &key.project,
                    CreateStack {
                        name: key.stack.clone(),
                        tags: [("pulumi:project".to_owned(), key.project.clone())].into(),
                        teams: vec![],
                        initial_state: None,
                    },
                )
                .await?
            }
            None => {
                return Err(EngineError::NotFound(format!(
                    "stack '{key}' not found (pass --create to create it)"
                )));
            }
        };
        check_untyped(&json)?;
        // First move the ciphertexts of another stack to this stack's key, then encrypt the
        // plaintexts with it, then check that every secret opens with it.
        let mut reencrypted = 0;
        let json = match self.secrets_owner(stack.id, key, &json).await? {
            SecretsOwner::This => json,
            SecretsOwner::Other(from) => {
                let (json, n) = self.rekey_from(from.id, stack.id, key, json).await?;
                reencrypted = n;
                json
            }
            SecretsOwner::Absent(source) => {
                let n = reveal::count_ciphertexts(&json)?;
                if n > 0 {
                    return Err(EngineError::Invalid(format!(
                        "the deployment's {n} secrets were encrypted for stack '{source}', \
                         which is not in this database: export it with --show-secrets from \
                         where it lives, or import that stack first"
                    )));
                }
                rekey::point_provider_at(&json, key)?
            }
        };
        let target = self.stack_secret_key(stack.id).await?;
        let (json, encrypted) = run_blocking(move || {
            let (json, encrypted) = reveal::conceal(&json, &target)?;
            reveal::check_ciphertexts(&json, &target)?;
            Ok((json, encrypted))
        })
        .await?;
        let update_id = self.import(&caller, key, json, None).await?;
        Ok(ImportReport {
            update_id,
            created,
            encrypted,
            reencrypted,
        })
    }

    // ------------------------------------------------------------------ retention

    /// Deletes versions beyond the newest `keep` (never the current one).
    pub async fn prune_versions(
        &self,
        stacks: &[StackKey],
        keep: i64,
        dry_run: bool,
        progress: &dyn Progress,
    ) -> EngineResult<Vec<(StackKey, PruneSummary)>> {
        let targets = self.select_stacks(stacks).await?;
        progress.start(targets.len() as u64, "pruning");
        let mut out = Vec::new();
        for s in targets {
            let r = self.store.prune_stack_versions(s.id, keep, dry_run).await?;
            progress.step(&s.key.to_string());
            out.push((s.key, r.into()));
        }
        progress.finish();
        Ok(out)
    }

    pub async fn vacuum(&self) -> EngineResult<()> {
        Ok(self.store.vacuum().await?)
    }

    async fn select_stacks(&self, keys: &[StackKey]) -> EngineResult<Vec<StackView>> {
        if keys.is_empty() {
            return Ok(self
                .operator_stacks(StackListQuery::default())
                .await?
                .into_iter()
                .map(|o| o.stack)
                .collect());
        }
        let mut out = Vec::new();
        for k in keys {
            out.push(self.stack(&Identity::operator(), k).await?.into());
        }
        Ok(out)
    }

    // ------------------------------------------------------------------ keys

    /// Re-wraps every stack key (and the canary) under `new`, in one transaction. Every key
    /// must unwrap with the current master key first. Returns how many keys.
    pub async fn rotate_keys(
        &self,
        new: &MasterKey,
        dry_run: bool,
        progress: &dyn Progress,
    ) -> EngineResult<usize> {
        let old = self.master()?;
        let keys = self.store.list_wrapped_keys().await?;
        progress.start(keys.len() as u64, "re-wrapping");
        let mut rewrapped = Vec::with_capacity(keys.len());
        for k in &keys {
            let key = old.unwrap_key(&k.wrapped).map_err(|_| {
                EngineError::Invalid(format!(
                    "the key of stack '{}' does not unwrap with the current master key; nothing \
                     was changed",
                    k.key
                ))
            })?;
            rewrapped.push((k.stack_id, new.wrap(&key)));
            progress.step(&k.key.to_string());
        }
        if !dry_run {
            self.store
                .replace_wrapped_keys(rewrapped, new.canary())
                .await?;
        }
        progress.finish();
        Ok(keys.len())
    }

    // ------------------------------------------------------------------ verification

    /// Checks every stored version, the current-version pointers, journal replays, stack keys
    /// and the database's own consistency. Returns the problems found.
    pub async fn verify(
        &self,
        stacks: &[StackKey],
        progress: &dyn Progress,
    ) -> EngineResult<Vec<Finding>> {
        let mut findings = Vec::new();
        for p in self.store.integrity_problems().await? {
            findings.push(Finding {
                stack: None,
                check: "database",
                problem: p,
            });
        }
        let targets = self.select_stacks(stacks).await?;
        progress.start(targets.len() as u64, "verifying");
        for s in targets {
            let name = s.key.to_string();
            let mut add = |check: &'static str, problem: String| {
                findings.push(Finding {
                    stack: Some(name.clone()),
                    check,
                    problem,
                })
            };
            let versions = self.store.list_versions(s.id).await?;
            for v in &versions {
                let Some(blob) = self.store.get_state(s.id, Some(v.version)).await? else {
                    continue;
                };
                let (expect_sha, expect_size, expect_count) =
                    (v.sha256.clone(), v.size, v.resource_count);
                let problem = run_blocking(move || {
                    let json = match gunzip_stored(&blob.gz) {
                        Ok(j) => j,
                        Err(_) => return Ok(Some("does not decompress".to_owned())),
                    };
                    if sha256_hex(&json) != expect_sha {
                        return Ok(Some("SHA-256 does not match the stored hash".into()));
                    }
                    if json.len() as i64 != expect_size {
                        return Ok(Some("size does not match".into()));
                    }
                    match check_untyped(&json) {
                        Err(e) => Ok(Some(format!("is not a valid deployment: {e}"))),
                        Ok(n) if n != expect_count => {
                            Ok(Some(format!("has {n} resources, recorded {expect_count}")))
                        }
                        Ok(_) => Ok(None),
                    }
                })
                .await?;
                if let Some(p) = problem {
                    add("version", format!("version {}: {p}", v.version));
                }
            }
            // A running server may write between these reads: a version and the pointer to
            // it are written in one transaction and the newest is never pruned, so the
            // pointer read *after* the list is at least the newest listed; one beyond the
            // list was written since and is checked by the next run.
            let Some(now) = self.store.get_stack(&s.key).await? else {
                progress.step(&s.key.to_string());
                continue; // deleted or renamed since the list of stacks was read
            };
            let newest = versions.iter().map(|v| v.version).max();
            match (now.current_version, newest) {
                (Some(c), Some(n)) if c < n => add(
                    "current",
                    format!("the current version is {c} but version {n} is newer"),
                ),
                (Some(c), n)
                    if n.is_none_or(|n| c <= n) && !versions.iter().any(|v| v.version == c) =>
                {
                    add("current", format!("the current version {c} is not stored"))
                }
                (None, Some(n)) => add(
                    "current",
                    format!("no current version, but version {n} is stored"),
                ),
                _ => {}
            }
            if self.master.is_some()
                && let Err(e) = self.stack_secret_key(s.id).await
            {
                add("key", format!("the stack key does not unwrap: {e}"));
            }
            let kept: std::collections::HashSet<i64> = versions.iter().map(|v| v.version).collect();
            for u in self.store.list_updates(s.id, 0, i64::MAX).await? {
                let replayable = u.journal_version >= 1
                    && u.status.is_finished()
                    && kept.contains(&u.version)
                    && u.base_version.is_none_or(|b| kept.contains(&b));
                if !replayable || self.store.list_journal_batches(&u.id).await?.is_empty() {
                    continue;
                }
                match self.replay_compare(s.id, &u).await {
                    Ok(diff) if diff.is_empty() => {}
                    Ok(diff) => add(
                        "journal",
                        format!(
                            "the journal of update {} (version {}) does not replay to the stored \
                             state: {}",
                            u.id,
                            u.version,
                            diff.join("; ")
                        ),
                    ),
                    Err(e) => {
                        // Retention may have pruned the versions since they were listed.
                        let still: std::collections::HashSet<i64> = self
                            .store
                            .list_versions(s.id)
                            .await?
                            .iter()
                            .map(|v| v.version)
                            .collect();
                        let pruned = !still.contains(&u.version)
                            || u.base_version.is_some_and(|b| !still.contains(&b));
                        if !pruned {
                            add("journal", format!("update {}: {e}", u.id));
                        }
                    }
                }
            }
            progress.step(&s.key.to_string());
        }
        progress.finish();
        Ok(findings)
    }

    /// Replays an update's stored journal and compares it with the stored state of its
    /// version; returns the rebuilt text and the differences.
    async fn replay_with_diff(
        &self,
        stack_id: i64,
        update: &UpdateRow,
    ) -> EngineResult<(Vec<u8>, i64, u64, i64, Vec<String>)> {
        let (replayer, batches) = self.replay_stored_journal(update).await?;
        let stored = self.store.get_state(stack_id, Some(update.version)).await?;
        let version = engine_version(update);
        run_blocking(move || {
            let generated = replayer.generate()?;
            let json = generated.to_untyped(&version, &now_rfc3339());
            let rebuilt: Value = serde_json::from_slice(&json).map_err(EngineError::internal)?;
            let stored: Value = match stored {
                Some(b) => serde_json::from_slice(&gunzip_stored(&b.gz)?)
                    .map_err(|e| EngineError::Internal(format!("stored state: {e}")))?,
                None => Value::Null,
            };
            let diff = diff_deployments(&rebuilt, &stored);
            Ok((
                json,
                batches,
                replayer.applied(),
                generated.resource_count(),
                diff,
            ))
        })
        .await
    }

    async fn replay_compare(&self, stack_id: i64, update: &UpdateRow) -> EngineResult<Vec<String>> {
        Ok(self.replay_with_diff(stack_id, update).await?.4)
    }

    /// Rebuilds a stack's state from a stored journal (the latest journaled update, or
    /// `update_id`) and, unless `dry_run`, stores it as that update's version.
    pub async fn replay_journal(
        &self,
        key: &StackKey,
        update_id: Option<&str>,
        dry_run: bool,
    ) -> EngineResult<ReplayReport> {
        let stack = self.stack(&Identity::operator(), key).await?;
        let update = match update_id {
            Some(id) => self.update_of(stack.id, id).await?,
            None => self
                .store
                .list_updates(stack.id, 0, i64::MAX)
                .await?
                .into_iter()
                .find(|u| u.journal_version >= 1)
                .ok_or_else(|| {
                    EngineError::NotFound(format!("stack '{key}' has no journaled update"))
                })?,
        };
        if update.journal_version < 1 || update.dry_run {
            return Err(EngineError::Invalid(format!(
                "update {} did not send a journal",
                update.id
            )));
        }
        if update.status == UpdateStatus::Running && !dry_run {
            return Err(EngineError::Conflict(format!(
                "update {} is still running: `pbackend stack unlock {key}` finishes it with the \
                 state its journal describes",
                update.id
            )));
        }
        let (json, batches, entries, resources, diff) =
            self.replay_with_diff(stack.id, &update).await?;
        let mut written = false;
        if !dry_run && !diff.is_empty() {
            let blob = run_blocking(move || {
                let n = count_resources(&json)?;
                Ok(blob_of(&json, n))
            })
            .await?;
            self.store
                .replace_version_state(stack.id, update.version, blob)
                .await?;
            written = true;
        }
        Ok(ReplayReport {
            update_id: update.id,
            version: update.version,
            batches,
            entries,
            resources,
            diff,
            written,
        })
    }
}
