//! The update lifecycle: create → start (lease) → checkpoints / events / renewals → complete,
//! or cancel, or abandonment (an expired lease, reaped by the next start).
//!
//! Non-preview updates take the stack's lock: the store allows one running non-preview update
//! per stack. Previews get a lease token too (the CLI requires one) but neither block nor wait.
//! A lease that expires frees the stack: the next start or import finishes the abandoned update
//! as failed, keeping the last state it reported, and proceeds.

use crate::engine::crypto::{self, sha256};
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::integration::audit::AuditKind;
use crate::engine::state::journal::LATEST_JOURNAL_VERSION;
use crate::engine::state::lease::{Lease, check_update_id};
use crate::engine::{Engine, Identity, names};
use crate::store::{
    FinalState, FinishGuard, FinishOutcome, FinishUpdate, LeaseDenied, NewUpdate, Notes, StackKey,
    StartOutcome, StartUpdate, StoreError, Tags, UpdateRow, UpdateStatus, WindowOutputs,
};

/// How the audit log names an update: previews by that name, the others by their kind.
fn update_word(kind: &str, dry_run: bool) -> &str {
    if dry_run { "preview" } else { kind }
}

/// The kinds of update the CLI creates through `POST /api/stacks/{o}/{p}/{s}/{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    Update,
    Preview,
    Refresh,
    Destroy,
}

impl UpdateKind {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "update" => UpdateKind::Update,
            "preview" => UpdateKind::Preview,
            "refresh" => UpdateKind::Refresh,
            "destroy" => UpdateKind::Destroy,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UpdateKind::Update => "update",
            UpdateKind::Preview => "preview",
            UpdateKind::Refresh => "refresh",
            UpdateKind::Destroy => "destroy",
        }
    }
}

pub struct CreateUpdate {
    pub kind: UpdateKind,
    /// The coherence window the update runs in (CLI `--coherence-window`).
    pub coherence_window: Option<String>,
    pub dry_run: bool,
    pub message: String,
    /// JSON object text.
    pub environment: String,
    /// JSON object text.
    pub config: String,
}

#[derive(Debug, Default)]
pub struct StartUpdateOptions {
    pub tags: Option<Tags>,
    pub journal_version: Option<i64>,
}

#[derive(Debug)]
pub struct Started {
    pub version: i64,
    /// The stack version the update starts from (`None`: no state yet).
    pub base_version: Option<i64>,
    pub token: String,
    pub token_expiration: i64,
    /// 1 or 2 when the CLI is to send journal entries (at that version), 0 for checkpoints.
    pub journal_version: i64,
}

/// What `begin-update` answers.
pub struct Begun {
    pub update_id: String,
    pub started: Started,
    /// The deployment the update starts from, as `export` would send it.
    pub base: crate::engine::Export,
    pub tags: Tags,
}

/// Root-stack outputs a preview in a coherence window reports at `complete` (JSON texts).
#[derive(Debug, Default)]
pub struct RecordedOutputs {
    pub outputs: Option<String>,
    pub secrets_providers: Option<String>,
}

pub struct UpdateStatusView {
    pub status: &'static str,
    /// Present while the update runs (pollers keep polling); absent once it has finished.
    pub continuation: Option<String>,
}

/// The journal version to answer a CLI that asked for `requested`, offering at most `max`
/// (0: checkpoints).
pub fn negotiate_journal(requested: Option<i64>, max: i64) -> i64 {
    match requested {
        Some(v) if v >= 1 => v.min(max.clamp(0, LATEST_JOURNAL_VERSION)),
        _ => 0,
    }
}

