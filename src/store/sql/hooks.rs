//! Webhooks, their outbox and the record of every attempt at a delivery.

use super::{Row, Tx, p};
use crate::store::integration::{AttemptRow, HookEvent, HookRow, OutboxRow, Settle};
use crate::store::*;

const HOOK_COLS: &str = "h.id, h.org, h.stack_id, h.name, h.display_name, h.payload_url, \
     h.active, h.format, h.filters, h.groups, h.secret, h.created_at";

fn list_json(v: &[String]) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("hook list: {e}")))
}

fn json_list(s: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("hook list: {e}")))
}

/// Decodes a hook from `HOOK_COLS` starting at column `at`.
fn hook_at(r: &mut Row, at: usize) -> StoreResult<HookRow> {
    Ok(HookRow {
        id: r.i64(at)?,
        org: r.text(at + 1)?,
        stack_id: r.opt_i64(at + 2)?,
        name: r.text(at + 3)?,
        display_name: r.text(at + 4)?,
        payload_url: r.text(at + 5)?,
        active: r.bool(at + 6)?,
        format: r.text(at + 7)?,
        filters: json_list(&r.text(at + 8)?)?,
        groups: json_list(&r.text(at + 9)?)?,
        secret: r.opt_blob(at + 10)?,
        created_at: r.i64(at + 11)?,
    })
}

fn hooks_where(
    tx: &mut dyn Tx,
    clause: &str,
    params: &[super::Param<'_>],
) -> StoreResult<Vec<HookRow>> {
    let sql = format!("SELECT {HOOK_COLS} FROM webhooks h WHERE {clause} ORDER BY h.id");
    tx.query(&sql, params)?
        .into_iter()
        .map(|mut r| hook_at(&mut r, 0))
        .collect()
}

pub fn get(
    tx: &mut dyn Tx,
    org: &str,
    stack_id: Option<i64>,
    name: &str,
) -> StoreResult<Option<HookRow>> {
    Ok(hooks_where(
        tx,
        "h.org = ?1 AND COALESCE(h.stack_id, 0) = ?2 AND h.name = ?3",
        p![org, stack_id.unwrap_or(0), name],
    )?
    .into_iter()
    .next())
}

pub fn list(tx: &mut dyn Tx, org: &str, stack_id: Option<i64>) -> StoreResult<Vec<HookRow>> {
    hooks_where(
        tx,
        "h.org = ?1 AND COALESCE(h.stack_id, 0) = ?2",
        p![org, stack_id.unwrap_or(0)],
    )
}

pub fn create(tx: &mut dyn Tx, h: &HookRow) -> StoreResult<HookRow> {
    if get(tx, &h.org, h.stack_id, &h.name)?.is_some() {
        return Err(StoreError::Conflict(format!("webhook {} exists", h.name)));
    }
    let (filters, groups) = (list_json(&h.filters)?, list_json(&h.groups)?);
    tx.exec(
        "INSERT INTO webhooks (org, stack_id, name, display_name, payload_url, active, format, \
         filters, groups, secret, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        p![
            &h.org,
            h.stack_id,
            &h.name,
            &h.display_name,
            &h.payload_url,
            h.active,
            &h.format,
            &filters,
            &groups,
            &h.secret,
            h.created_at
        ],
    )?;
    get(tx, &h.org, h.stack_id, &h.name)?
        .ok_or_else(|| StoreError::Corrupt("created webhook vanished".into()))
}

pub fn update(tx: &mut dyn Tx, h: &HookRow) -> StoreResult<bool> {
    let (filters, groups) = (list_json(&h.filters)?, list_json(&h.groups)?);
    let n = tx.exec(
        "UPDATE webhooks SET display_name = ?2, payload_url = ?3, active = ?4, format = ?5, \
         filters = ?6, groups = ?7, secret = ?8 WHERE id = ?1",
        p![
            h.id,
            &h.display_name,
            &h.payload_url,
            h.active,
            &h.format,
            &filters,
            &groups,
            &h.secret
        ],
    )?;
    Ok(n > 0)
}

pub fn delete(tx: &mut dyn Tx, id: i64) -> StoreResult<bool> {
    // Explicit rather than by cascade: a database opened without foreign keys enforced must
    // not keep deliveries for a hook that is gone.
    tx.exec("DELETE FROM webhook_attempts WHERE hook_id = ?1", p![id])?;
    tx.exec("DELETE FROM webhook_outbox WHERE hook_id = ?1", p![id])?;
    Ok(tx.exec("DELETE FROM webhooks WHERE id = ?1", p![id])? > 0)
}

pub fn enqueue(
    tx: &mut dyn Tx,
    hook_id: i64,
    kind: &str,
    payload: &str,
    now: i64,
) -> StoreResult<i64> {
    tx.one(
        "INSERT INTO webhook_outbox (hook_id, kind, payload, created_at, state, due_at) \
         VALUES (?1, ?2, ?3, ?4, 'pending', ?4) RETURNING id",
        p![hook_id, kind, payload, now],
    )?
    .ok_or_else(|| StoreError::Corrupt("insert returned no id".into()))?
    .i64(0)
}

