//! The state a running update reports, in the CLI's four ways: whole checkpoints, verbatim
//! checkpoints, delta checkpoints and journal entries. Each write is stored before it is
//! acknowledged; deltas and journal entries are also applied to the update's in-memory state
//! as they arrive (see `live`), so finishing an update or reading its state replays nothing.

use std::sync::Arc;

use crate::engine::Engine;
use crate::engine::blocking::{run_blocking, run_sized};
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::state::delta;
use crate::engine::state::deployment::{
    EMPTY_DEPLOYMENT, blob_of, blob_streamed, count_resources, gunzip_stored, gunzip_stored_sized,
    gzip, untyped_from_full_checkpoint, untyped_from_verbatim,
};
use crate::engine::state::journal::{Base, Entry, Replayer, encode_entries, parse_entries};
use crate::engine::state::lease::Lease;
use crate::engine::state::live::{Live, LiveText};
use crate::store::{
    BuiltFrom, CheckpointWrite, DeltaWrite, FinalState, JournalBatch, StateBlob, StoreError,
    UpdateRow,
};
use crate::telemetry::StateMode;

/// Fold deltas into a new full checkpoint after this many, so that rebuilding an update's
/// text after a restart applies a bounded number of them.
const COMPACT_AFTER_DELTAS: usize = 100;

fn checkpoint_err(e: StoreError) -> EngineError {
    match e {
        StoreError::Conflict(msg) => EngineError::Conflict(msg),
        other => other.into(),
    }
}

/// The manifest version of a state the server builds: the CLI version that ran the update
/// (as the CLI itself would write), else ours.
pub(crate) fn engine_version(update: &UpdateRow) -> String {
    serde_json::from_str::<std::collections::BTreeMap<String, String>>(&update.environment)
        .ok()
        .and_then(|env| env.get("pulumi.version").cloned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("v{}", env!("CARGO_PKG_VERSION")))
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "0001-01-01T00:00:00Z".into())
}

impl Engine {
    /// The update row for a live slot, loaded once.
    async fn live_update(
        &self,
        stack_id: i64,
        update_id: &str,
        live: &mut Live,
    ) -> EngineResult<UpdateRow> {
        if let Some(u) = &live.update {
            return Ok(u.clone());
        }
        let u = self
            .store
            .get_update(update_id)
            .await?
            .filter(|u| u.stack_id == stack_id)
            .ok_or_else(|| EngineError::NotFound(format!("update '{update_id}' not found")))?;
        live.update = Some(u.clone());
        Ok(u)
    }

    /// The deployment text an update started from.
    async fn base_text(&self, update: &UpdateRow) -> EngineResult<Vec<u8>> {
        match update.base_version {
            None => Ok(EMPTY_DEPLOYMENT.to_vec()),
            Some(v) => {
                let blob = self
                    .store
                    .get_state(update.stack_id, Some(v))
                    .await?
                    .ok_or_else(|| {
                        EngineError::Internal(format!(
                            "the base version {v} of update {} is missing",
                            update.id
                        ))
                    })?;
                run_blocking(move || gunzip_stored_sized(&blob.gz, blob.size)).await
            }
        }
    }

    /// Rebuilds a journal replayer from the base and every stored batch.
    pub(crate) async fn replay_stored_journal(
        &self,
        update: &UpdateRow,
    ) -> EngineResult<(Replayer, i64)> {
        let base = self.base_text(update).await?;
        let batches = self.store.list_journal_batches(&update.id).await?;
        let journal_version = update.journal_version;
        run_blocking(move || {
            let mut r = Replayer::with_version(Base::from_untyped(base)?, journal_version);
            let mut last = 0;
            for b in batches {
                let json = gunzip_stored(&b.gz)?;
                for e in parse_entries(&json)? {
                    r.add(e)?;
                }
                last = b.ordinal;
            }
            Ok((r, last))
        })
        .await
    }

