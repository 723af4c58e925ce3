//! State: a stack's kept versions, and what a running update reports — its working
//! checkpoint, deltas on top of it, journal batches and engine events.

use super::updates::check_lease;
use super::{Dialect, Param, Tx, p};
use crate::store::*;

pub fn insert_version(
    tx: &mut dyn Tx,
    stack_id: i64,
    version: i64,
    blob: &StateBlob,
    now: i64,
) -> StoreResult<()> {
    // SQLite: the state (the row's last column) is reserved as zeros and written in place,
    // so a large state is not copied twice in memory on its way to the pages.
    let in_place = tx.dialect() == Dialect::Sqlite;
    let state = if in_place { "zeroblob(?3)" } else { "?3" };
    let len = blob.gz.len() as i64;
    tx.exec(
        &format!(
            "INSERT INTO stack_versions \
             (stack_id, version, state, sha256, size, resource_count, created_at) \
             VALUES (?1, ?2, {state}, ?4, ?5, ?6, ?7) \
             ON CONFLICT (stack_id, version) DO UPDATE SET state = excluded.state, \
               sha256 = excluded.sha256, size = excluded.size, \
               resource_count = excluded.resource_count, created_at = excluded.created_at"
        ),
        p![
            stack_id,
            version,
            if in_place {
                Param::Int(Some(len))
            } else {
                Param::Blob(Some(&blob.gz))
            },
            &blob.sha256,
            blob.size,
            blob.resource_count,
            now
        ],
    )?;
    if in_place {
        let rowid = tx.count(
            "SELECT rowid FROM stack_versions WHERE stack_id = ?1 AND version = ?2",
            p![stack_id, version],
        )?;
        tx.fill_blob("stack_versions", "state", rowid, &blob.gz)?;
    }
    Ok(())
}

/// Makes `version` the stack's current state and applies retention.
pub fn set_current(tx: &mut dyn Tx, stack_id: i64, version: i64, keep: i64) -> StoreResult<()> {
    tx.exec(
        "UPDATE stacks SET current_version = ?2, \
            resource_count = (SELECT resource_count FROM stack_versions \
                              WHERE stack_id = ?1 AND version = ?2), \
            state_size = (SELECT size FROM stack_versions WHERE stack_id = ?1 AND version = ?2) \
         WHERE id = ?1",
        p![stack_id, version],
    )?;
    prune(tx, stack_id, keep)?;
    Ok(())
}

/// Deletes all but the newest `keep` versions, and the journals and events of updates older
/// than every kept version (they can no longer be replayed or shown against a state).
fn prune(tx: &mut dyn Tx, stack_id: i64, keep: i64) -> StoreResult<u64> {
    let n = tx.exec(
        "DELETE FROM stack_versions WHERE stack_id = ?1 AND version NOT IN \
         (SELECT version FROM stack_versions WHERE stack_id = ?1 \
          ORDER BY version DESC LIMIT ?2)",
        p![stack_id, keep.max(1)],
    )?;
    if n > 0 {
        for table in ["journal_batches", "update_events"] {
            tx.exec(
                &format!(
                    "DELETE FROM {table} WHERE update_id IN (SELECT id FROM updates \
                     WHERE stack_id = ?1 AND status != 'running' AND version < \
                     (SELECT MIN(version) FROM stack_versions WHERE stack_id = ?1))"
                ),
                p![stack_id],
            )?;
        }
    }
    Ok(n)
}

/// The state of a version, or the current one.
pub fn get(tx: &mut dyn Tx, stack_id: i64, version: Option<i64>) -> StoreResult<Option<StateBlob>> {
    let version = match version {
        Some(v) => v,
        None => match tx
            .one(
                "SELECT current_version FROM stacks WHERE id = ?1",
                p![stack_id],
            )?
            .map(|r| r.opt_i64(0))
            .transpose()?
            .flatten()
        {
            Some(v) => v,
            None => return Ok(None),
        },
    };
    // SQLite reads the state (a large value) in place, by rowid; see `insert_version`.
    let in_place = tx.dialect() == Dialect::Sqlite;
    let first = if in_place { "rowid" } else { "state" };
    let Some(mut r) = tx.one(
        &format!(
            "SELECT {first}, sha256, size, resource_count FROM stack_versions \
             WHERE stack_id = ?1 AND version = ?2"
        ),
        p![stack_id, version],
    )?
    else {
        return Ok(None);
    };
    let gz = if in_place {
        let rowid = r.i64(0)?;
        tx.read_blob("stack_versions", "state", rowid)?
    } else {
        r.blob(0)?
    };
    Ok(Some(StateBlob {
        gz,
        sha256: r.text(1)?,
        size: r.i64(2)?,
        resource_count: r.i64(3)?,
    }))
}

pub fn versions(tx: &mut dyn Tx, stack_id: i64) -> StoreResult<Vec<VersionInfo>> {
    tx.query(
        "SELECT version, sha256, size, length(state), resource_count, created_at \
         FROM stack_versions WHERE stack_id = ?1 ORDER BY version DESC",
        p![stack_id],
    )?
    .into_iter()
    .map(|r| {
        Ok(VersionInfo {
            version: r.i64(0)?,
            sha256: r.text(1)?,
            size: r.i64(2)?,
            stored_size: r.i64(3)?,
            resource_count: r.i64(4)?,
            created_at: r.i64(5)?,
        })
    })
    .collect()
}

