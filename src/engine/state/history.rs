//! History, export and import.

use crate::engine::blocking::run_blocking;
use crate::engine::blocking::run_sized;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::integration::audit::AuditKind;
use crate::engine::state::deployment::{EMPTY_DEPLOYMENT, blob_of, blob_with_gz, check_untyped};
use crate::engine::state::rekey;
use crate::engine::views::UpdateView;
use crate::engine::{Engine, Identity};
use crate::store::{ImportOutcome, NewUpdate, StackKey, StateBlob};
use crate::types::StackPermission;

/// The most updates one page of history holds ...
pub const MAX_HISTORY_PAGE: i64 = 1000;
/// ... and the most a request without a page size gets (the newest).
pub const MAX_HISTORY_ALL: i64 = 10_000;

/// A deployment ready to send: gzip-compressed as stored, so an export to a client that
/// accepts gzip costs no compression at all.
pub struct Export {
    pub gz: Option<Vec<u8>>,
    /// Set instead of `gz` for a stack without state.
    pub plain: Option<&'static [u8]>,
}

/// What a new version records about where it came from: the update's message and the audit
/// event written with it.
struct Why {
    message: String,
    audit: AuditKind,
    description: String,
}

/// See [`Engine::secrets_owner`].
pub(crate) enum SecretsOwner {
    /// This stack (or no service-encrypted secrets at all).
    This,
    /// Another stack of this instance.
    Other(Box<crate::store::StackRow>),
    /// A stack this instance does not have.
    Absent(StackKey),
}

impl Engine {
    /// Whose service key encrypted the secrets of a deployment about to be stored in the
    /// stack `stack_id` named `key`.
    pub(crate) async fn secrets_owner(
        &self,
        stack_id: i64,
        key: &StackKey,
        json: &[u8],
    ) -> EngineResult<SecretsOwner> {
        let Some(source) = rekey::service_provider_stack(json) else {
            return Ok(SecretsOwner::This);
        };
        if &source == key {
            return Ok(SecretsOwner::This);
        }
        Ok(match self.store.get_stack_or_former(&source).await? {
            Some(from) if from.id == stack_id => SecretsOwner::This,
            Some(from) => SecretsOwner::Other(Box::new(from)),
            None => SecretsOwner::Absent(source),
        })
    }

    /// Re-encrypts the secrets of stack `from` in `json` for the stack `to` named `key` (see
    /// `rekey`). Returns the new text and how many secrets it re-encrypted.
    pub(crate) async fn rekey_from(
        &self,
        from: i64,
        to: i64,
        key: &StackKey,
        json: Vec<u8>,
    ) -> EngineResult<(Vec<u8>, usize)> {
        let from = self.stack_secret_key(from).await?;
        let to = self.stack_secret_key(to).await?;
        let target = key.clone();
        let (json, n) = run_blocking(move || rekey::rekey(&json, &from, &to, &target)).await?;
        tracing::info!(to = %key, secrets = n, "re-encrypted an imported deployment");
        Ok((json, n))
    }

