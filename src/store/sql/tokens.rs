//! Access tokens of every kind: only their hashes are stored.

use super::{Param, Row, Tx, p};
use crate::store::access::TokenFilter;
use crate::store::*;

pub const TOKEN_COLS: &str = "id, kind, user_name, org, team, name, description, admin, role_id, \
     created_by, created_at, expires_at, last_used_at, revoked_at, upstream";

pub fn token(mut r: Row) -> StoreResult<TokenRow> {
    let kind = r.text(1)?;
    Ok(TokenRow {
        id: r.text(0)?,
        kind: TokenKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown token kind {kind:?}")))?,
        user: r.text(2)?,
        org: r.opt_text(3)?,
        team: r.opt_text(4)?,
        name: r.text(5)?,
        description: r.text(6)?,
        admin: r.bool(7)?,
        role_id: r.opt_text(8)?,
        created_by: r.text(9)?,
        created_at: r.i64(10)?,
        expires_at: r.opt_i64(11)?,
        last_used_at: r.opt_i64(12)?,
        revoked_at: r.opt_i64(13)?,
        upstream: r.opt_blob(14)?,
    })
}

pub fn create(tx: &mut dyn Tx, t: &NewToken) -> StoreResult<()> {
    if t.kind != TokenKind::Personal && t.kind != TokenKind::Refresh && !t.name.is_empty() {
        // Machine tokens are named, and a name is never reused in its organization.
        let taken = tx.count(
            "SELECT COUNT(*) FROM tokens WHERE kind = ?1 AND org = ?2 \
             AND COALESCE(team, '') = COALESCE(CAST(?3 AS TEXT), '') AND name = ?4",
            p![t.kind.as_str(), &t.org, &t.team, &t.name],
        )?;
        if taken > 0 {
            return Err(StoreError::Conflict(format!(
                "a token named {:?} exists",
                t.name
            )));
        }
    }
    tx.exec(
        "INSERT INTO tokens (id, kind, user_name, org, team, name, description, admin, role_id, \
         created_by, hash, created_at, expires_at, upstream) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        p![
            &t.id,
            t.kind.as_str(),
            &t.user,
            &t.org,
            &t.team,
            &t.name,
            &t.description,
            t.admin,
            &t.role_id,
            &t.created_by,
            &t.hash,
            t.created_at,
            t.expires_at,
            &t.upstream
        ],
    )?;
    Ok(())
}

pub fn find(tx: &mut dyn Tx, hash: &[u8]) -> StoreResult<Option<TokenRow>> {
    tx.one(
        &format!("SELECT {TOKEN_COLS} FROM tokens WHERE hash = ?1"),
        p![hash],
    )?
    .map(token)
    .transpose()
}

pub fn touch(tx: &mut dyn Tx, id: &str, now: i64) -> StoreResult<()> {
    tx.exec(
        "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
        p![id, now],
    )?;
    Ok(())
}

/// Tokens of a user (`pbackend tokens list [--user]`): every kind but refresh tokens.
pub fn list(tx: &mut dyn Tx, user: Option<&str>) -> StoreResult<Vec<TokenRow>> {
    tx.query(
        &format!(
            "SELECT {TOKEN_COLS} FROM tokens \
             WHERE (CAST(?1 AS TEXT) IS NULL OR user_name = ?1) AND kind <> 'refresh' \
             ORDER BY created_at, id"
        ),
        p![user],
    )?
    .into_iter()
    .map(token)
    .collect()
}

pub fn list_filtered(tx: &mut dyn Tx, f: &TokenFilter) -> StoreResult<Vec<TokenRow>> {
    let kind = f.kind.map(TokenKind::as_str);
    tx.query(
        &format!(
            "SELECT {TOKEN_COLS} FROM tokens \
             WHERE (CAST(?1 AS TEXT) IS NULL OR kind = ?1) \
               AND (CAST(?2 AS TEXT) IS NULL OR user_name = ?2) \
               AND (CAST(?3 AS TEXT) IS NULL OR org = ?3) \
               AND (CAST(?4 AS TEXT) IS NULL OR team = ?4) \
               AND (?5 = 1 OR revoked_at IS NULL) \
             ORDER BY created_at, id"
        ),
        p![kind, &f.user, &f.org, &f.team, f.include_revoked],
    )?
    .into_iter()
    .map(token)
    .collect()
}

/// Revokes the selected tokens that are not revoked yet; returns their ids.
pub fn revoke(tx: &mut dyn Tx, which: &TokenSelector, now: i64) -> StoreResult<Vec<String>> {
    let (filter, params): (&str, Vec<Param<'_>>) = match which {
        TokenSelector::Id(id) => ("id = ?1", vec![id.into()]),
        TokenSelector::User(u) => (
            "user_name = ?1 AND kind IN ('personal', 'refresh')",
            vec![u.into()],
        ),
        TokenSelector::Team { org, team } => (
            "kind = 'team' AND org = ?1 AND team = ?2",
            vec![org.into(), team.into()],
        ),
    };
    let ids: Vec<String> = tx
        .query(
            &format!("SELECT id FROM tokens WHERE {filter} AND revoked_at IS NULL ORDER BY id"),
            &params,
        )?
        .iter()
        .map(|r| r.text(0))
        .collect::<StoreResult<_>>()?;
    for id in &ids {
        tx.exec(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1",
            p![id, now],
        )?;
    }
    Ok(ids)
}
