//! Engine events: the CLI's log of an update, sent in batches by three concurrent workers (so
//! batches may arrive out of order, and retries may repeat one). Each batch is stored as it
//! arrived (gzip); reads merge them by sequence number and drop repeats.
//!
//! Events are the bulkiest thing the CLI sends (each carries a resource's inputs and outputs)
//! and the server only stores them, so a gzip batch is not inflated into memory nor parsed:
//! one streaming pass checks the gzip, reads the first sequence number from the opening bytes
//! and looks for a summary event. Only a batch holding the summary (the last one of an update)
//! or one laid out differently from what the CLI writes is parsed whole.

use std::io::Read;

use flate2::read::GzDecoder;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::engine::blocking::run_sized;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::state::deployment::{gunzip_stored, gzip};
use crate::engine::state::lease::Lease;
use crate::engine::{Engine, Identity};
use crate::store::{EventBatch, StackKey};

#[derive(Deserialize)]
struct SummaryHead {
    #[serde(rename = "resourceChanges", default)]
    resource_changes: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct EventHead {
    sequence: i64,
    #[serde(rename = "summaryEvent", default)]
    summary: Option<SummaryHead>,
}

/// What the engine records of a batch, gathered while its events stream past: nothing but
/// the running minimum, maximum, count and the last summary is kept, whatever the batch's
/// size.
#[derive(Default)]
struct BatchStats {
    first: Option<i64>,
    last: Option<i64>,
    count: i64,
    changes: Option<String>,
}

impl<'de> Deserialize<'de> for BatchStats {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct Events<'a>(&'a mut BatchStats);
        impl<'de> serde::de::DeserializeSeed<'de> for Events<'_> {
            type Value = ();
            fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_seq(self)
            }
        }
        impl<'de> Visitor<'de> for Events<'_> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of events")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                while let Some(e) = seq.next_element::<EventHead>()? {
                    let st = &mut *self.0;
                    st.first = Some(st.first.map_or(e.sequence, |f| f.min(e.sequence)));
                    st.last = Some(st.last.map_or(e.sequence, |l| l.max(e.sequence)));
                    st.count += 1;
                    if let Some(c) = e.summary.and_then(|s| s.resource_changes) {
                        st.changes = Some(c.get().to_owned());
                    }
                }
                Ok(())
            }
        }
        struct Batch;
        impl<'de> Visitor<'de> for Batch {
            type Value = BatchStats;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object with events")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BatchStats, A::Error> {
                let mut stats = BatchStats::default();
                let mut seen = false;
                while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if k == "events" {
                        map.next_value_seed(Events(&mut stats))?;
                        seen = true;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                if !seen {
                    return Err(serde::de::Error::missing_field("events"));
                }
                Ok(stats)
            }
        }
        d.deserialize_map(Batch)
    }
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
    /// Where the next page starts; `None` once everything of a finished update was read.
    pub continuation: Option<String>,
}

/// A page of events holds about this many bytes (whole stored batches, so a little more).
pub const EVENT_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// ... and at most this many stored batches.
const EVENT_PAGE_BATCHES: i64 = 256;

fn stats_of(stats: BatchStats) -> (i64, i64, i64, Option<String>) {
    match (stats.first, stats.last) {
        (Some(f), Some(l)) => (f, l, stats.count, stats.changes),
        _ => (0, -1, 0, None),
    }
}

fn invalid_batch(e: serde_json::Error) -> EngineError {
    EngineError::Invalid(format!("the event batch is not valid: {e}"))
}

/// Reads what the engine needs from a batch: sequence range, count and the resource changes
/// of a summary event.
fn inspect_batch(json: &[u8]) -> EngineResult<(i64, i64, i64, Option<String>)> {
    serde_json::from_slice::<BatchStats>(json)
        .map(stats_of)
        .map_err(invalid_batch)
}

/// [`inspect_batch`] on a gzip batch, inflating it as it is parsed (never whole in memory).
/// The caller has already scanned the whole stream (CRC, size under `limit`).
fn inspect_gzip(gz: &[u8], limit: usize) -> EngineResult<(i64, i64, i64, Option<String>)> {
    let reader = std::io::BufReader::with_capacity(
        64 * 1024,
        GzDecoder::new(gz).take((limit as u64).saturating_add(1)),
    );
    let mut de = serde_json::Deserializer::from_reader(reader);
    let stats = BatchStats::deserialize(&mut de).map_err(invalid_batch)?;
    de.end().map_err(invalid_batch)?;
    Ok(stats_of(stats))
}

/// An event batch as the CLI sent it.
pub enum EventBody {
    Json(Vec<u8>),
    Gzip(Vec<u8>),
}

/// What one streaming pass over a gzip batch found.
struct Scan {
    first_sequence: Option<i64>,
    has_summary: bool,
}

const SUMMARY_KEY: &[u8] = b"\"summaryEvent\"";
const PREFIX_LEN: usize = 256;

