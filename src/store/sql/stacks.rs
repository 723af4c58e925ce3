//! Stacks: names, tags, renames, deletion, secrets keys, and the instance's metadata.

use super::rows::{STACK_COLS, running_update_of, stack, stack_by_id, stack_by_key, tags_json};
use super::{Dialect, Tx, p};
use crate::store::*;

pub fn meta_get(tx: &mut dyn Tx, key: &str) -> StoreResult<Option<Vec<u8>>> {
    match tx.one("SELECT value FROM meta WHERE key = ?1", p![key])? {
        Some(mut r) => Ok(Some(r.blob(0)?)),
        None => Ok(None),
    }
}

pub fn meta_put(tx: &mut dyn Tx, key: &str, value: &[u8]) -> StoreResult<()> {
    tx.exec(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        p![key, value],
    )?;
    Ok(())
}

pub fn create(tx: &mut dyn Tx, s: &NewStack) -> StoreResult<StackRow> {
    if stack_by_key(tx, &s.key)?.is_some() {
        return Err(StoreError::Conflict(format!("stack {} exists", s.key)));
    }
    let tags = tags_json(&s.tags)?;
    let id = tx
        .one(
            "INSERT INTO stacks (org, project, name, tags, created_at, wrapped_key, created_by) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
            p![
                &s.key.org,
                &s.key.project,
                &s.key.stack,
                &tags,
                s.created_at,
                &s.wrapped_key,
                &s.created_by
            ],
        )?
        .ok_or_else(|| StoreError::Corrupt("insert returned no id".into()))?
        .i64(0)?;
    // A name that is live again no longer redirects to the stack that once had it.
    tx.exec(
        "DELETE FROM stack_former_names WHERE org = ?1 AND project = ?2 AND name = ?3",
        p![&s.key.org, &s.key.project, &s.key.stack],
    )?;
    for team in &s.teams {
        super::teams::grant(tx, id, &Grantee::Team(team.clone()), StackPermission::Write)?;
    }
    if let Some(state) = &s.initial_state {
        super::state::insert_version(tx, id, 0, state, s.created_at)?;
        super::state::set_current(tx, id, 0, i64::MAX)?;
    }
    stack_by_id(tx, id, false)?.ok_or_else(|| StoreError::Corrupt("created stack vanished".into()))
}

/// The stack that has this name, or else the one that had it before a rename.
pub fn by_key_or_former(tx: &mut dyn Tx, key: &StackKey) -> StoreResult<Option<StackRow>> {
    if let Some(s) = stack_by_key(tx, key)? {
        return Ok(Some(s));
    }
    tx.one(
        &format!(
            "SELECT {STACK_COLS} FROM stack_former_names f JOIN stacks s ON s.id = f.stack_id \
             WHERE f.org = ?1 AND f.project = ?2 AND f.name = ?3"
        ),
        p![&key.org, &key.project, &key.stack],
    )?
    .map(|r| stack(&r))
    .transpose()
}