/// Fans an event out to the hooks that want it (inside the change's transaction).
pub fn raise(tx: &mut dyn Tx, e: &HookEvent) -> StoreResult<()> {
    let hooks = hooks_where(
        tx,
        "h.org = ?1 AND h.active = 1 AND (h.stack_id IS NULL OR h.stack_id = ?2)",
        p![&e.org, e.stack_id.unwrap_or(-1)],
    )?;
    for h in hooks.iter().filter(|h| h.wants(&e.filter, &e.group)) {
        enqueue(tx, h.id, &e.kind, &e.payload, e.at)?;
    }
    Ok(())
}

pub fn claim(
    tx: &mut dyn Tx,
    now: i64,
    hold_until: i64,
    limit: i64,
    only: Option<i64>,
) -> StoreResult<Vec<OutboxRow>> {
    let lock = tx.for_update();
    let sql = format!(
        "SELECT o.id, o.kind, o.payload, o.created_at, o.attempts, {HOOK_COLS} \
         FROM webhook_outbox o JOIN webhooks h ON h.id = o.hook_id \
         WHERE o.state = 'pending' AND (CAST(?3 AS BIGINT) IS NULL OR o.id = ?3) \
           AND (CAST(?3 AS BIGINT) IS NOT NULL OR o.due_at <= ?1) \
         ORDER BY o.due_at, o.id LIMIT ?2{lock}"
    );
    let rows = tx.query(&sql, p![now, limit, only])?;
    let mut out = Vec::with_capacity(rows.len());
    for mut r in rows {
        let row = OutboxRow {
            id: r.i64(0)?,
            kind: r.text(1)?,
            payload: r.text(2)?,
            created_at: r.i64(3)?,
            attempts: r.i64(4)?,
            hook: hook_at(&mut r, 5)?,
        };
        tx.exec(
            "UPDATE webhook_outbox SET due_at = ?2, attempts = attempts + 1 WHERE id = ?1",
            p![row.id, hold_until],
        )?;
        out.push(row);
    }
    Ok(out)
}

pub fn record(tx: &mut dyn Tx, a: &AttemptRow, settle: Settle) -> StoreResult<()> {
    // The hook may have been deleted while the attempt was in flight: nothing to record.
    if tx.count("SELECT COUNT(*) FROM webhooks WHERE id = ?1", p![a.hook_id])? == 0 {
        return Ok(());
    }
    tx.exec(
        "INSERT INTO webhook_attempts (id, outbox_id, hook_id, at, kind, payload, request_url, \
         request_headers, duration_ms, response_code, response_headers, response_body) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        p![
            &a.id,
            a.outbox_id,
            a.hook_id,
            a.at,
            &a.kind,
            &a.payload,
            &a.request_url,
            &a.request_headers,
            a.duration_ms,
            a.response_code,
            &a.response_headers,
            &a.response_body
        ],
    )?;
    let (state, due) = match settle {
        Settle::Delivered => ("delivered", a.at),
        Settle::RetryAt(t) => ("pending", t),
        Settle::Failed => ("failed", a.at),
    };
    tx.exec(
        "UPDATE webhook_outbox SET state = ?2, due_at = ?3 WHERE id = ?1",
        p![a.outbox_id, state, due],
    )?;
    Ok(())
}

const ATTEMPT_COLS: &str = "id, outbox_id, hook_id, at, kind, payload, request_url, \
     request_headers, duration_ms, response_code, response_headers, response_body";

fn attempt(r: &Row) -> StoreResult<AttemptRow> {
    Ok(AttemptRow {
        id: r.text(0)?,
        outbox_id: r.i64(1)?,
        hook_id: r.i64(2)?,
        at: r.i64(3)?,
        kind: r.text(4)?,
        payload: r.text(5)?,
        request_url: r.text(6)?,
        request_headers: r.text(7)?,
        duration_ms: r.opt_i64(8)?.unwrap_or(0),
        response_code: r.opt_i64(9)?,
        response_headers: r.opt_text(10)?.unwrap_or_default(),
        response_body: r.opt_text(11)?.unwrap_or_default(),
    })
}

pub fn attempts(tx: &mut dyn Tx, hook_id: i64, limit: i64) -> StoreResult<Vec<AttemptRow>> {
    let sql = format!(
        "SELECT {ATTEMPT_COLS} FROM webhook_attempts WHERE hook_id = ?1 \
         ORDER BY seq DESC LIMIT ?2"
    );
    tx.query(&sql, p![hook_id, limit])?
        .iter()
        .map(attempt)
        .collect()
}

pub fn attempt_by_id(tx: &mut dyn Tx, hook_id: i64, id: &str) -> StoreResult<Option<AttemptRow>> {
    let sql = format!("SELECT {ATTEMPT_COLS} FROM webhook_attempts WHERE hook_id = ?1 AND id = ?2");
    tx.one(&sql, p![hook_id, id])?
        .map(|r| attempt(&r))
        .transpose()
}

pub fn next_due(tx: &mut dyn Tx) -> StoreResult<Option<i64>> {
    match tx.one(
        "SELECT MIN(due_at) FROM webhook_outbox WHERE state = 'pending'",
        &[],
    )? {
        Some(r) => r.opt_i64(0),
        None => Ok(None),
    }
}

pub fn prune(tx: &mut dyn Tx, before: i64) -> StoreResult<i64> {
    let attempts = tx.exec("DELETE FROM webhook_attempts WHERE at < ?1", p![before])?;
    let settled = tx.exec(
        "DELETE FROM webhook_outbox WHERE state <> 'pending' AND due_at < ?1",
        p![before],
    )?;
    Ok(i64::try_from(attempts + settled).unwrap_or(i64::MAX))
}