    async fn ensure_replayer(&self, update: &UpdateRow, live: &mut Live) -> EngineResult<()> {
        if live.replayer.is_none() {
            let (r, batches) = self.replay_stored_journal(update).await?;
            if batches > 0 {
                tracing::info!(update = %update.id, batches, "rebuilt a journal from the store");
            }
            live.replayer = Some(Box::new(r));
            live.batches = batches;
        }
        Ok(())
    }

    /// Rebuilds an update's checkpoint text from its stored checkpoint and deltas.
    async fn load_text(&self, update_id: &str) -> EngineResult<Option<LiveText>> {
        let Some(ws) = self.store.get_working_state(update_id).await? else {
            return Ok(None);
        };
        let deltas = self.store.list_deltas(update_id).await?;
        run_blocking(move || {
            let mut bytes = gunzip_stored(&ws.blob.gz)?;
            let mut sha = ws.blob.sha256.clone();
            let mut sequence = ws.sequence;
            let n = deltas.len();
            for d in deltas {
                let edits_json = gunzip_stored(&d.gz)?;
                let text = std::str::from_utf8(&edits_json)
                    .map_err(|e| EngineError::Internal(format!("stored delta: {e}")))?;
                let edits = delta::parse_edits(Some(text))?;
                delta::apply_verified_in_place(&mut bytes, &edits, &d.hash)
                    .map_err(|e| EngineError::Internal(format!("stored delta: {e}")))?;
                sha = d.hash;
                sequence = d.sequence;
            }
            Ok(Some(LiveText {
                bytes,
                sha,
                sequence,
                deltas: n,
            }))
        })
        .await
    }

    /// `PATCH …/checkpoint`: the whole deployment.
    pub async fn save_full_checkpoint(&self, lease: &Lease, body: Vec<u8>) -> EngineResult<()> {
        let update_id = lease.update_id();
        let lease = lease.check.clone();
        crate::telemetry::metrics().state_write(StateMode::Checkpoint, body.len());
        let blob = run_blocking(move || {
            let json = untyped_from_full_checkpoint(&body)?;
            Ok(blob_of(&json, -1))
        })
        .await?;
        let slot = self.live.slot(update_id);
        let mut live = slot.lock().await;
        self.store
            .save_checkpoint(
                lease,
                CheckpointWrite {
                    blob,
                    sequence: 0,
                    replaces: None,
                },
            )
            .await
            .map_err(checkpoint_err)?;
        live.text = None;
        Ok(())
    }

    /// `PATCH …/checkpointverbatim`: the deployment text exactly as the CLI serialised it,
    /// kept as the baseline later deltas edit.
    pub async fn save_verbatim_checkpoint(&self, lease: &Lease, body: Vec<u8>) -> EngineResult<()> {
        let update_id = lease.update_id();
        let lease = lease.check.clone();
        crate::telemetry::metrics().state_write(StateMode::Verbatim, body.len());
        let (json, blob, sequence) = run_blocking(move || {
            let (json, seq) = untyped_from_verbatim(&body)?;
            let blob = blob_of(&json, -1);
            Ok((json, blob, seq))
        })
        .await?;
        let slot = self.live.slot(update_id);
        let mut live = slot.lock().await;
        let sha = blob.sha256.clone();
        self.store
            .save_checkpoint(
                lease,
                CheckpointWrite {
                    blob,
                    sequence,
                    replaces: None,
                },
            )
            .await
            .map_err(checkpoint_err)?;
        live.text = Some(LiveText {
            bytes: json,
            sha,
            sequence,
            deltas: 0,
        });
        live.touch();
        Ok(())
    }

    /// Whether the in-memory view of an update still matches what the store holds. Another
    /// replica may have written since (the CLI's retries can land anywhere): a view that
    /// does not match is dropped and rebuilt from the store.
    async fn live_is_current(&self, update_id: &str, live: &Live) -> EngineResult<bool> {
        if live.replayer.is_none() && live.text.is_none() {
            return Ok(true);
        }
        let p = self.store.progress(update_id).await?;
        let journal = live.replayer.is_none() || p.journal_batches == live.batches;
        let text = live
            .text
            .as_ref()
            .is_none_or(|t| p.latest_sequence == Some(t.sequence));
        Ok(journal && text)
    }