const PRUNABLE: &str = "FROM stack_versions WHERE stack_id = ?1 \
     AND version NOT IN (SELECT version FROM stack_versions WHERE stack_id = ?1 \
                         ORDER BY version DESC LIMIT ?2) \
     AND version IS DISTINCT FROM (SELECT current_version FROM stacks WHERE id = ?1)";

/// The versions a prune keeping `keep` would remove: all but the newest `keep`, and never
/// the current one.
pub fn prune_candidates(tx: &mut dyn Tx, stack_id: i64, keep: i64) -> StoreResult<PruneReport> {
    let r = tx
        .one(
            &format!("SELECT COUNT(*), CAST(COALESCE(SUM(length(state)), 0) AS BIGINT) {PRUNABLE}"),
            p![stack_id, keep.max(1)],
        )?
        .ok_or_else(|| StoreError::Corrupt("COUNT returned no row".into()))?;
    Ok(PruneReport {
        versions: r.i64(0)?,
        bytes: r.i64(1)?,
    })
}

pub fn prune_keeping_current(tx: &mut dyn Tx, stack_id: i64, keep: i64) -> StoreResult<()> {
    tx.exec(&format!("DELETE {PRUNABLE}"), p![stack_id, keep.max(1)])?;
    Ok(())
}

/// Replaces the stored state of an existing version (journal replay repairs).
pub fn replace_version(
    tx: &mut dyn Tx,
    stack_id: i64,
    version: i64,
    blob: &StateBlob,
) -> StoreResult<()> {
    let n = tx.exec(
        "UPDATE stack_versions SET state = ?3, sha256 = ?4, size = ?5, resource_count = ?6 \
         WHERE stack_id = ?1 AND version = ?2",
        p![
            stack_id,
            version,
            &blob.gz,
            &blob.sha256,
            blob.size,
            blob.resource_count
        ],
    )?;
    if n == 0 {
        return Err(StoreError::Conflict(format!(
            "version {version} is not stored"
        )));
    }
    tx.exec(
        "UPDATE stacks SET resource_count = ?3, state_size = ?4 \
         WHERE id = ?1 AND current_version = ?2",
        p![stack_id, version, blob.resource_count, blob.size],
    )?;
    Ok(())
}

pub fn progress(tx: &mut dyn Tx, update_id: &str) -> StoreResult<Progress> {
    let r = tx
        .one(
            "SELECT (SELECT COUNT(*) FROM journal_batches WHERE update_id = ?1), \
                    (SELECT MAX(sequence) FROM update_deltas WHERE update_id = ?1), \
                    (SELECT sequence FROM update_state WHERE update_id = ?1)",
            p![update_id],
        )?
        .ok_or_else(|| StoreError::Corrupt("progress returned no row".into()))?;
    Ok(Progress {
        journal_batches: r.i64(0)?,
        latest_sequence: r.opt_i64(1)?.or(r.opt_i64(2)?),
    })
}

/// Replaces the update's working checkpoint and drops the deltas on top of the old one.
pub fn save_checkpoint(
    tx: &mut dyn Tx,
    lease: &LeaseCheck,
    w: &CheckpointWrite,
) -> StoreResult<()> {
    check_lease(tx, lease, false)?;
    if let Some(expected) = w.replaces
        && progress(tx, &lease.update_id)?.latest_sequence != Some(expected)
    {
        return Err(StoreError::Stale("the update's checkpoints moved on"));
    }
    let last = tx
        .one(
            "SELECT sequence FROM update_state WHERE update_id = ?1",
            p![&lease.update_id],
        )?
        .map(|r| r.i64(0))
        .transpose()?;
    if let Some(last) = last
        && w.sequence > 0
        && w.sequence < last
    {
        return Err(StoreError::Conflict(format!(
            "stale checkpoint: sequence {} is older than the stored {last}",
            w.sequence
        )));
    }
    let count = (w.blob.resource_count >= 0).then_some(w.blob.resource_count);
    tx.exec(
        "INSERT INTO update_state \
         (update_id, state, sha256, size, resource_count, sequence, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (update_id) DO UPDATE SET state = excluded.state, \
           sha256 = excluded.sha256, size = excluded.size, \
           resource_count = excluded.resource_count, sequence = excluded.sequence, \
           updated_at = excluded.updated_at",
        p![
            &lease.update_id,
            &w.blob.gz,
            &w.blob.sha256,
            w.blob.size,
            count,
            w.sequence,
            lease.now
        ],
    )?;
    tx.exec(
        "DELETE FROM update_deltas WHERE update_id = ?1",
        p![&lease.update_id],
    )?;
    Ok(())
}

