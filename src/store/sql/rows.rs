//! The rows read most: each column list is spelled here once, next to its decoder.

use super::{Row, Tx, p};
use crate::store::*;

pub const STACK_COLS: &str = "s.id, s.org, s.project, s.name, s.tags, s.created_at, \
     s.last_version, s.current_version, s.active_update, s.resource_count, s.last_update_at, \
     s.state_size, s.created_by";

pub fn stack(r: &Row) -> StoreResult<StackRow> {
    let tags = r.text(4)?;
    Ok(StackRow {
        id: r.i64(0)?,
        key: StackKey {
            org: r.text(1)?,
            project: r.text(2)?,
            stack: r.text(3)?,
        },
        tags: serde_json::from_str(&tags)
            .map_err(|e| StoreError::Corrupt(format!("stack tags: {e}")))?,
        created_at: r.i64(5)?,
        last_version: r.i64(6)?,
        current_version: r.opt_i64(7)?,
        active_update: r.opt_text(8)?,
        resource_count: r.i64(9)?,
        last_update_at: r.opt_i64(10)?,
        state_size: r.i64(11)?,
        created_by: r.opt_text(12)?,
    })
}

pub const UPDATE_COLS: &str = "id, stack_id, kind, dry_run, status, version, base_version, \
     created_at, started_at, ended_at, lease_expires, journal_version, author, message, \
     environment, config, resource_changes, resource_count";

pub fn update(r: &Row) -> StoreResult<UpdateRow> {
    let status = r.text(4)?;
    Ok(UpdateRow {
        id: r.text(0)?,
        stack_id: r.i64(1)?,
        kind: r.text(2)?,
        dry_run: r.bool(3)?,
        status: UpdateStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown update status {status:?}")))?,
        version: r.i64(5)?,
        base_version: r.opt_i64(6)?,
        created_at: r.i64(7)?,
        started_at: r.opt_i64(8)?,
        ended_at: r.opt_i64(9)?,
        lease_expires: r.opt_i64(10)?,
        journal_version: r.i64(11)?,
        author: r.text(12)?,
        message: r.text(13)?,
        environment: r.text(14)?,
        config: r.text(15)?,
        resource_changes: r.opt_text(16)?,
        resource_count: r.opt_i64(17)?,
    })
}

pub fn tags_json(tags: &Tags) -> StoreResult<String> {
    serde_json::to_string(tags).map_err(StoreError::backend)
}

/// The stack row with this id; `lock` locks it for the rest of the transaction.
pub fn stack_by_id(tx: &mut dyn Tx, id: i64, lock: bool) -> StoreResult<Option<StackRow>> {
    let sql = format!(
        "SELECT {STACK_COLS} FROM stacks s WHERE s.id = ?1{}",
        if lock { tx.for_update() } else { "" }
    );
    tx.one(&sql, p![id])?.map(|r| stack(&r)).transpose()
}

pub fn stack_by_key(tx: &mut dyn Tx, key: &StackKey) -> StoreResult<Option<StackRow>> {
    tx.one(
        &format!(
            "SELECT {STACK_COLS} FROM stacks s WHERE s.org = ?1 AND s.project = ?2 AND s.name = ?3"
        ),
        p![&key.org, &key.project, &key.stack],
    )?
    .map(|r| stack(&r))
    .transpose()
}

/// The update with this id; `lock` locks it for the rest of the transaction.
pub fn update_by_id(tx: &mut dyn Tx, id: &str, lock: bool) -> StoreResult<Option<UpdateRow>> {
    let sql = format!(
        "SELECT {UPDATE_COLS} FROM updates WHERE id = ?1{}",
        if lock { tx.for_update() } else { "" }
    );
    tx.one(&sql, p![id])?.map(|r| update(&r)).transpose()
}

/// Running non-preview updates and their live leases (the lock's partial index serves it).
pub fn running_updates(tx: &mut dyn Tx, now: i64) -> StoreResult<crate::store::RunningUpdates> {
    let row = tx.one(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN lease_expires >= ?1 THEN 1 ELSE 0 END), 0) \
         FROM updates WHERE status = 'running' AND dry_run = 0",
        p![now],
    )?;
    Ok(match row {
        Some(r) => crate::store::RunningUpdates {
            running: r.i64(0)?,
            live_leases: r.i64(1)?,
        },
        None => Default::default(),
    })
}

/// The stack's running non-preview update (its lease may have expired).
pub fn running_update_of(tx: &mut dyn Tx, stack_id: i64) -> StoreResult<Option<UpdateRow>> {
    tx.one(
        &format!(
            "SELECT {UPDATE_COLS} FROM updates \
             WHERE stack_id = ?1 AND dry_run = 0 AND status = 'running'"
        ),
        p![stack_id],
    )?
    .map(|r| update(&r))
    .transpose()
}