/// Inflates `gz` through a small buffer, keeping only its opening bytes, and reports whether
/// a summary event occurs anywhere in it. Fails on invalid gzip (the trailer's CRC included)
/// and on more than `limit` inflated bytes.
fn scan_gzip(gz: &[u8], limit: usize) -> EngineResult<Scan> {
    let finder = memchr::memmem::Finder::new(SUMMARY_KEY);
    let overlap = SUMMARY_KEY.len() - 1;
    let mut dec = GzDecoder::new(gz);
    let mut buf = vec![0u8; 64 * 1024];
    let mut prefix = Vec::with_capacity(PREFIX_LEN);
    let (mut carry, mut total, mut has_summary) = (0usize, 0usize, false);
    loop {
        let n = dec
            .read(&mut buf[carry..])
            .map_err(|e| EngineError::Invalid(format!("the body is not valid gzip: {e}")))?;
        if n == 0 {
            break;
        }
        total += n;
        if total > limit {
            return Err(EngineError::TooLarge(format!(
                "the decompressed body is larger than the limit of {limit} bytes"
            )));
        }
        let fresh = &buf[carry..carry + n];
        if prefix.len() < PREFIX_LEN {
            let take = (PREFIX_LEN - prefix.len()).min(fresh.len());
            prefix.extend_from_slice(&fresh[..take]);
        }
        let window = carry + n;
        if !has_summary && finder.find(&buf[..window]).is_some() {
            has_summary = true;
        }
        // Keep the tail so that a key split across two reads is still found.
        let keep = overlap.min(window);
        buf.copy_within(window - keep..window, 0);
        carry = keep;
    }
    Ok(Scan {
        first_sequence: first_sequence(&prefix),
        has_summary,
    })
}

/// The sequence number of the first event when the batch opens the way the CLI writes it
/// (`{"events":[{"sequence":N,…`); `None` for anything else, which is then parsed whole.
fn first_sequence(prefix: &[u8]) -> Option<i64> {
    fn skip_ws(b: &[u8]) -> &[u8] {
        let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
        &b[n..]
    }
    let mut rest = prefix;
    for token in [
        &b"{"[..],
        b"\"events\"",
        b":",
        b"[",
        b"{",
        b"\"sequence\"",
        b":",
    ] {
        rest = skip_ws(rest).strip_prefix(token)?;
    }
    let rest = skip_ws(rest);
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'-'))?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// The stored form of a batch and what the engine records of it.
pub(crate) fn batch_of(body: EventBody, limit: usize) -> EngineResult<EventBatch> {
    match body {
        EventBody::Json(json) => {
            let (first, last, count, changes) = inspect_batch(&json)?;
            Ok(EventBatch {
                first_sequence: first,
                last_sequence: last,
                count,
                gz: gzip(&json),
                resource_changes: changes,
            })
        }
        EventBody::Gzip(gz) => {
            let scan = scan_gzip(&gz, limit)?;
            if let Some(first) = scan.first_sequence
                && !scan.has_summary
            {
                // Last sequence and count are only known by parsing; -1 says "not read".
                return Ok(EventBatch {
                    first_sequence: first,
                    last_sequence: -1,
                    count: -1,
                    gz,
                    resource_changes: None,
                });
            }
            let (first, last, count, changes) = inspect_gzip(&gz, limit)?;
            Ok(EventBatch {
                first_sequence: first,
                last_sequence: last,
                count,
                gz,
                resource_changes: changes,
            })
        }
    }
}

impl Engine {
    /// `POST …/events/batch` (and the single-event form, wrapped as a batch of one by the
    /// caller). A gzip body is stored as received, without recompressing.
    pub async fn post_events(&self, lease: &Lease, body: EventBody) -> EngineResult<()> {
        let lease = lease.check.clone();
        let size = match &body {
            EventBody::Json(b) | EventBody::Gzip(b) => b.len(),
        };
        let limit = self.config().max_state_bytes;
        let batch = run_sized(size, move || batch_of(body, limit)).await?;
        if batch.count == 0 {
            return Ok(());
        }
        self.store.append_events(lease, batch).await?;
        Ok(())
    }

    /// `POST …/events`: one event, stored as a batch of one.
    pub async fn post_event(&self, lease: &Lease, event: Vec<u8>) -> EngineResult<()> {
        let mut json = Vec::with_capacity(event.len() + 13);
        json.extend_from_slice(b"{\"events\":[");
        json.extend_from_slice(&event);
        json.extend_from_slice(b"]}");
        self.post_events(lease, EventBody::Json(json)).await
    }