/// A random update id in UUID layout.
pub(crate) fn new_update_id() -> String {
    let b = crypto::random_bytes::<16>();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Engine {
    pub(crate) async fn update_of(
        &self,
        stack_id: i64,
        update_id: &str,
    ) -> EngineResult<UpdateRow> {
        check_update_id(update_id)?;
        self.store
            .get_update(update_id)
            .await?
            .filter(|u| u.stack_id == stack_id)
            .ok_or_else(|| EngineError::NotFound(format!("update '{update_id}' not found")))
    }

    pub async fn create_update(
        &self,
        caller: &Identity,
        key: &StackKey,
        req: CreateUpdate,
    ) -> EngineResult<String> {
        let stack = self.stack(caller, key).await?;
        let id = new_update_id();
        let row = self.new_update_row(caller, stack.id, &id, req)?;
        self.store.create_update(row).await?;
        Ok(id)
    }

    fn new_update_row(
        &self,
        caller: &Identity,
        stack_id: i64,
        id: &str,
        req: CreateUpdate,
    ) -> EngineResult<NewUpdate> {
        if let Some(w) = &req.coherence_window {
            names::check_window(w)?;
        }
        Ok(NewUpdate {
            id: id.to_owned(),
            stack_id,
            kind: req.kind.as_str().to_owned(),
            dry_run: req.dry_run || req.kind == UpdateKind::Preview,
            created_at: self.now(),
            author: caller.user.clone(),
            message: req.message,
            environment: req.environment,
            config: req.config,
            coherence_window: req.coherence_window,
        })
    }

    /// `POST …/begin-update`: creates and starts an update in one store transaction, and
    /// answers with what the CLI would otherwise fetch in three more calls: the deployment the
    /// update starts from and the stack's tags. Nothing is created when the stack is busy.
    pub async fn begin_update(
        &self,
        caller: &Identity,
        key: &StackKey,
        create: CreateUpdate,
        opts: StartUpdateOptions,
    ) -> EngineResult<Begun> {
        let stack = self.stack(caller, key).await?;
        let id = new_update_id();
        let row = self.new_update_row(caller, stack.id, &id, create)?;
        let notes = self.note(
            caller,
            Some(&key.org),
            AuditKind::UpdateStarted,
            format!(
                "{} {id} started on stack {key}",
                update_word(&row.kind, row.dry_run)
            ),
        );
        let started = self
            .start_with(stack.id, &id, opts, Some(row), notes)
            .await?;
        let base = self
            .export_version(stack.id, key, started.base_version)
            .await?;
        let stack = self.stack(caller, key).await?;
        Ok(Begun {
            update_id: id,
            started,
            base,
            tags: stack.tags,
        })
    }

    pub async fn start_update(
        &self,
        caller: &Identity,
        key: &StackKey,
        update_id: &str,
        opts: StartUpdateOptions,
    ) -> EngineResult<Started> {
        let stack = self.stack(caller, key).await?;
        check_update_id(update_id)?;
        let update = self.update_of(stack.id, update_id).await?;
        let notes = self.note(
            caller,
            Some(&key.org),
            AuditKind::UpdateStarted,
            format!(
                "{} {update_id} started on stack {key}",
                update_word(&update.kind, update.dry_run)
            ),
        );
        self.start_with(stack.id, update_id, opts, None, notes)
            .await
    }

    /// Starts `update_id` (creating it first, in the same transaction, when `create` is
    /// given). An expired holder of the stack is reaped and the start tried once more.
    async fn start_with(
        &self,
        stack_id: i64,
        update_id: &str,
        opts: StartUpdateOptions,
        create: Option<NewUpdate>,
        notes: Notes,
    ) -> EngineResult<Started> {
        if let Some(tags) = &opts.tags {
            names::check_tags(tags)?;
        }
        let token = crypto::new_token("lease-");
        let token_hash = sha256(token.as_bytes()).to_vec();
        // Journal mode when the CLI asks for it, at the highest version both sides know: a
        // CLI that asks for 1 accepts only 1; one that asks for 2 (v3.277+) accepts 1 or 2.
        // Previews get it too: the CLI decides from it whether a program may migrate state.
        let journal_version = negotiate_journal(opts.journal_version, self.cfg.max_journal_version);
        // One retry: the first attempt may find an abandoned update to reap.
        for _ in 0..2 {
            let now = self.now();
            let expires = now + self.cfg.lease_duration;
            let start = StartUpdate {
                update_id: update_id.to_owned(),
                stack_id,
                now,
                lease_hash: token_hash.clone(),
                lease_expires: expires,
                tags: opts.tags.clone(),
                journal_version,
                notes: notes.clone(),
            };
            let outcome = match &create {
                Some(row) => self.store.begin_update(row.clone(), start).await,
                None => self.store.start_update(start).await,
            };
            match outcome {
                Ok(StartOutcome::Started(row)) => {
                    tracing::debug!(
                        update = %update_id,
                        version = row.version,
                        journal_version,
                        begin = create.is_some(),
                        "update started"
                    );
                    return Ok(Started {
                        version: row.version,
                        base_version: row.base_version,
                        token,
                        token_expiration: expires,
                        journal_version,
                    });
                }
                Ok(StartOutcome::Busy(holder)) => {
                    if holder.lease_live(now) {
                        return Err(EngineError::UpdateInProgress);
                    }
                    self.reap(&holder).await?;
                }
                Ok(StartOutcome::AlreadyStarted(row)) => {
                    return Err(EngineError::Conflict(format!(
                        "update '{update_id}' has already been started ({})",
                        row.status.as_str()
                    )));
                }
                Err(StoreError::Lease(_)) => {
                    return Err(EngineError::NotFound(format!(
                        "update '{update_id}' not found"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::UpdateInProgress)
    }

    /// Finishes an update with the state it reached (its in-memory state, or what the store
    /// holds), and forgets that in-memory state.
    async fn finish_with_state(
        &self,
        update: &UpdateRow,
        guard: FinishGuard,
        status: UpdateStatus,
        window_outputs: Option<WindowOutputs>,
        notes: Notes,
    ) -> EngineResult<FinishOutcome> {
        let slot = self.live.slot(&update.id);
        let mut live = slot.lock().await;
        let mut attempt = 0;
        let outcome = loop {
            let (final_state, built_from) = self.materialize(update, &mut live).await?;
            if matches!(final_state, FinalState::Blob(_)) {
                // The final state is built and compressed: let the in-memory view go before
                // the store takes its copies of the blob, so that a state-sized update never
                // holds both. Should the finish fail, the next attempt rebuilds it from the
                // store, where every acknowledged batch is.
                live.clear();
            }
            let finished = self
                .store
                .finish_update(FinishUpdate {
                    update_id: update.id.clone(),
                    stack_id: update.stack_id,
                    guard: guard.clone(),
                    status,
                    ended_at: self.now(),
                    resource_changes: None,
                    final_state,
                    keep_versions: self.cfg.max_state_versions,
                    window_outputs: window_outputs.clone(),
                    built_from,
                    notes: notes.clone(),
                })
                .await;
            match finished {
                // Another replica wrote between our read and our finish: build again.
                Err(StoreError::Stale(_)) if attempt == 0 => {
                    attempt += 1;
                    live.clear();
                }
                other => break other?,
            }
        };
        live.clear();
        drop(live);
        self.live.remove(&update.id);
        if !update.dry_run {
            tokio::task::spawn_blocking(crate::engine::memory::trim);
        }
        Ok(outcome)
    }

    /// Finishes an update whose lease has expired, as failed, keeping its last state.
    pub(crate) async fn reap(&self, update: &UpdateRow) -> EngineResult<()> {
        tracing::info!(update = %update.id, "finishing an update whose lease expired");
        self.finish_with_state(
            update,
            FinishGuard::ExpiredAt(self.now()),
            UpdateStatus::Failed,
            None,
            Notes::none(),
        )
        .await?;
        Ok(())
    }

    /// Extends a lease. The token stays the same, so a retried renewal whose answer was lost
    /// cannot strand the CLI with a token we no longer accept.
    pub async fn renew_lease(&self, lease: &Lease, duration: i64) -> EngineResult<i64> {
        let lease = lease.check.clone();
        let secs = if duration <= 0 {
            self.cfg.lease_duration
        } else {
            duration.min(self.cfg.lease_duration)
        };
        let expires = lease.now + secs;
        self.store.renew_lease(lease, expires).await?;
        Ok(expires)
    }

    /// `recorded`: outputs a preview in a coherence window reports (kept only for updates
    /// that run in a window).
    pub async fn complete_update(
        &self,
        lease: &Lease,
        status: &str,
        recorded: Option<RecordedOutputs>,
    ) -> EngineResult<()> {
        let status = match status {
            "succeeded" => UpdateStatus::Succeeded,
            "failed" => UpdateStatus::Failed,
            "cancelled" => UpdateStatus::Cancelled,
            other => {
                return Err(EngineError::Invalid(format!(
                    "unknown update status {other:?}: expected \"succeeded\" or \"failed\""
                )));
            }
        };
        let (key, source_ip) = (lease.key.clone(), lease.source_ip);
        let lease = lease.check.clone();
        let update = self.update_of(lease.stack_id, &lease.update_id).await?;
        if update.status.is_finished() {
            // A retried complete: answer from the store without rebuilding anything.
            return self.store.check_lease(lease).await.or_else(|e| match e {
                StoreError::Lease(LeaseDenied::Finished(s)) if s == status => Ok(()),
                other => Err(other.into()),
            });
        }
        // Nothing is rebuilt for a caller without a valid lease.
        self.store.check_lease(lease.clone()).await?;
        let kind = match status {
            UpdateStatus::Succeeded => AuditKind::UpdateSucceeded,
            UpdateStatus::Cancelled => AuditKind::UpdateCancelled,
            _ => AuditKind::UpdateFailed,
        };
        // The update's author is who the lease acts for.
        let author = Identity {
            source_ip,
            ..Identity::user(&update.author)
        };
        let notes = self
            .note(
                &author,
                Some(&key.org),
                kind,
                format!(
                    "{} {} on stack {key} {}",
                    update_word(&update.kind, update.dry_run),
                    update.id,
                    status.as_str()
                ),
            )
            .with_hook(self.update_hook_event(
                &update.author,
                &key,
                update.stack_id,
                &update.kind,
                update.dry_run,
                &update.id,
                update.version,
                status == UpdateStatus::Succeeded,
                update.resource_changes.as_deref(),
            ));
        let outcome = self
            .finish_with_state(
                &update,
                FinishGuard::Lease(lease),
                status,
                recorded.map(|r| WindowOutputs {
                    outputs: r.outputs,
                    secrets_providers: r.secrets_providers,
                }),
                notes,
            )
            .await?;
        match outcome {
            FinishOutcome::Finished(_) => Ok(()),
            // A retried complete: the first one landed.
            FinishOutcome::AlreadyFinished(row) if row.status == status => Ok(()),
            FinishOutcome::AlreadyFinished(row) => Err(EngineError::Conflict(format!(
                "the update has already finished ({})",
                row.status.as_str()
            ))),
        }
    }

    /// `pulumi cancel`: ends a running update now. Its lease token stops working; the state it
    /// reached is kept.
    pub async fn cancel_update(
        &self,
        caller: &Identity,
        key: &StackKey,
        update_id: &str,
    ) -> EngineResult<()> {
        let stack = self.stack(caller, key).await?;
        let update = self.update_of(stack.id, update_id).await?;
        // The CLI retries cancel; a repeat of one that landed is a success.
        if update.status == UpdateStatus::Cancelled {
            return Ok(());
        }
        if update.status.is_finished() {
            return Err(EngineError::Conflict(format!(
                "the update has already finished ({})",
                update.status.as_str()
            )));
        }
        let notes = self
            .note(
                caller,
                Some(&key.org),
                AuditKind::UpdateCancelled,
                format!(
                    "{} {update_id} on stack {key} cancelled",
                    update_word(&update.kind, update.dry_run)
                ),
            )
            .with_hook(self.update_hook_event(
                &update.author,
                key,
                update.stack_id,
                &update.kind,
                update.dry_run,
                &update.id,
                update.version,
                false,
                update.resource_changes.as_deref(),
            ));
        let outcome = self
            .finish_with_state(
                &update,
                FinishGuard::Running,
                UpdateStatus::Cancelled,
                None,
                notes,
            )
            .await?;
        match outcome {
            FinishOutcome::Finished(_) => Ok(()),
            FinishOutcome::AlreadyFinished(row) if row.status == UpdateStatus::Cancelled => Ok(()),
            FinishOutcome::AlreadyFinished(row) => Err(EngineError::Conflict(format!(
                "the update has already finished ({})",
                row.status.as_str()
            ))),
        }
    }

    pub async fn update_status(
        &self,
        caller: &Identity,
        key: &StackKey,
        update_id: &str,
    ) -> EngineResult<UpdateStatusView> {
        let stack = self.stack(caller, key).await?;
        let update = self.update_of(stack.id, update_id).await?;
        let status = match update.status {
            UpdateStatus::NotStarted => "not started",
            UpdateStatus::Running => "running",
            UpdateStatus::Succeeded => "succeeded",
            UpdateStatus::Failed | UpdateStatus::Cancelled => "failed",
        };
        let continuation = (!update.status.is_finished()).then(|| "0".to_owned());
        Ok(UpdateStatusView {
            status,
            continuation,
        })
    }
}
