//! The audit log: appended in the transaction of the change it records, listed newest first.

use super::{Param, Row, Tx, p};
use crate::store::integration::{AuditEventRow, AuditQuery, NewAuditEvent};
use crate::store::*;

const COLS: &str = "id, org, at, event, description, user_login, user_name, source_ip, \
     token_id, token_name, req_org_admin, req_stack_admin, auth_failure";

fn row(r: &Row) -> StoreResult<AuditEventRow> {
    Ok(AuditEventRow {
        id: r.i64(0)?,
        event: NewAuditEvent {
            org: r.opt_text(1)?,
            at: r.i64(2)?,
            event: r.text(3)?,
            description: r.text(4)?,
            user_login: r.text(5)?,
            user_name: r.text(6)?,
            source_ip: r.text(7)?,
            token_id: r.opt_text(8)?,
            token_name: r.opt_text(9)?,
            req_org_admin: r.bool(10)?,
            req_stack_admin: r.bool(11)?,
            auth_failure: r.bool(12)?,
        },
    })
}

pub fn append(tx: &mut dyn Tx, events: &[NewAuditEvent]) -> StoreResult<()> {
    for e in events {
        tx.exec(
            "INSERT INTO audit_events (org, at, event, description, user_login, user_name, \
             source_ip, token_id, token_name, req_org_admin, req_stack_admin, auth_failure) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            p![
                &e.org,
                e.at,
                &e.event,
                &e.description,
                &e.user_login,
                &e.user_name,
                &e.source_ip,
                &e.token_id,
                &e.token_name,
                e.req_org_admin,
                e.req_stack_admin,
                e.auth_failure
            ],
        )?;
    }
    Ok(())
}

pub fn list(tx: &mut dyn Tx, q: &AuditQuery) -> StoreResult<Vec<AuditEventRow>> {
    // Absent filters travel as NULL so that one statement serves every combination.
    let sql = format!(
        "SELECT {COLS} FROM audit_events \
         WHERE (CAST(?1 AS TEXT) IS NULL OR org = ?1) \
           AND (CAST(?2 AS BIGINT) IS NULL OR at >= ?2) \
           AND (CAST(?3 AS BIGINT) IS NULL OR at <= ?3) \
           AND (CAST(?4 AS TEXT) IS NULL OR event = ?4) \
           AND (CAST(?5 AS TEXT) IS NULL OR user_login = ?5) \
           AND (CAST(?6 AS BIGINT) IS NULL OR id < ?6) \
         ORDER BY id DESC LIMIT ?7"
    );
    let params: &[Param<'_>] = p![
        &q.org,
        q.since,
        q.until,
        &q.event,
        &q.user,
        q.before_id,
        q.limit.max(0)
    ];
    tx.query(&sql, params)?.iter().map(row).collect()
}

pub fn prune(tx: &mut dyn Tx, before: i64) -> StoreResult<i64> {
    let n = tx.exec("DELETE FROM audit_events WHERE at < ?1", p![before])?;
    Ok(i64::try_from(n).unwrap_or(i64::MAX))
}
