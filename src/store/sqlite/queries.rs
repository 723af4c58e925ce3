//! The SQL behind each [`Store`] method. Every method is one transaction (see `mod.rs` for
//! which thread runs it).

use rusqlite::{Connection, OptionalExtension, Row, params};
use subtle::ConstantTimeEq;

use super::{SqliteStore, maintenance as m, map_err};
use crate::store::*;

const STACK_COLS: &str = "s.id, s.org, s.project, s.name, s.tags, s.created_at, s.last_version, \
     s.current_version, s.active_update, s.resource_count, s.last_update_at, s.state_size";

const UPDATE_COLS: &str = "id, stack_id, kind, dry_run, status, version, base_version, created_at, \
     started_at, ended_at, lease_expires, journal_version, author, message, environment, config, \
     resource_changes, resource_count";

/// `execute` through the connection's statement cache (the hot paths run the same few
/// statements thousands of times per update; preparing each anew showed in profiles).
fn exec<P: rusqlite::Params>(tx: &Connection, sql: &str, p: P) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(p)
}

/// `query_row` through the statement cache.
fn query_row<T, P, F>(tx: &Connection, sql: &str, p: P, f: F) -> rusqlite::Result<T>
where
    P: rusqlite::Params,
    F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
{
    tx.prepare_cached(sql)?.query_row(p, f)
}

fn conversion_err(
    idx: usize,
    e: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
}

fn stack_from_row(r: &Row<'_>) -> rusqlite::Result<StackRow> {
    let tags: String = r.get(4)?;
    Ok(StackRow {
        id: r.get(0)?,
        key: StackKey {
            org: r.get(1)?,
            project: r.get(2)?,
            stack: r.get(3)?,
        },
        tags: serde_json::from_str(&tags).map_err(|e| conversion_err(4, e))?,
        created_at: r.get(5)?,
        last_version: r.get(6)?,
        current_version: r.get(7)?,
        active_update: r.get(8)?,
        resource_count: r.get(9)?,
        last_update_at: r.get(10)?,
        state_size: r.get(11)?,
    })
}

fn update_from_row(r: &Row<'_>) -> rusqlite::Result<UpdateRow> {
    let status: String = r.get(4)?;
    Ok(UpdateRow {
        id: r.get(0)?,
        stack_id: r.get(1)?,
        kind: r.get(2)?,
        dry_run: r.get(3)?,
        status: UpdateStatus::parse(&status).ok_or_else(|| {
            conversion_err(
                4,
                std::io::Error::other(format!("unknown update status {status:?}")),
            )
        })?,
        version: r.get(5)?,
        base_version: r.get(6)?,
        created_at: r.get(7)?,
        started_at: r.get(8)?,
        ended_at: r.get(9)?,
        lease_expires: r.get(10)?,
        journal_version: r.get(11)?,
        author: r.get(12)?,
        message: r.get(13)?,
        environment: r.get(14)?,
        config: r.get(15)?,
        resource_changes: r.get(16)?,
        resource_count: r.get(17)?,
    })
}

fn tags_json(tags: &Tags) -> StoreResult<String> {
    serde_json::to_string(tags).map_err(StoreError::backend)
}

fn stack_by_id(tx: &Connection, id: i64) -> StoreResult<Option<StackRow>> {
    query_row(
        tx,
        &format!("SELECT {STACK_COLS} FROM stacks s WHERE s.id = ?1"),
        [id],
        stack_from_row,
    )
    .optional()
    .map_err(map_err)
}

fn stack_by_key(tx: &Connection, key: &StackKey) -> StoreResult<Option<StackRow>> {
    tx.prepare_cached(&format!(
        "SELECT {STACK_COLS} FROM stacks s WHERE s.org = ?1 AND s.project = ?2 AND s.name = ?3"
    ))
    .and_then(|mut st| {
        st.query_row(params![key.org, key.project, key.stack], stack_from_row)
            .optional()
    })
    .map_err(map_err)
}

fn update_by_id(tx: &Connection, id: &str) -> StoreResult<Option<UpdateRow>> {
    tx.prepare_cached(&format!("SELECT {UPDATE_COLS} FROM updates WHERE id = ?1"))
        .and_then(|mut st| st.query_row([id], update_from_row).optional())
        .map_err(map_err)
}

fn running_update_of(tx: &Connection, stack_id: i64) -> StoreResult<Option<UpdateRow>> {
    tx.prepare_cached(&format!(
        "SELECT {UPDATE_COLS} FROM updates \
         WHERE stack_id = ?1 AND dry_run = 0 AND status = 'running'"
    ))
    .and_then(|mut st| st.query_row([stack_id], update_from_row).optional())
    .map_err(map_err)
}

/// Verifies that `lease` is the live lease of a running update of its stack.
/// `allow_finished` also accepts the right token of an update that has since finished.
/// `(stack_id, status, lease_hash, lease_expires)` of an update.
type LeaseRow = (i64, String, Option<Vec<u8>>, Option<i64>);

