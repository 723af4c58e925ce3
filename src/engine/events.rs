//! Engine events: the CLI's log of an update, sent in batches by three concurrent workers (so
//! batches may arrive out of order, and retries may repeat one). Each batch is stored as it
//! arrived (gzip); reads merge them by sequence number and drop repeats.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::engine::blocking::run_sized;
use crate::engine::deployment::{gunzip_stored, gzip};
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::{Caller, Engine, LeaseToken};
use crate::store::{EventBatch, StackKey};

#[derive(Deserialize)]
struct SummaryHead<'a> {
    #[serde(rename = "resourceChanges", borrow, default)]
    resource_changes: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct EventHead<'a> {
    sequence: i64,
    #[serde(rename = "summaryEvent", borrow, default)]
    summary: Option<SummaryHead<'a>>,
}

#[derive(Deserialize)]
struct BatchHead<'a> {
    #[serde(borrow)]
    events: Vec<EventHead<'a>>,
}

#[derive(Deserialize)]
struct RawBatch<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct SequenceOnly {
    sequence: i64,
}

/// Events of one update in sequence order, as JSON texts.
pub struct EventsPage {
    pub events: Vec<Box<RawValue>>,
}

/// Reads what the engine needs from a batch: sequence range, count and the resource changes
/// of a summary event.
fn inspect_batch(json: &[u8]) -> EngineResult<(i64, i64, i64, Option<String>)> {
    let batch: BatchHead<'_> = serde_json::from_slice(json)
        .map_err(|e| EngineError::Invalid(format!("the event batch is not valid: {e}")))?;
    if batch.events.is_empty() {
        return Ok((0, -1, 0, None));
    }
    let first = batch.events.iter().map(|e| e.sequence).min().unwrap_or(0);
    let last = batch.events.iter().map(|e| e.sequence).max().unwrap_or(0);
    let changes = batch
        .events
        .iter()
        .rev()
        .find_map(|e| e.summary.as_ref()?.resource_changes)
        .map(|r| r.get().to_owned());
    Ok((first, last, batch.events.len() as i64, changes))
}

impl Engine {
    /// `POST …/events/batch` (and the single-event form, wrapped as a batch of one by the
    /// caller). `gz` is the body as received when the CLI gzipped it, stored without
    /// recompressing.
    pub async fn post_events(
        &self,
        key: &StackKey,
        update_id: &str,
        token: &LeaseToken,
        json: Vec<u8>,
        gz: Option<Vec<u8>>,
    ) -> EngineResult<()> {
        let stack = self.stack_for_lease(key, update_id).await?;
        let batch = run_sized(json.len(), move || {
            let (first, last, count, changes) = inspect_batch(&json)?;
            Ok(EventBatch {
                first_sequence: first,
                last_sequence: last,
                count,
                gz: gz.unwrap_or_else(|| gzip(&json)),
                resource_changes: changes,
            })
        })
        .await?;
        if batch.count == 0 {
            return Ok(());
        }
        let lease = self.lease_check(&stack, update_id, token);
        self.store.append_events(lease, batch).await?;
        Ok(())
    }

    pub async fn get_events(
        &self,
        caller: &Caller,
        key: &StackKey,
        update_id: &str,
    ) -> EngineResult<EventsPage> {
        let stack = self.stack(caller, key).await?;
        let update = self.update_of(&stack, update_id).await?;
        let batches = self.store.list_event_batches(&update.id).await?;
        let size: usize = batches.iter().map(|b| b.gz.len()).sum();
        run_sized(size, move || {
            let mut all: Vec<(i64, Box<RawValue>)> = Vec::new();
            for b in &batches {
                let json = gunzip_stored(&b.gz)?;
                let batch: RawBatch<'_> = serde_json::from_slice(&json)
                    .map_err(|e| EngineError::Internal(format!("stored events: {e}")))?;
                for ev in batch.events {
                    let seq: SequenceOnly = serde_json::from_str(ev.get())
                        .map_err(|e| EngineError::Internal(format!("stored event: {e}")))?;
                    all.push((seq.sequence, ev.to_owned()));
                }
            }
            all.sort_by_key(|(s, _)| *s);
            all.dedup_by_key(|(s, _)| *s);
            Ok(EventsPage {
                events: all.into_iter().map(|(_, e)| e).collect(),
            })
        })
        .await
    }
}