    /// `PATCH …/checkpointdelta`: edits to the last checkpoint text, checked against the hash
    /// the CLI sent. A mismatch is refused with 400 and nothing stored: the CLI then sends
    /// the whole text verbatim with the same sequence number.
    pub async fn save_delta_checkpoint(&self, lease: &Lease, body: Vec<u8>) -> EngineResult<()> {
        let update_id = lease.update_id();
        let lease = lease.check.clone();
        crate::telemetry::metrics().state_write(StateMode::Delta, body.len());
        let slot = self.live.slot(update_id);
        let mut live = slot.lock().await;
        let body = Arc::new(body);
        // A second attempt only when the first found the in-memory text stale.
        for attempt in 0..2 {
            if live.text.is_none() {
                self.store.check_lease(lease.clone()).await?;
                live.text = self.load_text(update_id).await?;
            }
            let Some(text) = live.text.take() else {
                return Err(EngineError::Conflict(
                    "a delta needs a verbatim checkpoint of this update to apply to; send one"
                        .into(),
                ));
            };
            let base = text.sequence;
            let size = text.bytes.len() + body.len();
            let delta = body.clone();
            let (mut text, outcome) = run_sized(size, move || {
                let mut text = text;
                let outcome = apply_delta(&mut text, &delta);
                Ok((text, outcome))
            })
            .await?;
            let write = match outcome {
                // Refused deltas leave the text as it was.
                Err(e) => {
                    live.text = Some(text);
                    if attempt == 0 && !self.live_is_current(update_id, &live).await? {
                        live.text = None;
                        continue;
                    }
                    return Err(e);
                }
                Ok(None) => {
                    // A retry of a delta that already landed.
                    live.text = Some(text);
                    return self.store.check_lease(lease).await.map_err(Into::into);
                }
                Ok(Some(write)) => write,
            };
            let compact = text.deltas >= COMPACT_AFTER_DELTAS;
            let stored = if compact {
                let (t, blob) = run_blocking(move || {
                    let blob = blob_of(&text.bytes, -1);
                    Ok((text, blob))
                })
                .await?;
                text = t;
                self.store
                    .save_checkpoint(
                        lease.clone(),
                        CheckpointWrite {
                            blob,
                            sequence: text.sequence,
                            replaces: Some(base),
                        },
                    )
                    .await
            } else {
                self.store.append_delta(lease.clone(), write).await
            };
            match stored {
                Ok(()) => {
                    if compact {
                        text.deltas = 0;
                    }
                    live.text = Some(text);
                    live.touch();
                    return Ok(());
                }
                // Another replica wrote first: rebuild the text from the store and apply the
                // delta again (a delta that landed there is then recognised as a repeat).
                Err(StoreError::Stale(_)) if attempt == 0 => live.text = None,
                Err(e) => {
                    // The text already holds this delta, which is not stored: rebuild it from
                    // the store next time.
                    live.text = None;
                    return Err(checkpoint_err(e));
                }
            }
        }
        Err(EngineError::Unavailable(
            "the update's checkpoints kept moving; retry".into(),
        ))
    }

