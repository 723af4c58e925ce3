//! Updates: creation, the start that takes a stack's lease, lease checks, finishing, imports,
//! history and coherence windows.

use subtle::ConstantTimeEq;

use super::rows::{UPDATE_COLS, running_update_of, stack_by_id, tags_json, update, update_by_id};
use super::state::{insert_version, set_current};
use super::{Tx, p};
use crate::store::*;

pub fn insert(tx: &mut dyn Tx, u: &NewUpdate, status: UpdateStatus) -> StoreResult<()> {
    tx.exec(
        "INSERT INTO updates (id, stack_id, kind, dry_run, status, created_at, author, message, \
         environment, config) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        p![
            &u.id,
            u.stack_id,
            &u.kind,
            u.dry_run,
            status.as_str(),
            u.created_at,
            &u.author,
            &u.message,
            &u.environment,
            &u.config
        ],
    )?;
    if let Some(w) = &u.coherence_window {
        // `seq` orders the members of a window that share a second.
        tx.exec(
            "INSERT INTO update_windows (update_id, window_id, seq) VALUES (?1, ?2, \
             (SELECT COALESCE(MAX(seq), 0) + 1 FROM update_windows WHERE window_id = ?2))",
            p![&u.id, w],
        )?;
    }
    Ok(())
}

/// Starts a created update: non-previews take the stack's lease and a new version number.
pub fn start(tx: &mut dyn Tx, s: &StartUpdate) -> StoreResult<StartOutcome> {
    // Stack first, then update: the order every transaction that locks both uses.
    let stack =
        stack_by_id(tx, s.stack_id, true)?.ok_or(StoreError::Lease(LeaseDenied::UnknownUpdate))?;
    let Some(update) = update_by_id(tx, &s.update_id, true)? else {
        return Err(StoreError::Lease(LeaseDenied::UnknownUpdate));
    };
    if update.stack_id != s.stack_id {
        return Err(StoreError::Lease(LeaseDenied::UnknownUpdate));
    }
    if update.status != UpdateStatus::NotStarted {
        return Ok(StartOutcome::AlreadyStarted(update));
    }
    let version = if update.dry_run {
        stack.current_version.unwrap_or(0)
    } else {
        if let Some(holder) = running_update_of(tx, s.stack_id)? {
            return Ok(StartOutcome::Busy(holder));
        }
        stack.last_version + 1
    };
    if let Some(tags) = &s.tags {
        let tags = tags_json(tags)?;
        tx.exec(
            "UPDATE stacks SET tags = ?2 WHERE id = ?1",
            p![s.stack_id, &tags],
        )?;
    }
    if !update.dry_run {
        tx.exec(
            "UPDATE stacks SET last_version = ?2, active_update = ?3, last_update_at = ?4 \
             WHERE id = ?1",
            p![s.stack_id, version, &s.update_id, s.now],
        )?;
    }
    tx.exec(
        "UPDATE updates SET status = 'running', version = ?2, base_version = ?3, \
         started_at = ?4, lease_hash = ?5, lease_expires = ?6, journal_version = ?7 \
         WHERE id = ?1",
        p![
            &s.update_id,
            version,
            stack.current_version,
            s.now,
            &s.lease_hash,
            s.lease_expires,
            s.journal_version
        ],
    )?;
    let row = update_by_id(tx, &s.update_id, false)?
        .ok_or_else(|| StoreError::Corrupt("started update vanished".into()))?;
    Ok(StartOutcome::Started(row))
}

/// Creates and starts an update in one transaction: nothing is created when the stack is
/// busy.
pub fn begin(tx: &mut dyn Tx, u: &NewUpdate, s: &StartUpdate) -> StoreResult<StartOutcome> {
    if stack_by_id(tx, u.stack_id, true)?.is_none() {
        return Err(StoreError::Lease(LeaseDenied::UnknownUpdate));
    }
    if !u.dry_run
        && let Some(holder) = running_update_of(tx, u.stack_id)?
    {
        return Ok(StartOutcome::Busy(holder));
    }
    insert(tx, u, UpdateStatus::NotStarted)?;
    start(tx, s)
}