pub fn list(tx: &mut dyn Tx, q: &StackQuery) -> StoreResult<Vec<StackRow>> {
    // Organizations travel as one JSON array, tags are stored as a JSON object: the two
    // databases spell their JSON functions differently.
    let in_list = |expr: &str, n: usize| match tx.dialect() {
        Dialect::Sqlite => format!("{expr} IN (SELECT value FROM json_each(?{n}))"),
        Dialect::Postgres => {
            format!("{expr} IN (SELECT jsonb_array_elements_text(CAST(?{n} AS TEXT)::jsonb))")
        }
    };
    let tag_match = match tx.dialect() {
        Dialect::Sqlite => {
            "EXISTS (SELECT 1 FROM json_each(s.tags) WHERE key = ?4 \
             AND (CAST(?5 AS TEXT) IS NULL OR value = ?5))"
        }
        Dialect::Postgres => {
            "EXISTS (SELECT 1 FROM jsonb_each_text(s.tags::jsonb) t WHERE t.key = ?4 \
             AND (CAST(?5 AS TEXT) IS NULL OR t.value = ?5))"
        }
    };
    let orgs_in = in_list("s.org", 1);
    // Visible: a whole organization, a stack the user created, or a grant of at least read
    // to the user or one of their teams (teams named `org/team`).
    let visible = format!(
        "(CAST(?7 AS TEXT) IS NULL OR {} OR s.created_by = ?8 OR EXISTS (\
           SELECT 1 FROM stack_grants g WHERE g.stack_id = s.id AND g.permission >= 101 \
           AND ((g.kind = 'user' AND g.grantee = ?8) OR (g.kind = 'team' AND {}))))",
        in_list("s.org", 7),
        in_list("(s.org || '/' || g.grantee)", 9)
    );
    let json = |v: &Vec<String>| serde_json::to_string(v).map_err(StoreError::backend);
    let (vis_orgs, vis_login, vis_teams) = match &q.visible_to {
        Some(v) => (Some(json(&v.orgs)?), v.login.clone(), Some(json(&v.teams)?)),
        None => (None, None, None),
    };
    let orgs = q
        .orgs
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(StoreError::backend)?;
    let sql = format!(
        "SELECT {STACK_COLS} FROM stacks s \
         WHERE (CAST(?1 AS TEXT) IS NULL OR {orgs_in}) \
           AND (CAST(?2 AS TEXT) IS NULL OR s.project = ?2) \
           AND s.id > ?3 \
           AND (CAST(?4 AS TEXT) IS NULL OR {tag_match}) \
           AND {visible} \
         ORDER BY s.id LIMIT ?6"
    );
    tx.query(
        &sql,
        p![
            orgs.as_deref(),
            q.project.as_deref(),
            q.after_id.unwrap_or(0),
            q.tag_name.as_deref(),
            q.tag_value.as_deref(),
            q.limit,
            vis_orgs.as_deref(),
            vis_login.as_deref(),
            vis_teams.as_deref()
        ],
    )?
    .iter()
    .map(stack)
    .collect()
}

pub fn project_exists(tx: &mut dyn Tx, org: &str, project: &str) -> StoreResult<bool> {
    Ok(tx.count(
        "SELECT COUNT(*) FROM (SELECT 1 FROM stacks WHERE org = ?1 AND project = ?2 LIMIT 1) x",
        p![org, project],
    )? > 0)
}

/// Why `guard` refuses a change to the stack now, if it does. Runs inside the change's own
/// transaction with the stack row locked, so no update can start between the check and the
/// change.
fn refuse_change<T>(
    tx: &mut dyn Tx,
    stack_id: i64,
    guard: StackGuard,
) -> StoreResult<Option<Guarded<T>>> {
    let Some(s) = stack_by_id(tx, stack_id, true)? else {
        return Ok(None);
    };
    if guard.force {
        return Ok(None);
    }
    if let Some(u) = running_update_of(tx, stack_id)?
        && u.lease_live(guard.now)
    {
        return Ok(Some(Guarded::Busy(Box::new(u))));
    }
    if guard.require_empty && s.resource_count > 0 {
        return Ok(Some(Guarded::HasResources));
    }
    Ok(None)
}

pub fn delete(tx: &mut dyn Tx, stack_id: i64, guard: StackGuard) -> StoreResult<Guarded<bool>> {
    if let Some(refused) = refuse_change(tx, stack_id, guard)? {
        return Ok(refused);
    }
    let n = tx.exec("DELETE FROM stacks WHERE id = ?1", p![stack_id])?;
    Ok(Guarded::Done(n > 0))
}

pub fn set_tags(tx: &mut dyn Tx, stack_id: i64, tags: &Tags) -> StoreResult<()> {
    let tags = tags_json(tags)?;
    tx.exec(
        "UPDATE stacks SET tags = ?2 WHERE id = ?1",
        p![stack_id, &tags],
    )?;
    Ok(())
}