    /// `PATCH …/journalentries`: stores a batch and applies it to the update's replayer.
    /// A retried batch (every sequence ID already applied) is acknowledged without change.
    pub async fn journal_entries(
        &self,
        lease: &Lease,
        json: Vec<u8>,
        gz: Option<Vec<u8>>,
    ) -> EngineResult<()> {
        let update_id = lease.update_id();
        let lease = lease.check.clone();
        let slot = self.live.slot(update_id);
        let mut live = slot.lock().await;
        let update = self
            .live_update(lease.stack_id, update_id, &mut live)
            .await?;
        if update.journal_version < 1 {
            return Err(EngineError::Conflict(
                "this update was not started with journaling; send checkpoints".into(),
            ));
        }
        let json = Arc::new(json);
        let mut gz = gz;
        // A second attempt only when the first found the in-memory journal stale.
        for attempt in 0..2 {
            if live.replayer.is_none() {
                // Do not rebuild anything for a caller without a valid lease.
                self.store.check_lease(lease.clone()).await?;
                self.ensure_replayer(&update, &mut live).await?;
            }
            let Some(replayer) = live.replayer.take() else {
                return Err(EngineError::Internal("journal replayer missing".into()));
            };
            let (body, body_gz) = (json.clone(), gz.take());
            let applied =
                run_sized(json.len(), move || apply_batch(replayer, &body, body_gz)).await;
            let (replayer, batch) = match applied {
                Ok(x) => x,
                Err(e) => {
                    // The replayer may hold part of the batch: rebuild it from the store. If
                    // it was behind the store, the batch may be fine after all.
                    let batches = live.batches;
                    live.clear();
                    if attempt == 0
                        && self.store.progress(update_id).await?.journal_batches != batches
                    {
                        continue;
                    }
                    return Err(e);
                }
            };
            let Some(mut batch) = batch else {
                live.replayer = Some(replayer);
                return self.store.check_lease(lease).await.map_err(Into::into);
            };
            batch.ordinal = live.batches + 1;
            let entries = batch.count;
            match self.store.append_journal(lease.clone(), batch).await {
                Ok(ordinal) => {
                    let m = crate::telemetry::metrics();
                    m.state_write(StateMode::Journal, json.len());
                    m.journal_entries.inc_by(entries.max(0) as u64);
                    live.batches = ordinal;
                    live.replayer = Some(replayer);
                    live.touch();
                    return Ok(());
                }
                // Another replica appended first: rebuild and apply again (entries that
                // landed there are then recognised as repeats).
                Err(StoreError::Stale(_)) if attempt == 0 => live.clear(),
                Err(e) => {
                    live.clear();
                    return Err(e.into());
                }
            }
        }
        Err(EngineError::Unavailable(
            "the update's journal kept moving; retry".into(),
        ))
    }

    /// The state an update has reached, for finishing it or reading it while it runs, and
    /// the stored progress it reflects (so that finishing refuses it if the store moved on).
    /// An in-memory view that no longer matches the store is rebuilt first.
    pub(crate) async fn materialize(
        &self,
        update: &UpdateRow,
        live: &mut Live,
    ) -> EngineResult<(FinalState, Option<BuiltFrom>)> {
        if update.dry_run {
            return Ok((FinalState::Unchanged, None));
        }
        if !self.live_is_current(&update.id, live).await? {
            live.clear();
        }
        if update.journal_version >= 1 {
            self.ensure_replayer(update, live).await?;
            let Some(replayer) = live.replayer.take() else {
                return Err(EngineError::Internal("journal replayer missing".into()));
            };
            if replayer.applied() == 0 {
                // No entries arrived: whatever checkpoint the client sent instead decides.
                live.replayer = Some(replayer);
                return self.materialize_checkpoints(update, live).await;
            }
            let version = engine_version(update);
            let (replayer, blob) = run_blocking(move || {
                let generated = replayer.generate()?;
                let time = now_rfc3339();
                let blob = blob_streamed(generated.resource_count(), |w| {
                    generated.write_untyped(w, &version, &time)
                })?;
                Ok((replayer, blob))
            })
            .await?;
            live.replayer = Some(replayer);
            return Ok((
                FinalState::Blob(blob),
                Some(BuiltFrom::Journal(live.batches)),
            ));
        }
        self.materialize_checkpoints(update, live).await
    }