pub fn window_of(tx: &mut dyn Tx, update_id: &str) -> StoreResult<Option<String>> {
    tx.one(
        "SELECT window_id FROM update_windows WHERE update_id = ?1",
        p![update_id],
    )?
    .map(|r| r.text(0))
    .transpose()
}

pub fn window_members(
    tx: &mut dyn Tx,
    stack_id: i64,
    window: &str,
) -> StoreResult<Vec<WindowMember>> {
    tx.query(
        "SELECT u.id, u.dry_run, u.status, u.created_at, u.ended_at, w.outputs, \
         w.secrets_providers FROM update_windows w JOIN updates u ON u.id = w.update_id \
         WHERE w.window_id = ?1 AND u.stack_id = ?2 ORDER BY w.seq",
        p![window, stack_id],
    )?
    .into_iter()
    .map(|r| {
        let status = r.text(2)?;
        let (outputs, secrets_providers) = (r.opt_text(5)?, r.opt_text(6)?);
        Ok(WindowMember {
            update_id: r.text(0)?,
            dry_run: r.bool(1)?,
            status: UpdateStatus::parse(&status).unwrap_or(UpdateStatus::Failed),
            created_at: r.i64(3)?,
            ended_at: r.opt_i64(4)?,
            recorded: (outputs.is_some() || secrets_providers.is_some()).then_some(WindowOutputs {
                outputs,
                secrets_providers,
            }),
        })
    })
    .collect()
}

pub fn lease_state(
    tx: &mut dyn Tx,
    key: &StackKey,
    update_id: &str,
) -> StoreResult<Option<LeaseState>> {
    let Some(mut r) = tx.one(
        "SELECT u.stack_id, u.status, u.lease_expires, u.lease_hash \
         FROM updates u JOIN stacks s ON s.id = u.stack_id \
         WHERE u.id = ?1 AND s.org = ?2 AND s.project = ?3 AND s.name = ?4",
        p![update_id, &key.org, &key.project, &key.stack],
    )?
    else {
        return Ok(None);
    };
    let status = r.text(1)?;
    Ok(Some(LeaseState {
        stack_id: r.i64(0)?,
        status: UpdateStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("update status {status:?}")))?,
        lease_expires: r.opt_i64(2)?,
        lease_hash: r.opt_blob(3)?,
    }))
}

/// Verifies that `lease` is the live lease of a running update of its stack, locking the
/// update for the rest of the transaction. `allow_finished` also accepts the right token of
/// an update that has since finished.
pub fn check_lease(tx: &mut dyn Tx, lease: &LeaseCheck, allow_finished: bool) -> StoreResult<()> {
    let sql = format!(
        "SELECT stack_id, status, lease_expires, lease_hash FROM updates WHERE id = ?1{}",
        tx.for_update()
    );
    let Some(mut r) = tx.one(&sql, p![&lease.update_id])? else {
        return Err(StoreError::Lease(LeaseDenied::UnknownUpdate));
    };
    if r.i64(0)? != lease.stack_id {
        return Err(StoreError::Lease(LeaseDenied::UnknownUpdate));
    }
    let status = r.text(1)?;
    let expires = r.opt_i64(2)?;
    let matches = r
        .opt_blob(3)?
        .is_some_and(|h| bool::from(h.ct_eq(&lease.token_hash)));
    if !matches {
        return Err(StoreError::Lease(LeaseDenied::WrongToken));
    }
    let status = UpdateStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("update status {status:?}")))?;
    if status.is_finished() {
        return if allow_finished {
            Ok(())
        } else {
            Err(StoreError::Lease(LeaseDenied::Finished(status)))
        };
    }
    if status != UpdateStatus::Running {
        return Err(StoreError::Lease(LeaseDenied::WrongToken));
    }
    if !allow_finished && expires.is_none_or(|e| e <= lease.now) {
        return Err(StoreError::Lease(LeaseDenied::Expired));
    }
    Ok(())
}