pub fn working(tx: &mut dyn Tx, update_id: &str) -> StoreResult<Option<WorkingState>> {
    let Some(mut r) = tx.one(
        "SELECT state, sha256, size, resource_count, sequence FROM update_state \
         WHERE update_id = ?1",
        p![update_id],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(WorkingState {
        blob: StateBlob {
            gz: r.blob(0)?,
            sha256: r.text(1)?,
            size: r.i64(2)?,
            resource_count: r.opt_i64(3)?.unwrap_or(-1),
        },
        sequence: r.i64(4)?,
    }))
}

/// Appends a journal batch under the lease; returns its ordinal.
pub fn append_journal(tx: &mut dyn Tx, lease: &LeaseCheck, b: &JournalBatch) -> StoreResult<i64> {
    check_lease(tx, lease, false)?;
    let ordinal = tx.count(
        "SELECT COALESCE(MAX(ordinal), 0) + 1 FROM journal_batches WHERE update_id = ?1",
        p![&lease.update_id],
    )?;
    if ordinal != b.ordinal {
        return Err(StoreError::Stale("the update's journal moved on"));
    }
    tx.exec(
        "INSERT INTO journal_batches (update_id, ordinal, first_seq, last_seq, count, entries) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        p![
            &lease.update_id,
            ordinal,
            b.first_sequence,
            b.last_sequence,
            b.count,
            &b.gz
        ],
    )?;
    Ok(ordinal)
}

pub fn journal_batches(tx: &mut dyn Tx, update_id: &str) -> StoreResult<Vec<JournalBatch>> {
    tx.query(
        "SELECT ordinal, first_seq, last_seq, count, entries FROM journal_batches \
         WHERE update_id = ?1 ORDER BY ordinal",
        p![update_id],
    )?
    .into_iter()
    .map(|mut r| {
        Ok(JournalBatch {
            ordinal: r.i64(0)?,
            first_sequence: r.i64(1)?,
            last_sequence: r.i64(2)?,
            count: r.i64(3)?,
            gz: r.blob(4)?,
        })
    })
    .collect()
}

/// Appends an applied delta on top of the working checkpoint, under the lease.
pub fn append_delta(tx: &mut dyn Tx, lease: &LeaseCheck, d: &DeltaWrite) -> StoreResult<()> {
    check_lease(tx, lease, false)?;
    let has_base = tx.count(
        "SELECT COUNT(*) FROM update_state WHERE update_id = ?1",
        p![&lease.update_id],
    )? > 0;
    if !has_base {
        return Err(StoreError::Conflict(
            "a delta needs a verbatim checkpoint of this update to apply to".into(),
        ));
    }
    if progress(tx, &lease.update_id)?.latest_sequence != Some(d.base_sequence) {
        return Err(StoreError::Stale("the update's checkpoints moved on"));
    }
    let ordinal = tx.count(
        "SELECT COALESCE(MAX(ordinal), 0) + 1 FROM update_deltas WHERE update_id = ?1",
        p![&lease.update_id],
    )?;
    tx.exec(
        "INSERT INTO update_deltas (update_id, ordinal, sequence, hash, edits) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        p![&lease.update_id, ordinal, d.sequence, &d.hash, &d.gz],
    )?;
    Ok(())
}

pub fn deltas(tx: &mut dyn Tx, update_id: &str) -> StoreResult<Vec<DeltaWrite>> {
    tx.query(
        "SELECT sequence, hash, edits FROM update_deltas WHERE update_id = ?1 ORDER BY ordinal",
        p![update_id],
    )?
    .into_iter()
    .map(|mut r| {
        Ok(DeltaWrite {
            sequence: r.i64(0)?,
            hash: r.text(1)?,
            gz: r.blob(2)?,
            base_sequence: 0,
        })
    })
    .collect()
}

/// Stores a batch of engine events under the lease. A batch whose first sequence is already
/// stored is a retry and is ignored.
pub fn append_events(tx: &mut dyn Tx, lease: &LeaseCheck, b: &EventBatch) -> StoreResult<()> {
    // The CLI sends every event before it completes the update; after that the lease no
    // longer admits any.
    check_lease(tx, lease, false)?;
    tx.exec(
        "INSERT INTO update_events (update_id, first_seq, last_seq, count, events) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        p![
            &lease.update_id,
            b.first_sequence,
            b.last_sequence,
            b.count,
            &b.gz
        ],
    )?;
    if let Some(changes) = &b.resource_changes {
        tx.exec(
            "UPDATE updates SET resource_changes = ?2 WHERE id = ?1",
            p![&lease.update_id, changes],
        )?;
    }
    Ok(())
}

/// Up to `limit` event batches whose first sequence is above `after`, in order.
pub fn event_batches(
    tx: &mut dyn Tx,
    update_id: &str,
    after: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<EventBatch>> {
    tx.query(
        "SELECT first_seq, last_seq, count, events FROM update_events \
         WHERE update_id = ?1 AND first_seq > ?2 ORDER BY first_seq LIMIT ?3",
        p![update_id, after.unwrap_or(i64::MIN), limit],
    )?
    .into_iter()
    .map(|mut r| {
        Ok(EventBatch {
            first_sequence: r.i64(0)?,
            last_sequence: r.i64(1)?,
            count: r.i64(2)?,
            gz: r.blob(3)?,
            resource_changes: None,
        })
    })
    .collect()
}