pub fn rename(
    tx: &mut dyn Tx,
    stack_id: i64,
    to: &StackKey,
    guard: StackGuard,
) -> StoreResult<Guarded<StackRow>> {
    if let Some(refused) = refuse_change(tx, stack_id, guard)? {
        return Ok(refused);
    }
    let Some(old) = stack_by_id(tx, stack_id, false)? else {
        return Err(StoreError::Corrupt("renamed stack vanished".into()));
    };
    if &old.key == to {
        return Ok(Guarded::Done(old));
    }
    if stack_by_key(tx, to)?.is_some() {
        return Err(StoreError::Conflict(format!("stack {to} exists")));
    }
    tx.exec(
        "DELETE FROM stack_former_names WHERE org = ?1 AND project = ?2 AND name = ?3",
        p![&old.key.org, &old.key.project, &old.key.stack],
    )?;
    tx.exec(
        "INSERT INTO stack_former_names (org, project, name, stack_id, renamed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        p![
            &old.key.org,
            &old.key.project,
            &old.key.stack,
            stack_id,
            guard.now
        ],
    )?;
    tx.exec(
        "DELETE FROM stack_former_names WHERE org = ?1 AND project = ?2 AND name = ?3",
        p![&to.org, &to.project, &to.stack],
    )?;
    tx.exec(
        "UPDATE stacks SET org = ?2, project = ?3, name = ?4 WHERE id = ?1",
        p![stack_id, &to.org, &to.project, &to.stack],
    )?;
    stack_by_id(tx, stack_id, false)?
        .map(Guarded::Done)
        .ok_or_else(|| StoreError::Corrupt("renamed stack vanished".into()))
}

pub fn wrapped_key(tx: &mut dyn Tx, stack_id: i64) -> StoreResult<Option<Vec<u8>>> {
    match tx.one("SELECT wrapped_key FROM stacks WHERE id = ?1", p![stack_id])? {
        Some(mut r) => Ok(Some(r.blob(0)?)),
        None => Ok(None),
    }
}

/// The id and wrapped key of the stack that has, or had before a rename, this name.
pub fn secrets_key(tx: &mut dyn Tx, key: &StackKey) -> StoreResult<Option<(i64, Vec<u8>)>> {
    let current = tx.one(
        "SELECT id, wrapped_key FROM stacks WHERE org = ?1 AND project = ?2 AND name = ?3",
        p![&key.org, &key.project, &key.stack],
    )?;
    let row = match current {
        Some(r) => Some(r),
        None => tx.one(
            "SELECT s.id, s.wrapped_key FROM stack_former_names f \
             JOIN stacks s ON s.id = f.stack_id \
             WHERE f.org = ?1 AND f.project = ?2 AND f.name = ?3",
            p![&key.org, &key.project, &key.stack],
        )?,
    };
    match row {
        Some(mut r) => Ok(Some((r.i64(0)?, r.blob(1)?))),
        None => Ok(None),
    }
}

pub fn wrapped_keys(tx: &mut dyn Tx) -> StoreResult<Vec<WrappedKey>> {
    tx.query(
        "SELECT id, org, project, name, wrapped_key FROM stacks ORDER BY id",
        &[],
    )?
    .into_iter()
    .map(|mut r| {
        Ok(WrappedKey {
            stack_id: r.i64(0)?,
            key: StackKey {
                org: r.text(1)?,
                project: r.text(2)?,
                stack: r.text(3)?,
            },
            wrapped: r.blob(4)?,
        })
    })
    .collect()
}

/// Replaces every stack's wrapped key and the master-key canary together.
pub fn replace_wrapped_keys(
    tx: &mut dyn Tx,
    keys: &[(i64, Vec<u8>)],
    canary: &[u8],
) -> StoreResult<()> {
    for (id, wrapped) in keys {
        let n = tx.exec(
            "UPDATE stacks SET wrapped_key = ?2 WHERE id = ?1",
            p![*id, wrapped],
        )?;
        if n != 1 {
            return Err(StoreError::Conflict(format!(
                "stack {id} changed during the key rotation"
            )));
        }
    }
    let remaining = tx.count("SELECT COUNT(*) FROM stacks", &[])?;
    if remaining as usize != keys.len() {
        return Err(StoreError::Conflict(
            "stacks were created during the key rotation".into(),
        ));
    }
    tx.exec(
        "UPDATE meta SET value = ?1 WHERE key = 'master_key_canary'",
        p![canary],
    )?;
    Ok(())
}