fn check_lease(tx: &Connection, lease: &LeaseCheck, allow_finished: bool) -> StoreResult<()> {
    let row: Option<LeaseRow> = tx
        .prepare_cached(
            "SELECT stack_id, status, lease_hash, lease_expires FROM updates WHERE id = ?1",
        )
        .and_then(|mut st| {
            st.query_row([&lease.update_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .map_err(map_err)?;
    let Some((stack_id, status, hash, expires)) = row else {
        return Err(StoreError::Lease(LeaseDenied::UnknownUpdate));
    };
    if stack_id != lease.stack_id {
        return Err(StoreError::Lease(LeaseDenied::UnknownUpdate));
    }
    let matches = hash
        .as_deref()
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

/// Why `guard` refuses a change to the stack now, if it does (inside the change's own
/// transaction, so no update can start between the check and the change).
fn refuse_change<T>(
    tx: &Connection,
    stack_id: i64,
    guard: StackGuard,
) -> StoreResult<Option<Guarded<T>>> {
    let StackGuard::Idle { now, require_empty } = guard else {
        return Ok(None);
    };
    if let Some(u) = running_update_of(tx, stack_id)?
        && u.lease_live(now)
    {
        return Ok(Some(Guarded::Busy(Box::new(u))));
    }
    if require_empty {
        let count: i64 = query_row(
            tx,
            "SELECT resource_count FROM stacks WHERE id = ?1",
            [stack_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(map_err)?
        .unwrap_or(0);
        if count > 0 {
            return Ok(Some(Guarded::HasResources));
        }
    }
    Ok(None)
}

fn insert_version(
    tx: &Connection,
    stack_id: i64,
    version: i64,
    blob: &StateBlob,
    now: i64,
) -> StoreResult<()> {
    exec(
        tx,
        "INSERT OR REPLACE INTO stack_versions \
         (stack_id, version, state, sha256, size, resource_count, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            stack_id,
            version,
            blob.gz,
            blob.sha256,
            blob.size,
            blob.resource_count,
            now
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

/// Makes `version` the stack's current state and applies retention.
fn set_current(tx: &Connection, stack_id: i64, version: i64, keep: i64) -> StoreResult<()> {
    exec(tx,
        "UPDATE stacks SET current_version = ?2, \
            resource_count = (SELECT resource_count FROM stack_versions WHERE stack_id = ?1 AND version = ?2), \
            state_size = (SELECT size FROM stack_versions WHERE stack_id = ?1 AND version = ?2) \
         WHERE id = ?1",
        params![stack_id, version],
    )
    .map_err(map_err)?;
    prune_versions(tx, stack_id, keep)?;
    Ok(())
}

fn prune_versions(tx: &Connection, stack_id: i64, keep: i64) -> StoreResult<u64> {
    let keep = keep.max(1);
    let n = exec(tx,
            "DELETE FROM stack_versions WHERE stack_id = ?1 AND version NOT IN \
             (SELECT version FROM stack_versions WHERE stack_id = ?1 ORDER BY version DESC LIMIT ?2)",
            params![stack_id, keep],
        )
        .map_err(map_err)?;
    if n > 0 {
        // Journals and events of updates older than every kept version can no longer be
        // replayed or shown against a state; drop them with the versions.
        for table in ["journal_batches", "update_events"] {
            exec(
                tx,
                &format!(
                    "DELETE FROM {table} WHERE update_id IN (SELECT id FROM updates \
                     WHERE stack_id = ?1 AND status != 'running' AND version < \
                     (SELECT MIN(version) FROM stack_versions WHERE stack_id = ?1))"
                ),
                [stack_id],
            )
            .map_err(map_err)?;
        }
    }
    Ok(n as u64)
}

fn get_state_in(
    tx: &Connection,
    stack_id: i64,
    version: Option<i64>,
) -> StoreResult<Option<StateBlob>> {
    let version = match version {
        Some(v) => v,
        None => match stack_by_id(tx, stack_id)?.and_then(|s| s.current_version) {
            Some(v) => v,
            None => return Ok(None),
        },
    };
    tx.prepare_cached(
        "SELECT state, sha256, size, resource_count FROM stack_versions \
         WHERE stack_id = ?1 AND version = ?2",
    )
    .and_then(|mut st| {
        st.query_row(params![stack_id, version], |r| {
            Ok(StateBlob {
                gz: r.get(0)?,
                sha256: r.get(1)?,
                size: r.get(2)?,
                resource_count: r.get(3)?,
            })
        })
        .optional()
    })
    .map_err(map_err)
}

fn insert_update(tx: &Connection, u: &NewUpdate, status: UpdateStatus) -> StoreResult<()> {
    exec(
        tx,
        "INSERT INTO updates (id, stack_id, kind, dry_run, status, created_at, author, message, \
         environment, config) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            u.id,
            u.stack_id,
            u.kind,
            u.dry_run,
            status.as_str(),
            u.created_at,
            u.author,
            u.message,
            u.environment,
            u.config
        ],
    )
    .map_err(map_err)?;
    if let Some(w) = &u.coherence_window {
        exec(
            tx,
            "INSERT INTO update_windows (update_id, window) VALUES (?1, ?2)",
            params![u.id, w],
        )
        .map_err(map_err)?;
    }
    Ok(())
}

/// Starts a created update (see [`Store::start_update`]), inside the caller's transaction.
fn start_in(tx: &Connection, s: &StartUpdate) -> StoreResult<StartOutcome> {
    let Some(update) = update_by_id(tx, &s.update_id)? else {
        return Err(StoreError::Lease(LeaseDenied::UnknownUpdate));
    };
    if update.stack_id != s.stack_id {
        return Err(StoreError::Lease(LeaseDenied::UnknownUpdate));
    }
    if update.status != UpdateStatus::NotStarted {
        return Ok(StartOutcome::AlreadyStarted(update));
    }
    let stack =
        stack_by_id(tx, s.stack_id)?.ok_or(StoreError::Lease(LeaseDenied::UnknownUpdate))?;
    let version = if update.dry_run {
        stack.current_version.unwrap_or(0)
    } else {
        if let Some(holder) = running_update_of(tx, s.stack_id)? {
            return Ok(StartOutcome::Busy(holder));
        }
        stack.last_version + 1
    };
    if let Some(tags) = &s.tags {
        exec(
            tx,
            "UPDATE stacks SET tags = ?2 WHERE id = ?1",
            params![s.stack_id, tags_json(tags)?],
        )
        .map_err(map_err)?;
    }
    if !update.dry_run {
        exec(
            tx,
            "UPDATE stacks SET last_version = ?2, active_update = ?3, last_update_at = ?4 \
             WHERE id = ?1",
            params![s.stack_id, version, s.update_id, s.now],
        )
        .map_err(map_err)?;
    }
    exec(
        tx,
        "UPDATE updates SET status = 'running', version = ?2, base_version = ?3, \
         started_at = ?4, lease_hash = ?5, lease_expires = ?6, journal_version = ?7 \
         WHERE id = ?1",
        params![
            s.update_id,
            version,
            stack.current_version,
            s.now,
            s.lease_hash,
            s.lease_expires,
            s.journal_version
        ],
    )
    .map_err(map_err)?;
    let row = update_by_id(tx, &s.update_id)?
        .ok_or_else(|| StoreError::Corrupt("started update vanished".into()))?;
    Ok(StartOutcome::Started(row))
}

impl Store for SqliteStore {
    fn meta_get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        let key = key.to_owned();
        Box::pin(self.read(move |tx| {
            query_row(tx, "SELECT value FROM meta WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(map_err)
        }))
    }

    fn meta_put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()> {
        let key = key.to_owned();
        Box::pin(self.write(move |tx| {
            exec(
                tx,
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(map_err)?;
            Ok(())
        }))
    }

    fn create_stack(&self, s: NewStack) -> StoreFuture<'_, StackRow> {
        Box::pin(self.write(move |tx| {
            if stack_by_key(tx, &s.key)?.is_some() {
                return Err(StoreError::Conflict(format!("stack {} exists", s.key)));
            }
            exec(
                tx,
                "INSERT INTO stacks (org, project, name, tags, created_at, wrapped_key) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    s.key.org,
                    s.key.project,
                    s.key.stack,
                    tags_json(&s.tags)?,
                    s.created_at,
                    s.wrapped_key
                ],
            )
            .map_err(map_err)?;
            let id = tx.last_insert_rowid();
            // A name that is live again no longer redirects to the stack that once had it.
            exec(
                tx,
                "DELETE FROM stack_former_names WHERE org = ?1 AND project = ?2 AND name = ?3",
                params![s.key.org, s.key.project, s.key.stack],
            )
            .map_err(map_err)?;
            if let Some(state) = &s.initial_state {
                insert_version(tx, id, 0, state, s.created_at)?;
                set_current(tx, id, 0, i64::MAX)?;
            }
            stack_by_id(tx, id)?.ok_or_else(|| StoreError::Corrupt("created stack vanished".into()))
        }))
    }

    fn get_stack<'a>(&'a self, key: &'a StackKey) -> StoreFuture<'a, Option<StackRow>> {
        let key = key.clone();
        Box::pin(self.read(move |tx| stack_by_key(tx, &key)))
    }

    fn get_stack_or_former<'a>(&'a self, key: &'a StackKey) -> StoreFuture<'a, Option<StackRow>> {
        let key = key.clone();
        Box::pin(self.read(move |tx| {
            if let Some(s) = stack_by_key(tx, &key)? {
                return Ok(Some(s));
            }
            query_row(tx,
                &format!(
                    "SELECT {STACK_COLS} FROM stack_former_names f JOIN stacks s ON s.id = f.stack_id \
                     WHERE f.org = ?1 AND f.project = ?2 AND f.name = ?3"
                ),
                params![key.org, key.project, key.stack],
                stack_from_row,
            )
            .optional()
            .map_err(map_err)
        }))
    }

    fn list_stacks(&self, q: StackQuery) -> StoreFuture<'_, Vec<StackRow>> {
        Box::pin(self.read(move |tx| {
            let mut st = tx
                .prepare_cached(&format!(
                    "SELECT {STACK_COLS} FROM stacks s \
                     WHERE (?1 IS NULL OR s.org IN (SELECT value FROM json_each(?1))) \
                       AND (?2 IS NULL OR s.project = ?2) \
                       AND s.id > ?3 \
                       AND (?4 IS NULL OR EXISTS (SELECT 1 FROM json_each(s.tags) \
                            WHERE key = ?4 AND (?5 IS NULL OR value = ?5))) \
                     ORDER BY s.id LIMIT ?6"
                ))
                .map_err(map_err)?;
            let rows = st
                .query_map(
                    params![
                        q.orgs
                            .as_ref()
                            .map(serde_json::to_string)
                            .transpose()
                            .map_err(StoreError::backend)?,
                        q.project,
                        q.after_id.unwrap_or(0),
                        q.tag_name,
                        q.tag_value,
                        q.limit
                    ],
                    stack_from_row,
                )
                .map_err(map_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
        }))
    }

    fn project_exists<'a>(&'a self, org: &'a str, project: &'a str) -> StoreFuture<'a, bool> {
        let (org, project) = (org.to_owned(), project.to_owned());
        Box::pin(self.read(move |tx| {
            query_row(
                tx,
                "SELECT EXISTS (SELECT 1 FROM stacks WHERE org = ?1 AND project = ?2)",
                params![org, project],
                |r| r.get(0),
            )
            .map_err(map_err)
        }))
    }

    fn delete_stack(&self, stack_id: i64, guard: StackGuard) -> StoreFuture<'_, Guarded<bool>> {
        Box::pin(self.write(move |tx| {
            if let Some(refused) = refuse_change(tx, stack_id, guard)? {
                return Ok(refused);
            }
            let n = exec(tx, "DELETE FROM stacks WHERE id = ?1", [stack_id]).map_err(map_err)?;
            Ok(Guarded::Done(n > 0))
        }))
    }

    fn set_stack_tags(&self, stack_id: i64, tags: Tags) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |tx| {
            exec(
                tx,
                "UPDATE stacks SET tags = ?2 WHERE id = ?1",
                params![stack_id, tags_json(&tags)?],
            )
            .map_err(map_err)?;
            Ok(())
        }))
    }

    fn rename_stack(
        &self,
        stack_id: i64,
        to: StackKey,
        guard: StackGuard,
    ) -> StoreFuture<'_, Guarded<StackRow>> {
        Box::pin(self.write(move |tx| {
            let Some(old) = stack_by_id(tx, stack_id)? else {
                return Err(StoreError::Corrupt("renamed stack vanished".into()));
            };
            if let Some(refused) = refuse_change(tx, stack_id, guard)? {
                return Ok(refused);
            }
            if old.key == to {
                return Ok(Guarded::Done(old));
            }
            if stack_by_key(tx, &to)?.is_some() {
                return Err(StoreError::Conflict(format!("stack {to} exists")));
            }
            exec(tx,
                "INSERT OR REPLACE INTO stack_former_names (org, project, name, stack_id, renamed_at) \
                 VALUES (?1, ?2, ?3, ?4, unixepoch())",
                params![old.key.org, old.key.project, old.key.stack, stack_id],
            )
            .map_err(map_err)?;
            exec(tx,
                "DELETE FROM stack_former_names WHERE org = ?1 AND project = ?2 AND name = ?3",
                params![to.org, to.project, to.stack],
            )
            .map_err(map_err)?;
            exec(tx,
                "UPDATE stacks SET org = ?2, project = ?3, name = ?4 WHERE id = ?1",
                params![stack_id, to.org, to.project, to.stack],
            )
            .map_err(map_err)?;
            stack_by_id(tx, stack_id)?
                .map(Guarded::Done)
                .ok_or_else(|| StoreError::Corrupt("renamed stack vanished".into()))
        }))
    }

    fn get_stack_key(&self, stack_id: i64) -> StoreFuture<'_, Option<Vec<u8>>> {
        Box::pin(self.read(move |tx| {
            tx.prepare_cached("SELECT wrapped_key FROM stacks WHERE id = ?1")
                .and_then(|mut st| st.query_row([stack_id], |r| r.get(0)).optional())
                .map_err(map_err)
        }))
    }

    fn get_secrets_key<'a>(&'a self, key: &'a StackKey) -> StoreFuture<'a, Option<(i64, Vec<u8>)>> {
        let key = key.clone();
        Box::pin(self.read(move |tx| {
            let row = |r: &Row<'_>| Ok((r.get(0)?, r.get(1)?));
            let current = tx
                .prepare_cached(
                    "SELECT id, wrapped_key FROM stacks WHERE org = ?1 AND project = ?2 AND name = ?3",
                )
                .and_then(|mut st| {
                    st.query_row(params![key.org, key.project, key.stack], row)
                        .optional()
                })
                .map_err(map_err)?;
            if current.is_some() {
                return Ok(current);
            }
            tx.prepare_cached(
                "SELECT s.id, s.wrapped_key FROM stack_former_names f JOIN stacks s ON s.id = f.stack_id \
                 WHERE f.org = ?1 AND f.project = ?2 AND f.name = ?3",
            )
            .and_then(|mut st| {
                st.query_row(params![key.org, key.project, key.stack], row)
                    .optional()
            })
            .map_err(map_err)
        }))
    }

    fn create_update(&self, u: NewUpdate) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |tx| insert_update(tx, &u, UpdateStatus::NotStarted)))
    }

    fn get_update<'a>(&'a self, update_id: &'a str) -> StoreFuture<'a, Option<UpdateRow>> {
        let id = update_id.to_owned();
        Box::pin(self.read(move |tx| update_by_id(tx, &id)))
    }

    fn start_update(&self, s: StartUpdate) -> StoreFuture<'_, StartOutcome> {
        Box::pin(self.write(move |tx| start_in(tx, &s)))
    }

    fn begin_update(&self, u: NewUpdate, s: StartUpdate) -> StoreFuture<'_, StartOutcome> {
        Box::pin(self.write(move |tx| {
            if !u.dry_run
                && let Some(holder) = running_update_of(tx, u.stack_id)?
            {
                return Ok(StartOutcome::Busy(holder));
            }
            insert_update(tx, &u, UpdateStatus::NotStarted)?;
            start_in(tx, &s)
        }))
    }

    fn update_window<'a>(&'a self, update_id: &'a str) -> StoreFuture<'a, Option<String>> {
        let id = update_id.to_owned();
        Box::pin(self.read(move |tx| {
            query_row(
                tx,
                "SELECT window FROM update_windows WHERE update_id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(map_err)
        }))
    }

    fn window_members<'a>(
        &'a self,
        stack_id: i64,
        window: &'a str,
    ) -> StoreFuture<'a, Vec<WindowMember>> {
        let window = window.to_owned();
        Box::pin(self.read(move |tx| {
            let mut st = tx
                .prepare_cached(
                    "SELECT u.id, u.dry_run, u.status, u.created_at, u.ended_at, w.outputs, \
                     w.secrets_providers, w.outputs IS NOT NULL OR w.secrets_providers IS NOT NULL \
                     FROM update_windows w JOIN updates u ON u.id = w.update_id \
                     WHERE w.window = ?1 AND u.stack_id = ?2 ORDER BY u.created_at, u.id",
                )
                .map_err(map_err)?;
            let rows = st
                .query_map(params![window, stack_id], |r| {
                    let status: String = r.get(2)?;
                    let recorded: bool = r.get(7)?;
                    Ok(WindowMember {
                        update_id: r.get(0)?,
                        dry_run: r.get(1)?,
                        status: UpdateStatus::parse(&status).unwrap_or(UpdateStatus::Failed),
                        created_at: r.get(3)?,
                        ended_at: r.get(4)?,
                        recorded: recorded
                            .then(|| -> rusqlite::Result<WindowOutputs> {
                                Ok(WindowOutputs {
                                    outputs: r.get(5)?,
                                    secrets_providers: r.get(6)?,
                                })
                            })
                            .transpose()?,
                    })
                })
                .map_err(map_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
        }))
    }

    fn lease_state<'a>(
        &'a self,
        key: &'a StackKey,
        update_id: &'a str,
    ) -> StoreFuture<'a, Option<LeaseState>> {
        let (key, id) = (key.clone(), update_id.to_owned());
        Box::pin(self.read(move |tx| {
            let row = query_row(
                tx,
                "SELECT u.stack_id, u.status, u.lease_hash, u.lease_expires \
                 FROM updates u JOIN stacks s ON s.id = u.stack_id \
                 WHERE u.id = ?1 AND s.org = ?2 AND s.project = ?3 AND s.name = ?4",
                params![id, key.org, key.project, key.stack],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<Vec<u8>>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(map_err)?;
            row.map(|(stack_id, status, lease_hash, lease_expires)| {
                Ok(LeaseState {
                    stack_id,
                    status: UpdateStatus::parse(&status)
                        .ok_or_else(|| StoreError::Corrupt(format!("update status {status:?}")))?,
                    lease_hash,
                    lease_expires,
                })
            })
            .transpose()
        }))
    }

    fn renew_lease(&self, lease: LeaseCheck, expires: i64) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |tx| {
            check_lease(tx, &lease, false)?;
            exec(
                tx,
                "UPDATE updates SET lease_expires = MAX(lease_expires, ?2) WHERE id = ?1",
                params![lease.update_id, expires],
            )
            .map_err(map_err)?;
            Ok(())
        }))
    }

    fn save_checkpoint(&self, lease: LeaseCheck, w: CheckpointWrite) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |tx| {
            check_lease(tx, &lease, false)?;
            let last: Option<i64> = tx
                .prepare_cached("SELECT sequence FROM update_state WHERE update_id = ?1")
                .and_then(|mut st| st.query_row([&lease.update_id], |r| r.get(0)).optional())
                .map_err(map_err)?;
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
            tx.prepare_cached(
                "INSERT INTO update_state \
                 (update_id, state, sha256, size, resource_count, sequence, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (update_id) DO UPDATE SET state = excluded.state, \
                   sha256 = excluded.sha256, size = excluded.size, \
                   resource_count = excluded.resource_count, sequence = excluded.sequence, \
                   updated_at = excluded.updated_at",
            )
            .and_then(|mut st| {
                st.execute(params![
                    lease.update_id,
                    w.blob.gz,
                    w.blob.sha256,
                    w.blob.size,
                    count,
                    w.sequence,
                    lease.now
                ])
            })
            .map_err(map_err)?;
            exec(
                tx,
                "DELETE FROM update_deltas WHERE update_id = ?1",
                [&lease.update_id],
            )
            .map_err(map_err)?;
            Ok(())
        }))
    }

    fn check_lease(&self, lease: LeaseCheck) -> StoreFuture<'_, ()> {
        Box::pin(self.read(move |tx| check_lease(tx, &lease, false)))
    }

    fn append_journal(&self, lease: LeaseCheck, b: JournalBatch) -> StoreFuture<'_, i64> {
        Box::pin(self.write(move |tx| {
            check_lease(tx, &lease, false)?;
            let ordinal: i64 = tx
                .prepare_cached(
                    "SELECT COALESCE(MAX(ordinal), 0) + 1 FROM journal_batches WHERE update_id = ?1",
                )
                .and_then(|mut st| st.query_row([&lease.update_id], |r| r.get(0)))
                .map_err(map_err)?;
            tx.prepare_cached(
                "INSERT INTO journal_batches (update_id, ordinal, first_seq, last_seq, count, entries) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    lease.update_id,
                    ordinal,
                    b.first_sequence,
                    b.last_sequence,
                    b.count,
                    b.gz
                ])
            })
            .map_err(map_err)?;
            Ok(ordinal)
        }))
    }

    fn list_journal_batches<'a>(
        &'a self,
        update_id: &'a str,
    ) -> StoreFuture<'a, Vec<JournalBatch>> {
        let id = update_id.to_owned();
        Box::pin(self.read(move |tx| {
            let mut st = tx
                .prepare_cached(
                    "SELECT ordinal, first_seq, last_seq, count, entries FROM journal_batches \
                     WHERE update_id = ?1 ORDER BY ordinal",
                )
                .map_err(map_err)?;
            let rows = st
                .query_map([id], |r| {
                    Ok(JournalBatch {
                        ordinal: r.get(0)?,
                        first_sequence: r.get(1)?,
                        last_sequence: r.get(2)?,
                        count: r.get(3)?,
                        gz: r.get(4)?,
                    })
                })
                .map_err(map_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
        }))
    }

    fn append_delta(&self, lease: LeaseCheck, d: DeltaWrite) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |tx| {
            check_lease(tx, &lease, false)?;
            let has_base: bool = query_row(
                tx,
                "SELECT EXISTS (SELECT 1 FROM update_state WHERE update_id = ?1)",
                [&lease.update_id],
                |r| r.get(0),
            )
            .map_err(map_err)?;
            if !has_base {
                return Err(StoreError::Conflict(
                    "a delta needs a verbatim checkpoint of this update to apply to".into(),
                ));
            }
            tx.prepare_cached(
                "INSERT INTO update_deltas (update_id, ordinal, sequence, hash, edits) \
                 VALUES (?1, (SELECT COALESCE(MAX(ordinal), 0) + 1 FROM update_deltas \
                 WHERE update_id = ?1), ?2, ?3, ?4)",
            )
            .and_then(|mut st| st.execute(params![lease.update_id, d.sequence, d.hash, d.gz]))
            .map_err(map_err)?;
            Ok(())
        }))
    }

    fn list_deltas<'a>(&'a self, update_id: &'a str) -> StoreFuture<'a, Vec<DeltaWrite>> {
        let id = update_id.to_owned();
        Box::pin(self.read(move |tx| {
            let mut st = tx
                .prepare_cached(
                    "SELECT sequence, hash, edits FROM update_deltas WHERE update_id = ?1 \
                     ORDER BY ordinal",
                )
                .map_err(map_err)?;
            let rows = st
                .query_map([id], |r| {
                    Ok(DeltaWrite {
                        sequence: r.get(0)?,
                        hash: r.get(1)?,
                        gz: r.get(2)?,
                    })
                })
                .map_err(map_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
        }))
    }

    fn get_working_state<'a>(
        &'a self,
        update_id: &'a str,
    ) -> StoreFuture<'a, Option<WorkingState>> {
        let id = update_id.to_owned();
        Box::pin(self.read(move |tx| {
            query_row(
                tx,
                "SELECT state, sha256, size, resource_count, sequence FROM update_state \
                 WHERE update_id = ?1",
                [id],
                |r| {
                    Ok(WorkingState {
                        blob: StateBlob {
                            gz: r.get(0)?,
                            sha256: r.get(1)?,
                            size: r.get(2)?,
                            resource_count: r.get::<_, Option<i64>>(3)?.unwrap_or(-1),
                        },
                        sequence: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(map_err)
        }))
    }

    fn append_events(&self, lease: LeaseCheck, b: EventBatch) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |tx| {
            // The CLI sends every event before it completes the update; after that the lease
            // no longer admits any.
            check_lease(tx, &lease, false)?;
            tx.prepare_cached(
                "INSERT OR IGNORE INTO update_events (update_id, first_seq, last_seq, count, events) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    lease.update_id,
                    b.first_sequence,
                    b.last_sequence,
                    b.count,
                    b.gz
                ])
            })
            .map_err(map_err)?;
            if let Some(changes) = &b.resource_changes {
                exec(tx,
                    "UPDATE updates SET resource_changes = ?2 WHERE id = ?1",
                    params![lease.update_id, changes],
                )
                .map_err(map_err)?;
            }
            Ok(())
        }))
    }

    fn list_event_batches<'a>(
        &'a self,
        update_id: &'a str,
        after: Option<i64>,
        limit: i64,
    ) -> StoreFuture<'a, Vec<EventBatch>> {
        let id = update_id.to_owned();
        Box::pin(self.read(move |tx| {
            let mut st = tx
                .prepare_cached(
                    "SELECT first_seq, last_seq, count, events FROM update_events \
                     WHERE update_id = ?1 AND first_seq > ?2 ORDER BY first_seq LIMIT ?3",
                )
                .map_err(map_err)?;
            let rows = st
                .query_map(params![id, after.unwrap_or(i64::MIN), limit], |r| {
                    Ok(EventBatch {
                        first_sequence: r.get(0)?,
                        last_sequence: r.get(1)?,
                        count: r.get(2)?,
                        gz: r.get(3)?,
                        resource_changes: None,
                    })
                })
                .map_err(map_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
        }))
    }

    fn finish_update(&self, f: FinishUpdate) -> StoreFuture<'_, FinishOutcome> {
        Box::pin(self.write(move |tx| {
            let Some(update) = update_by_id(tx, &f.update_id)? else {
                return Err(StoreError::Lease(LeaseDenied::UnknownUpdate));
            };
            if update.stack_id != f.stack_id {
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
            let mut final_count = None;
            if !update.dry_run && update.status == UpdateStatus::Running {
                let written = match &f.final_state {
                    FinalState::Unchanged => false,
                    FinalState::Blob(blob) => {
                        insert_version(tx, f.stack_id, update.version, blob, f.ended_at)?;
                        true
                    }
                    FinalState::Working { resource_count } => {
                        let n = exec(tx,
                                "INSERT OR REPLACE INTO stack_versions \
                                 (stack_id, version, state, sha256, size, resource_count, created_at) \
                                 SELECT ?2, ?3, state, sha256, size, \
                                        COALESCE(?4, resource_count, 0), ?5 \
                                 FROM update_state WHERE update_id = ?1",
                                params![
                                    f.update_id,
                                    f.stack_id,
                                    update.version,
                                    resource_count,
                                    f.ended_at
                                ],
                            )
                            .map_err(map_err)?;
                        if n > 0 {
                            true
                        } else if let Some(base) =
                            stack_by_id(tx, f.stack_id)?.and_then(|s| s.current_version)
                        {
                            // No checkpoint arrived: the state carries over unchanged.
                            exec(tx,
                                "INSERT OR REPLACE INTO stack_versions \
                                 (stack_id, version, state, sha256, size, resource_count, created_at) \
                                 SELECT stack_id, ?3, state, sha256, size, resource_count, ?4 \
                                 FROM stack_versions WHERE stack_id = ?1 AND version = ?2",
                                params![f.stack_id, base, update.version, f.ended_at],
                            )
                            .map_err(map_err)?
                                > 0
                        } else {
                            false
                        }
                    }
                };
                if written {
                    set_current(tx, f.stack_id, update.version, f.keep_versions)?;
                    final_count = stack_by_id(tx, f.stack_id)?.map(|s| s.resource_count);
                }
            }
            exec(tx,
                "UPDATE updates SET status = ?2, ended_at = ?3, lease_expires = NULL, \
                 resource_changes = COALESCE(?4, resource_changes), \
                 resource_count = COALESCE(?5, resource_count) WHERE id = ?1",
                params![
                    f.update_id,
                    f.status.as_str(),
                    f.ended_at,
                    f.resource_changes,
                    final_count
                ],
            )
            .map_err(map_err)?;
            if let Some(w) = &f.window_outputs {
                exec(
                    tx,
                    "UPDATE update_windows SET outputs = ?2, secrets_providers = ?3 \
                     WHERE update_id = ?1",
                    params![f.update_id, w.outputs, w.secrets_providers],
                )
                .map_err(map_err)?;
            }
            for table in ["update_state", "update_deltas"] {
                exec(tx,
                    &format!("DELETE FROM {table} WHERE update_id = ?1"),
                    [&f.update_id],
                )
                .map_err(map_err)?;
            }
            let row = update_by_id(tx, &f.update_id)?
                .ok_or_else(|| StoreError::Corrupt("finished update vanished".into()))?;
            Ok(FinishOutcome::Finished(row))
        }))
    }

    fn import_state(
        &self,
        u: NewUpdate,
        state: StateBlob,
        keep_versions: i64,
    ) -> StoreFuture<'_, ImportOutcome> {
        Box::pin(self.write(move |tx| {
            if let Some(holder) = running_update_of(tx, u.stack_id)? {
                return Ok(ImportOutcome::Busy(Box::new(holder)));
            }
            let stack = stack_by_id(tx, u.stack_id)?
                .ok_or_else(|| StoreError::Corrupt("imported stack vanished".into()))?;
            let version = stack.last_version + 1;
            insert_update(tx, &u, UpdateStatus::Succeeded)?;
            exec(
                tx,
                "UPDATE updates SET version = ?2, base_version = ?3, started_at = ?4, \
                 ended_at = ?4, resource_count = ?5 WHERE id = ?1",
                params![
                    u.id,
                    version,
                    stack.current_version,
                    u.created_at,
                    state.resource_count
                ],
            )
            .map_err(map_err)?;
            exec(
                tx,
                "UPDATE stacks SET last_version = ?2, active_update = ?3, last_update_at = ?4 \
                 WHERE id = ?1",
                params![u.stack_id, version, u.id, u.created_at],
            )
            .map_err(map_err)?;
            insert_version(tx, u.stack_id, version, &state, u.created_at)?;
            set_current(tx, u.stack_id, version, keep_versions)?;
            Ok(ImportOutcome::Imported { version })
        }))
    }

    fn get_state(&self, stack_id: i64, version: Option<i64>) -> StoreFuture<'_, Option<StateBlob>> {
        Box::pin(self.read(move |tx| get_state_in(tx, stack_id, version)))
    }

    fn list_updates(
        &self,
        stack_id: i64,
        offset: i64,
        limit: i64,
    ) -> StoreFuture<'_, Vec<UpdateRow>> {
        Box::pin(self.read(move |tx| {
            let mut st = tx
                .prepare_cached(&format!(
                    "SELECT {UPDATE_COLS} FROM updates \
                     WHERE stack_id = ?1 AND dry_run = 0 AND status != 'not-started' \
                     ORDER BY version DESC LIMIT ?2 OFFSET ?3"
                ))
                .map_err(map_err)?;
            let rows = st
                .query_map(params![stack_id, limit, offset], update_from_row)
                .map_err(map_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
        }))
    }

    fn get_update_by_version(
        &self,
        stack_id: i64,
        version: i64,
    ) -> StoreFuture<'_, Option<UpdateRow>> {
        Box::pin(self.read(move |tx| {
            query_row(tx,
                &format!(
                    "SELECT {UPDATE_COLS} FROM updates \
                     WHERE stack_id = ?1 AND dry_run = 0 AND version = ?2 AND status != 'not-started'"
                ),
                params![stack_id, version],
                update_from_row,
            )
            .optional()
            .map_err(map_err)
        }))
    }

    fn create_token(&self, token: NewToken) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |tx| m::create_token(tx, &token)))
    }

    fn find_token(&self, hash: Vec<u8>) -> StoreFuture<'_, Option<TokenRow>> {
        Box::pin(self.read(move |tx| m::find_token(tx, &hash)))
    }

    fn touch_token<'a>(&'a self, id: &'a str, now: i64) -> StoreFuture<'a, ()> {
        let id = id.to_owned();
        Box::pin(self.write(move |tx| m::touch_token(tx, &id, now)))
    }

    fn list_tokens(&self, user: Option<String>) -> StoreFuture<'_, Vec<TokenRow>> {
        Box::pin(self.read(move |tx| m::list_tokens(tx, user.as_deref())))
    }

    fn revoke_tokens(&self, which: TokenSelector, now: i64) -> StoreFuture<'_, Vec<String>> {
        Box::pin(self.write(move |tx| m::revoke_tokens(tx, &which, now)))
    }

    fn list_versions(&self, stack_id: i64) -> StoreFuture<'_, Vec<VersionInfo>> {
        Box::pin(self.read(move |tx| m::list_versions(tx, stack_id)))
    }

    fn prune_stack_versions(
        &self,
        stack_id: i64,
        keep: i64,
        dry_run: bool,
    ) -> StoreFuture<'_, PruneReport> {
        if dry_run {
            Box::pin(self.read(move |tx| m::prune_candidates(tx, stack_id, keep)))
        } else {
            Box::pin(self.write(move |tx| {
                let report = m::prune_candidates(tx, stack_id, keep)?;
                m::prune_now(tx, stack_id, keep)?;
                Ok(report)
            }))
        }
    }

    fn replace_version_state(
        &self,
        stack_id: i64,
        version: i64,
        state: StateBlob,
    ) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |tx| {
            let n = exec(
                tx,
                "UPDATE stack_versions SET state = ?3, sha256 = ?4, size = ?5, \
                     resource_count = ?6 WHERE stack_id = ?1 AND version = ?2",
                params![
                    stack_id,
                    version,
                    state.gz,
                    state.sha256,
                    state.size,
                    state.resource_count
                ],
            )
            .map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::Conflict(format!(
                    "version {version} is not stored"
                )));
            }
            exec(
                tx,
                "UPDATE stacks SET resource_count = ?3, state_size = ?4 \
                 WHERE id = ?1 AND current_version = ?2",
                params![stack_id, version, state.resource_count, state.size],
            )
            .map_err(map_err)?;
            Ok(())
        }))
    }

    fn list_wrapped_keys(&self) -> StoreFuture<'_, Vec<WrappedKey>> {
        Box::pin(self.read(m::list_wrapped_keys))
    }

    fn replace_wrapped_keys(
        &self,
        keys: Vec<(i64, Vec<u8>)>,
        canary: Vec<u8>,
    ) -> StoreFuture<'_, ()> {
        Box::pin(self.write(move |tx| m::replace_wrapped_keys(tx, &keys, &canary)))
    }

    fn integrity_problems(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(self.read(m::integrity_problems))
    }

    fn vacuum(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.write_raw(|conn| conn.execute_batch("VACUUM").map_err(map_err)))
    }

    fn dump(&self, mut sink: backup::Sink) -> StoreFuture<'_, backup::DumpReport> {
        Box::pin(self.read(move |tx| m::dump(tx, &mut sink)))
    }

    fn load(
        &self,
        records: backup::Source,
        merge: backup::Merge,
    ) -> StoreFuture<'_, backup::LoadReport> {
        Box::pin(self.write(move |tx| m::load(tx, records, merge)))
    }

    fn running_update(&self, stack_id: i64) -> StoreFuture<'_, Option<UpdateRow>> {
        Box::pin(self.read(move |tx| running_update_of(tx, stack_id)))
    }
}