pub fn renew(tx: &mut dyn Tx, lease: &LeaseCheck, expires: i64) -> StoreResult<()> {
    check_lease(tx, lease, false)?;
    tx.exec(
        "UPDATE updates SET lease_expires = ?2 WHERE id = ?1 AND lease_expires < ?2",
        p![&lease.update_id, expires],
    )?;
    Ok(())
}

pub fn finish(tx: &mut dyn Tx, f: &FinishUpdate) -> StoreResult<FinishOutcome> {
    let stack = stack_by_id(tx, f.stack_id, true)?;
    let Some(update) = update_by_id(tx, &f.update_id, true)? else {
        return Err(StoreError::Lease(LeaseDenied::UnknownUpdate));
    };
    if update.stack_id != f.stack_id || stack.is_none() {
        return Err(StoreError::Lease(LeaseDenied::UnknownUpdate));
    }
    match &f.guard {
        FinishGuard::Lease(lease) => {
            check_lease(tx, lease, true)?;
            if update.status.is_finished() {
                return Ok(FinishOutcome::AlreadyFinished(update));
            }
            check_lease(tx, lease, false)?;
        }
        FinishGuard::Running => {
            if update.status.is_finished() {
                return Ok(FinishOutcome::AlreadyFinished(update));
            }
        }
        FinishGuard::ExpiredAt(now) => {
            if update.status != UpdateStatus::Running || update.lease_live(*now) {
                return Ok(FinishOutcome::AlreadyFinished(update));
            }
        }
    }
    if let Some(built) = f.built_from {
        let now = super::state::progress(tx, &f.update_id)?;
        let current = match built {
            BuiltFrom::Journal(n) => now.journal_batches == n,
            BuiltFrom::Text(seq) => now.latest_sequence == Some(seq),
        };
        if !current {
            return Err(StoreError::Stale("the update's state moved on"));
        }
    }
    let mut final_count = None;
    if !update.dry_run && update.status == UpdateStatus::Running {
        let written = match &f.final_state {
            FinalState::Unchanged => false,
            FinalState::Blob(blob) => {
                insert_version(tx, f.stack_id, update.version, blob, f.ended_at)?;
                true
            }
            FinalState::Working { resource_count } => {
                promote_working(tx, f, update.version, *resource_count)?
            }
        };
        if written {
            set_current(tx, f.stack_id, update.version, f.keep_versions)?;
            final_count = stack_by_id(tx, f.stack_id, false)?.map(|s| s.resource_count);
        }
    }
    tx.exec(
        "UPDATE updates SET status = ?2, ended_at = ?3, lease_expires = NULL, \
         resource_changes = COALESCE(?4, resource_changes), \
         resource_count = COALESCE(?5, resource_count) WHERE id = ?1",
        p![
            &f.update_id,
            f.status.as_str(),
            f.ended_at,
            f.resource_changes.as_deref(),
            final_count
        ],
    )?;
    if let Some(w) = &f.window_outputs {
        tx.exec(
            "UPDATE update_windows SET outputs = ?2, secrets_providers = ?3 \
             WHERE update_id = ?1",
            p![&f.update_id, &w.outputs, &w.secrets_providers],
        )?;
    }
    for table in ["update_state", "update_deltas"] {
        tx.exec(
            &format!("DELETE FROM {table} WHERE update_id = ?1"),
            p![&f.update_id],
        )?;
    }
    let row = update_by_id(tx, &f.update_id, false)?
        .ok_or_else(|| StoreError::Corrupt("finished update vanished".into()))?;
    Ok(FinishOutcome::Finished(row))
}

