//! Trust policies for token exchange, and the short-lived sessions of browser logins.

use super::{Row, Tx, p};
use crate::store::access::*;
use crate::store::*;

// ------------------------------------------------------- trust policies, sessions

const POLICY_COLS: &str = "id, org, issuer, audience, rules, token_kind, team, login, \
     max_expiration, created_at";

fn policy(r: &Row) -> StoreResult<TrustPolicyRow> {
    let kind = r.text(5)?;
    Ok(TrustPolicyRow {
        id: r.text(0)?,
        org: r.text(1)?,
        issuer: r.text(2)?,
        audience: r.text(3)?,
        rules: r.text(4)?,
        token_kind: TokenKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown token kind {kind:?}")))?,
        team: r.opt_text(6)?,
        login: r.opt_text(7)?,
        max_expiration: r.i64(8)?,
        created_at: r.i64(9)?,
    })
}

pub fn create_trust_policy(tx: &mut dyn Tx, t: &TrustPolicyRow) -> StoreResult<()> {
    tx.exec(
        &format!(
            "INSERT INTO trust_policies ({POLICY_COLS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ),
        p![
            &t.id,
            &t.org,
            &t.issuer,
            &t.audience,
            &t.rules,
            t.token_kind.as_str(),
            &t.team,
            &t.login,
            t.max_expiration,
            t.created_at
        ],
    )?;
    Ok(())
}

pub fn list_trust_policies(tx: &mut dyn Tx, org: Option<&str>) -> StoreResult<Vec<TrustPolicyRow>> {
    tx.query(
        &format!(
            "SELECT {POLICY_COLS} FROM trust_policies \
             WHERE CAST(?1 AS TEXT) IS NULL OR org = ?1 ORDER BY created_at, id"
        ),
        p![org],
    )?
    .iter()
    .map(policy)
    .collect()
}

pub fn delete_trust_policy(tx: &mut dyn Tx, id: &str) -> StoreResult<bool> {
    Ok(tx.exec("DELETE FROM trust_policies WHERE id = ?1", p![id])? > 0)
}

pub fn create_login_session(tx: &mut dyn Tx, s: &LoginSession) -> StoreResult<()> {
    tx.exec(
        "INSERT INTO login_sessions (id, nonce, pkce_verifier, cli_port, cli_nonce, description, \
         created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        p![
            &s.id,
            &s.nonce,
            &s.pkce_verifier,
            s.cli_port,
            &s.cli_nonce,
            &s.description,
            s.created_at,
            s.expires_at
        ],
    )?;
    // Abandoned logins do not pile up.
    tx.exec(
        "DELETE FROM login_sessions WHERE expires_at < ?1",
        p![s.created_at],
    )?;
    Ok(())
}

pub fn take_login_session(
    tx: &mut dyn Tx,
    id: &str,
    now: i64,
) -> StoreResult<Option<LoginSession>> {
    let Some(r) = tx.one(
        &format!(
            "SELECT id, nonce, pkce_verifier, cli_port, cli_nonce, description, created_at, \
             expires_at FROM login_sessions WHERE id = ?1{}",
            tx.for_update()
        ),
        p![id],
    )?
    else {
        return Ok(None);
    };
    tx.exec("DELETE FROM login_sessions WHERE id = ?1", p![id])?;
    let s = LoginSession {
        id: r.text(0)?,
        nonce: r.text(1)?,
        pkce_verifier: r.text(2)?,
        cli_port: r.i64(3)?,
        cli_nonce: r.text(4)?,
        description: r.text(5)?,
        created_at: r.i64(6)?,
        expires_at: r.i64(7)?,
    };
    Ok((s.expires_at > now).then_some(s))
}
