//! What a running update has reported so far, kept in memory so that no request has to rebuild
//! it: the journal replayer (journal mode) or the current checkpoint text (delta mode).
//!
//! Memory is only a cache. Every batch, checkpoint and delta is in the store before it is
//! acknowledged, and a slot that is missing (after a restart, or on another replica) is rebuilt
//! from the store on first use — the one time a whole journal is replayed. Each slot has its own
//! async lock, so the requests of one update apply in order while other updates proceed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Mutex as AsyncMutex;

use crate::engine::state::journal::Replayer;
use crate::store::UpdateRow;

/// The current checkpoint text of an update in delta mode.
pub struct LiveText {
    pub bytes: Vec<u8>,
    /// Lowercase hex SHA-256 of `bytes`.
    pub sha: String,
    pub sequence: i64,
    /// Deltas stored on top of the last full checkpoint in the store.
    pub deltas: usize,
}

#[derive(Default)]
pub struct Live {
    /// The update row as it was when the slot was filled (kind, base version, mode).
    pub update: Option<UpdateRow>,
    /// Journal mode: entries applied so far, and how many stored batches that covers.
    pub replayer: Option<Box<Replayer>>,
    pub batches: i64,
    /// Delta mode: the text deltas apply to.
    pub text: Option<LiveText>,
    touched: Option<Instant>,
}

impl Live {
    pub fn clear(&mut self) {
        self.replayer = None;
        self.text = None;
        self.batches = 0;
    }
}

pub type Slot = Arc<AsyncMutex<Live>>;

/// Slots idle for longer than this are dropped (their update was abandoned; the store still
/// has everything).
const IDLE: Duration = Duration::from_secs(30 * 60);

#[derive(Default)]
pub struct LiveCache {
    slots: Mutex<HashMap<String, (Slot, Instant)>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl LiveCache {
    /// The slot of an update, created empty when absent.
    pub fn slot(&self, update_id: &str) -> Slot {
        let now = Instant::now();
        let mut slots = locked(&self.slots);
        if slots.len() > 64 {
            slots.retain(|_, (s, t)| now.duration_since(*t) < IDLE || Arc::strong_count(s) > 1);
        }
        let entry = slots
            .entry(update_id.to_owned())
            .or_insert_with(|| (Arc::new(AsyncMutex::new(Live::default())), now));
        entry.1 = now;
        entry.0.clone()
    }

    pub fn remove(&self, update_id: &str) {
        locked(&self.slots).remove(update_id);
    }
}

impl Live {
    pub fn touch(&mut self) {
        self.touched = Some(Instant::now());
    }
}