    /// A page of an update's events in sequence order. Pages end at a stored batch
    /// boundary once [`EVENT_PAGE_BYTES`] of events are read; `continuation` names where the
    /// next starts, and stays set while the update runs (pollers keep polling).
    pub async fn get_events(
        &self,
        caller: &Identity,
        key: &StackKey,
        update_id: &str,
        continuation: Option<&str>,
    ) -> EngineResult<EventsPage> {
        let stack = self.stack(caller, key).await?;
        let update = self.update_of(stack.id, update_id).await?;
        let after = match continuation.filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(
                c.parse::<i64>()
                    .map_err(|_| EngineError::Invalid("invalid continuationToken".into()))?,
            ),
        };
        let batches = self
            .store
            .list_event_batches(&update.id, after, EVENT_PAGE_BATCHES)
            .await?;
        let fetched = batches.len() as i64;
        let size: usize = batches.iter().map(|b| b.gz.len()).sum();
        let (events, last, consumed) = run_sized(size, move || {
            let mut all: Vec<(i64, Box<RawValue>)> = Vec::new();
            let (mut bytes, mut last, mut consumed) = (0usize, None, 0i64);
            for b in &batches {
                if bytes >= EVENT_PAGE_BYTES {
                    break;
                }
                consumed += 1;
                last = Some(b.first_sequence);
                // A batch is stored after a gzip check only (see the module comment), so one
                // that is not JSON is skipped here rather than failing the whole read.
                let json = gunzip_stored(&b.gz)?;
                bytes += json.len();
                let Ok(batch) = serde_json::from_slice::<RawBatch<'_>>(&json) else {
                    tracing::warn!(
                        first_sequence = b.first_sequence,
                        "skipping an event batch that is not valid JSON"
                    );
                    continue;
                };
                for ev in batch.events {
                    if let Ok(seq) = serde_json::from_str::<SequenceOnly>(ev.get()) {
                        all.push((seq.sequence, ev.to_owned()));
                    }
                }
            }
            all.sort_by_key(|(s, _)| *s);
            all.dedup_by_key(|(s, _)| *s);
            Ok((
                all.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
                last,
                consumed,
            ))
        })
        .await?;
        let more = consumed < fetched || fetched == EVENT_PAGE_BATCHES;
        let position = last.or(after);
        let continuation = if more || !update.status.is_finished() {
            position
                .map(|p| p.to_string())
                .or_else(|| Some(String::new()))
        } else {
            None
        };
        Ok(EventsPage {
            events,
            continuation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_json(first: i64, n: usize, pad: usize, summary: bool) -> Vec<u8> {
        let mut events: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"sequence":{},"timestamp":1,"diagnosticEvent":{{"message":"{}"}}}}"#,
                    first + i as i64,
                    "x".repeat(pad)
                )
            })
            .collect();
        if summary {
            events.push(format!(
                r#"{{"sequence":{},"timestamp":1,"summaryEvent":{{"resourceChanges":{{"create":3}}}}}}"#,
                first + n as i64
            ));
        }
        format!(r#"{{"events":[{}]}}"#, events.join(",")).into_bytes()
    }

    #[test]
    fn gzip_batches_are_read_from_their_opening_bytes() {
        let json = batch_json(41, 50, 3000, false);
        let b = batch_of(EventBody::Gzip(gzip(&json)), usize::MAX).unwrap();
        assert_eq!((b.first_sequence, b.last_sequence, b.count), (41, -1, -1));
        assert!(b.resource_changes.is_none());
        assert_eq!(gunzip_stored(&b.gz).unwrap(), json);
    }

    #[test]
    fn a_summary_anywhere_is_found_even_across_buffer_boundaries() {
        // Pad so that the key straddles the 64 KiB read boundary at several offsets.
        for pad in [65_470usize, 65_480, 65_490, 65_500, 65_510] {
            let json = batch_json(7, 1, pad, true);
            let b = batch_of(EventBody::Gzip(gzip(&json)), usize::MAX).unwrap();
            assert_eq!((b.first_sequence, b.last_sequence, b.count), (7, 8, 2));
            assert_eq!(b.resource_changes.as_deref(), Some(r#"{"create":3}"#));
        }
    }

    #[test]
    fn other_layouts_fall_back_to_a_full_parse() {
        let json = br#"{ "events": [ {"timestamp": 1, "sequence": 9}, {"sequence": 5} ] }"#;
        let b = batch_of(EventBody::Gzip(gzip(json)), usize::MAX).unwrap();
        assert_eq!((b.first_sequence, b.last_sequence, b.count), (5, 9, 2));
        assert_eq!(
            first_sequence(br#"{"events":[{"sequence":-3,"x":1}]}"#),
            Some(-3)
        );
        assert_eq!(first_sequence(br#"{"events":[]}"#), None);
    }

    #[test]
    fn bad_gzip_and_bombs_are_refused() {
        assert!(matches!(
            batch_of(EventBody::Gzip(b"not gzip".to_vec()), usize::MAX),
            Err(EngineError::Invalid(_))
        ));
        let mut gz = gzip(&batch_json(1, 3, 10, false));
        let n = gz.len();
        gz[n - 6] ^= 0xff; // the CRC
        assert!(matches!(
            batch_of(EventBody::Gzip(gz), usize::MAX),
            Err(EngineError::Invalid(_))
        ));
        let big = gzip(&batch_json(1, 100, 10_000, false));
        assert!(matches!(
            batch_of(EventBody::Gzip(big), 100_000),
            Err(EngineError::TooLarge(_))
        ));
    }
}