    /// [`Engine::materialize`] for updates that sent checkpoints.
    async fn materialize_checkpoints(
        &self,
        update: &UpdateRow,
        live: &mut Live,
    ) -> EngineResult<(FinalState, Option<BuiltFrom>)> {
        if live.text.is_none() && !self.store.list_deltas(&update.id).await?.is_empty() {
            live.text = self.load_text(&update.id).await?;
        }
        if let Some(text) = live.text.as_ref().filter(|t| t.deltas > 0) {
            let (bytes, sequence) = (text.bytes.clone(), text.sequence);
            let blob = run_blocking(move || {
                let count = count_resources(&bytes)?;
                Ok(blob_of(&bytes, count))
            })
            .await?;
            return Ok((FinalState::Blob(blob), Some(BuiltFrom::Text(sequence))));
        }
        let resource_count = match self.store.get_working_state(&update.id).await? {
            Some(ws) => Some(
                run_blocking(move || {
                    let json = gunzip_stored(&ws.blob.gz)?;
                    count_resources(&json)
                })
                .await?,
            ),
            None => None,
        };
        // Promoted by the store from what it holds: nothing in memory to go stale.
        Ok((FinalState::Working { resource_count }, None))
    }

    /// The live state of a running update, when it has moved past the stack's stored state.
    /// An update's slot that is not in memory (after a restart, or on another replica) is
    /// rebuilt from the store here, so a read never misses what was acknowledged.
    pub(crate) async fn live_state(&self, update: &UpdateRow) -> EngineResult<Option<StateBlob>> {
        let slot = self.live.slot(&update.id);
        let mut live = slot.lock().await;
        match self.materialize(update, &mut live).await?.0 {
            FinalState::Blob(b) => Ok(Some(b)),
            FinalState::Working { .. } => Ok(self
                .store
                .get_working_state(&update.id)
                .await?
                .map(|w| w.blob)),
            FinalState::Unchanged => Ok(None),
        }
    }
}

/// Applies one delta request to `text` in place (left unchanged on any error).
/// `Ok(None)`: a repeat of the last applied delta.
fn apply_delta(text: &mut LiveText, body: &[u8]) -> EngineResult<Option<DeltaWrite>> {
    let req = delta::parse_request(body)?;
    if req.sequence_number < text.sequence {
        return Err(EngineError::Conflict(format!(
            "stale checkpoint: sequence {} is older than the stored {}",
            req.sequence_number, text.sequence
        )));
    }
    if req.sequence_number == text.sequence && req.checkpoint_hash == text.sha {
        return Ok(None);
    }
    let edits_text = req.edits.map(|r| r.get());
    let edits = delta::parse_edits(edits_text)?;
    delta::apply_verified_in_place(&mut text.bytes, &edits, &req.checkpoint_hash)?;
    let write = DeltaWrite {
        base_sequence: text.sequence,
        sequence: req.sequence_number,
        hash: req.checkpoint_hash.clone(),
        gz: gzip(edits_text.unwrap_or("[]").as_bytes()),
    };
    text.sha = req.checkpoint_hash;
    text.sequence = req.sequence_number;
    text.deltas += 1;
    Ok(Some(write))
}

/// Applies a journal batch: skips entries already applied, and returns the batch to store
/// (the body as received when every entry is new).
fn apply_batch(
    mut replayer: Box<Replayer>,
    json: &[u8],
    gz: Option<Vec<u8>>,
) -> EngineResult<(Box<Replayer>, Option<JournalBatch>)> {
    let entries = parse_entries(json)?;
    let total = entries.len();
    let fresh: Vec<Entry> = entries
        .into_iter()
        .filter(|e| !replayer.has_seen(e.sequence_id))
        .collect();
    if fresh.is_empty() {
        return Ok((replayer, None));
    }
    let first = fresh.iter().map(|e| e.sequence_id).min().unwrap_or(0);
    let last = fresh.iter().map(|e| e.sequence_id).max().unwrap_or(0);
    let count = fresh.len() as i64;
    let gz = if fresh.len() == total {
        gz.unwrap_or_else(|| gzip(json))
    } else {
        gzip(&encode_entries(&fresh.iter().collect::<Vec<_>>()))
    };
    for e in fresh {
        replayer.add(e)?;
    }
    Ok((
        replayer,
        Some(JournalBatch {
            ordinal: 0,
            first_sequence: first,
            last_sequence: last,
            count,
            gz,
        }),
    ))
}
