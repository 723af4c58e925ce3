//! Managed access tokens: only their hashes are stored.

use super::{Row, Tx, p};
use crate::store::*;

const TOKEN_COLS: &str =
    "id, user_name, description, created_at, expires_at, last_used_at, revoked_at";

fn token(r: &Row) -> StoreResult<TokenRow> {
    Ok(TokenRow {
        id: r.text(0)?,
        user: r.text(1)?,
        description: r.text(2)?,
        created_at: r.i64(3)?,
        expires_at: r.opt_i64(4)?,
        last_used_at: r.opt_i64(5)?,
        revoked_at: r.opt_i64(6)?,
    })
}

pub fn create(tx: &mut dyn Tx, t: &NewToken) -> StoreResult<()> {
    tx.exec(
        "INSERT INTO tokens (id, user_name, description, hash, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        p![
            &t.id,
            &t.user,
            &t.description,
            &t.hash,
            t.created_at,
            t.expires_at
        ],
    )?;
    Ok(())
}

pub fn find(tx: &mut dyn Tx, hash: &[u8]) -> StoreResult<Option<TokenRow>> {
    tx.one(
        &format!("SELECT {TOKEN_COLS} FROM tokens WHERE hash = ?1"),
        p![hash],
    )?
    .map(|r| token(&r))
    .transpose()
}

pub fn touch(tx: &mut dyn Tx, id: &str, now: i64) -> StoreResult<()> {
    tx.exec(
        "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
        p![id, now],
    )?;
    Ok(())
}

pub fn list(tx: &mut dyn Tx, user: Option<&str>) -> StoreResult<Vec<TokenRow>> {
    tx.query(
        &format!(
            "SELECT {TOKEN_COLS} FROM tokens \
             WHERE (CAST(?1 AS TEXT) IS NULL OR user_name = ?1) ORDER BY created_at, id"
        ),
        p![user],
    )?
    .iter()
    .map(token)
    .collect()
}

/// Revokes the selected tokens that are not revoked yet; returns their ids.
pub fn revoke(tx: &mut dyn Tx, which: &TokenSelector, now: i64) -> StoreResult<Vec<String>> {
    let (column, value) = match which {
        TokenSelector::Id(id) => ("id", id),
        TokenSelector::User(u) => ("user_name", u),
    };
    let ids: Vec<String> = tx
        .query(
            &format!(
                "SELECT id FROM tokens WHERE {column} = ?1 AND revoked_at IS NULL ORDER BY id"
            ),
            p![value],
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