    /// Non-preview updates, newest first. `page` counts from 1; `page_size` 0 means all.
    pub async fn history(
        &self,
        caller: &Identity,
        key: &StackKey,
        page: i64,
        page_size: i64,
    ) -> EngineResult<Vec<UpdateView>> {
        let stack = self.stack(caller, key).await?;
        let (offset, limit) = if page_size > 0 {
            let size = page_size.min(MAX_HISTORY_PAGE);
            ((page.max(1) - 1).saturating_mul(size), size)
        } else {
            (0, MAX_HISTORY_ALL)
        };
        Ok(self
            .store
            .list_updates(stack.id, offset, limit)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    pub async fn latest_update(
        &self,
        caller: &Identity,
        key: &StackKey,
    ) -> EngineResult<UpdateView> {
        let stack = self.stack(caller, key).await?;
        self.store
            .list_updates(stack.id, 0, 1)
            .await?
            .into_iter()
            .next()
            .map(Into::into)
            .ok_or_else(|| EngineError::NotFound(format!("stack '{key}' has no updates")))
    }

    pub async fn update_by_version(
        &self,
        caller: &Identity,
        key: &StackKey,
        version: i64,
    ) -> EngineResult<UpdateView> {
        let stack = self.stack(caller, key).await?;
        self.store
            .get_update_by_version(stack.id, version)
            .await?
            .map(Into::into)
            .ok_or_else(|| EngineError::NotFound(format!("stack '{key}' has no version {version}")))
    }

    /// The current deployment, or the one of `version`.
    pub async fn export(
        &self,
        caller: &Identity,
        key: &StackKey,
        version: Option<i64>,
    ) -> EngineResult<Export> {
        let stack = self.stack(caller, key).await?;
        // While an update runs, the stack's current state is what it has reported so far.
        if version.is_none()
            && stack.active_update.is_some()
            && let Some(running) = self.store.running_update(stack.id).await?
            && let Some(blob) = self.live_state(&running).await?
        {
            return Ok(Export {
                gz: Some(blob.gz),
                plain: None,
            });
        }
        self.export_version(stack.id, key, version).await
    }

    /// A stored version of a stack's state (`None`: the current one), as export sends it.
    pub(crate) async fn export_version(
        &self,
        stack_id: i64,
        key: &StackKey,
        version: Option<i64>,
    ) -> EngineResult<Export> {
        match self.store.get_state(stack_id, version).await? {
            Some(blob) => Ok(Export {
                gz: Some(blob.gz),
                plain: None,
            }),
            None => match version {
                None => Ok(Export {
                    gz: None,
                    plain: Some(EMPTY_DEPLOYMENT),
                }),
                Some(v) => Err(EngineError::NotFound(format!(
                    "version {v} of stack '{key}' does not exist or is no longer kept"
                ))),
            },
        }
    }

    /// `POST …/import`: stores a deployment as a new version. `gz` is the body as received
    /// when it came gzip-compressed. Returns the id of the update recorded for it.
    pub async fn import(
        &self,
        caller: &Identity,
        key: &StackKey,
        json: Vec<u8>,
        gz: Option<Vec<u8>>,
    ) -> EngineResult<String> {
        let stack = self.stack(caller, key).await?;
        // A deployment whose secrets belong to another stack of this instance is
        // re-encrypted for this one; anything else is stored as sent.
        let (json, gz) = match self.secrets_owner(stack.id, key, &json).await? {
            SecretsOwner::Other(from) => {
                // Decrypting another stack's secrets needs what decrypting them directly
                // needs: read access to that stack.
                self.require_stack(caller, &from, StackPermission::Read)
                    .await?;
                (self.rekey_from(from.id, stack.id, key, json).await?.0, None)
            }
            SecretsOwner::This | SecretsOwner::Absent(_) => (json, gz),
        };
        let blob = run_sized(json.len(), move || {
            let count = check_untyped(&json)?;
            Ok(match gz {
                Some(gz) => blob_with_gz(&json, gz, count),
                None => blob_of(&json, count),
            })
        })
        .await?;
        let description = format!(
            "state imported into stack {key} ({} resources)",
            blob.resource_count
        );
        let why = Why {
            message: String::new(),
            audit: AuditKind::StackImported,
            description,
        };
        self.store_new_version(caller, key, stack.id, blob, why)
            .await
    }

    /// Rolls a stack back to a kept version: that version's state is stored as the newest
    /// one (recorded as an import whose message names the version), and the history in
    /// between is kept. Needs write access, as an import does.
    pub async fn rollback(
        &self,
        caller: &Identity,
        key: &StackKey,
        version: i64,
    ) -> EngineResult<String> {
        let stack = self.stack(caller, key).await?;
        self.require_stack(caller, &stack, StackPermission::Write)
            .await?;
        let blob = self
            .store
            .get_state(stack.id, Some(version))
            .await?
            .ok_or_else(|| {
                EngineError::NotFound(format!(
                    "version {version} of stack '{key}' does not exist or is no longer kept"
                ))
            })?;
        let description = format!(
            "stack {key} rolled back to version {version} ({} resources)",
            blob.resource_count
        );
        let why = Why {
            message: format!("rollback to version {version}"),
            audit: AuditKind::StackRolledBack,
            description,
        };
        self.store_new_version(caller, key, stack.id, blob, why)
            .await
    }

    /// Stores `blob` as the stack's newest version through a finished `import` update,
    /// with its audit event in the same transaction; an expired holder of the stack is
    /// reaped first, a live one refuses.
    async fn store_new_version(
        &self,
        caller: &Identity,
        key: &StackKey,
        stack_id: i64,
        blob: StateBlob,
        why: Why,
    ) -> EngineResult<String> {
        for _ in 0..2 {
            let id = crate::engine::state::updates::new_update_id();
            let update = NewUpdate {
                coherence_window: None,
                id: id.clone(),
                stack_id,
                kind: "import".into(),
                dry_run: false,
                created_at: self.now(),
                author: caller.user.clone(),
                message: why.message.clone(),
                environment: "{}".into(),
                config: "{}".into(),
            };
            let notes = self.note(caller, Some(&key.org), why.audit, why.description.clone());
            match self
                .store
                .import_state(update, blob.clone(), self.cfg.max_state_versions, notes)
                .await?
            {
                ImportOutcome::Imported { .. } => return Ok(id),
                ImportOutcome::Busy(holder) => {
                    if holder.lease_live(self.now()) {
                        return Err(EngineError::UpdateInProgress);
                    }
                    self.reap(&holder).await?;
                }
            }
        }
        Err(EngineError::UpdateInProgress)
    }
}