/// Makes the update's last checkpoint its version; when it wrote none, the current state
/// carries over. `false` when there is no state at all.
fn promote_working(
    tx: &mut dyn Tx,
    f: &FinishUpdate,
    version: i64,
    resource_count: Option<i64>,
) -> StoreResult<bool> {
    let n = tx.exec(
        "INSERT INTO stack_versions \
         (stack_id, version, state, sha256, size, resource_count, created_at) \
         SELECT ?2, ?3, state, sha256, size, COALESCE(?4, resource_count, 0), ?5 \
         FROM update_state WHERE update_id = ?1 \
         ON CONFLICT (stack_id, version) DO UPDATE SET state = excluded.state, \
           sha256 = excluded.sha256, size = excluded.size, \
           resource_count = excluded.resource_count, created_at = excluded.created_at",
        p![
            &f.update_id,
            f.stack_id,
            version,
            resource_count,
            f.ended_at
        ],
    )?;
    if n > 0 {
        return Ok(true);
    }
    let Some(base) = stack_by_id(tx, f.stack_id, false)?.and_then(|s| s.current_version) else {
        return Ok(false);
    };
    let n = tx.exec(
        "INSERT INTO stack_versions \
         (stack_id, version, state, sha256, size, resource_count, created_at) \
         SELECT stack_id, ?3, state, sha256, size, resource_count, ?4 \
         FROM stack_versions WHERE stack_id = ?1 AND version = ?2 \
         ON CONFLICT (stack_id, version) DO UPDATE SET state = excluded.state, \
           sha256 = excluded.sha256, size = excluded.size, \
           resource_count = excluded.resource_count, created_at = excluded.created_at",
        p![f.stack_id, base, version, f.ended_at],
    )?;
    Ok(n > 0)
}

/// Stores a deployment as a new version, unless an update holds the stack.
pub fn import(
    tx: &mut dyn Tx,
    u: &NewUpdate,
    state: &StateBlob,
    keep_versions: i64,
) -> StoreResult<ImportOutcome> {
    let stack = stack_by_id(tx, u.stack_id, true)?
        .ok_or_else(|| StoreError::Corrupt("imported stack vanished".into()))?;
    if let Some(holder) = running_update_of(tx, u.stack_id)? {
        return Ok(ImportOutcome::Busy(Box::new(holder)));
    }
    let version = stack.last_version + 1;
    insert(tx, u, UpdateStatus::Succeeded)?;
    tx.exec(
        "UPDATE updates SET version = ?2, base_version = ?3, started_at = ?4, \
         ended_at = ?4, resource_count = ?5 WHERE id = ?1",
        p![
            &u.id,
            version,
            stack.current_version,
            u.created_at,
            state.resource_count
        ],
    )?;
    tx.exec(
        "UPDATE stacks SET last_version = ?2, active_update = ?3, last_update_at = ?4 \
         WHERE id = ?1",
        p![u.stack_id, version, &u.id, u.created_at],
    )?;
    insert_version(tx, u.stack_id, version, state, u.created_at)?;
    set_current(tx, u.stack_id, version, keep_versions)?;
    Ok(ImportOutcome::Imported { version })
}

/// Gives an imported update the result and times it had where it ran.
pub fn set_adopted(tx: &mut dyn Tx, id: &str, r: &crate::store::AdoptedRecord) -> StoreResult<()> {
    tx.exec(
        "UPDATE updates SET status = ?2, started_at = ?3, ended_at = ?4, resource_changes = ?5 \
         WHERE id = ?1",
        p![
            id,
            r.status.as_str(),
            r.started_at,
            r.ended_at,
            r.resource_changes.as_deref()
        ],
    )?;
    Ok(())
}

/// Non-preview updates, newest first.
pub fn history(
    tx: &mut dyn Tx,
    stack_id: i64,
    offset: i64,
    limit: i64,
) -> StoreResult<Vec<UpdateRow>> {
    tx.query(
        &format!(
            "SELECT {UPDATE_COLS} FROM updates \
             WHERE stack_id = ?1 AND dry_run = 0 AND status != 'not-started' \
             ORDER BY version DESC LIMIT ?2 OFFSET ?3"
        ),
        p![stack_id, limit, offset],
    )?
    .iter()
    .map(update)
    .collect()
}

pub fn by_version(tx: &mut dyn Tx, stack_id: i64, version: i64) -> StoreResult<Option<UpdateRow>> {
    tx.one(
        &format!(
            "SELECT {UPDATE_COLS} FROM updates \
             WHERE stack_id = ?1 AND dry_run = 0 AND version = ?2 AND status != 'not-started'"
        ),
        p![stack_id, version],
    )?
    .map(|r| update(&r))
    .transpose()
}
