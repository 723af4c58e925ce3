//! SQL behind the operator's commands: tokens, versions, key rotation, integrity checks,
//! and the logical dump/load of the whole database.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::map_err;
use crate::store::backup::{DumpReport, LoadReport, Merge, Record, Sink, Source};
use crate::store::*;

const TOKEN_COLS: &str =
    "id, user_name, description, created_at, expires_at, last_used_at, revoked_at";

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: r.get(0)?,
        user: r.get(1)?,
        description: r.get(2)?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        last_used_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

pub fn create_token(tx: &Connection, t: &NewToken) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO tokens (id, user_name, description, hash, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            t.id,
            t.user,
            t.description,
            t.hash,
            t.created_at,
            t.expires_at
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

pub fn find_token(tx: &Connection, hash: &[u8]) -> StoreResult<Option<TokenRow>> {
    tx.prepare_cached(&format!("SELECT {TOKEN_COLS} FROM tokens WHERE hash = ?1"))
        .and_then(|mut st| st.query_row([hash], token_from_row).optional())
        .map_err(map_err)
}

pub fn touch_token(tx: &Connection, id: &str, now: i64) -> StoreResult<()> {
    tx.execute(
        "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1",
        params![id, now],
    )
    .map_err(map_err)?;
    Ok(())
}

pub fn list_tokens(tx: &Connection, user: Option<&str>) -> StoreResult<Vec<TokenRow>> {
    let mut st = tx
        .prepare(&format!(
            "SELECT {TOKEN_COLS} FROM tokens WHERE (?1 IS NULL OR user_name = ?1) \
             ORDER BY created_at, id"
        ))
        .map_err(map_err)?;
    let rows = st.query_map([user], token_from_row).map_err(map_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
}

pub fn revoke_tokens(tx: &Connection, which: &TokenSelector, now: i64) -> StoreResult<Vec<String>> {
    let (sql, arg) = match which {
        TokenSelector::Id(id) => ("id = ?1", id),
        TokenSelector::User(u) => ("user_name = ?1", u),
    };
    let mut st = tx
        .prepare(&format!(
            "SELECT id FROM tokens WHERE {sql} AND revoked_at IS NULL ORDER BY id"
        ))
        .map_err(map_err)?;
    let ids = st
        .query_map([arg], |r| r.get::<_, String>(0))
        .map_err(map_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(map_err)?;
    for id in &ids {
        tx.execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1",
            params![id, now],
        )
        .map_err(map_err)?;
    }
    Ok(ids)
}

pub fn list_versions(tx: &Connection, stack_id: i64) -> StoreResult<Vec<VersionInfo>> {
    let mut st = tx
        .prepare(
            "SELECT version, sha256, size, length(state), resource_count, created_at \
             FROM stack_versions WHERE stack_id = ?1 ORDER BY version DESC",
        )
        .map_err(map_err)?;
    let rows = st
        .query_map([stack_id], |r| {
            Ok(VersionInfo {
                version: r.get(0)?,
                sha256: r.get(1)?,
                size: r.get(2)?,
                stored_size: r.get(3)?,
                resource_count: r.get(4)?,
                created_at: r.get(5)?,
            })
        })
        .map_err(map_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
}

/// The versions a prune keeping `keep` would remove: all but the newest `keep`, and never
/// the current one.
pub fn prune_candidates(tx: &Connection, stack_id: i64, keep: i64) -> StoreResult<PruneReport> {
    tx.query_row(
        "SELECT COUNT(*), COALESCE(SUM(length(state)), 0) FROM stack_versions \
         WHERE stack_id = ?1 \
           AND version NOT IN (SELECT version FROM stack_versions WHERE stack_id = ?1 \
                               ORDER BY version DESC LIMIT ?2) \
           AND version IS NOT (SELECT current_version FROM stacks WHERE id = ?1)",
        params![stack_id, keep.max(1)],
        |r| {
            Ok(PruneReport {
                versions: r.get(0)?,
                bytes: r.get(1)?,
            })
        },
    )
    .map_err(map_err)
}

pub fn prune_now(tx: &Connection, stack_id: i64, keep: i64) -> StoreResult<()> {
    tx.execute(
        "DELETE FROM stack_versions WHERE stack_id = ?1 \
           AND version NOT IN (SELECT version FROM stack_versions WHERE stack_id = ?1 \
                               ORDER BY version DESC LIMIT ?2) \
           AND version IS NOT (SELECT current_version FROM stacks WHERE id = ?1)",
        params![stack_id, keep.max(1)],
    )
    .map_err(map_err)?;
    Ok(())
}

pub fn list_wrapped_keys(tx: &Connection) -> StoreResult<Vec<WrappedKey>> {
    let mut st = tx
        .prepare("SELECT id, org, project, name, wrapped_key FROM stacks ORDER BY id")
        .map_err(map_err)?;
    let rows = st
        .query_map([], |r| {
            Ok(WrappedKey {
                stack_id: r.get(0)?,
                key: StackKey {
                    org: r.get(1)?,
                    project: r.get(2)?,
                    stack: r.get(3)?,
                },
                wrapped: r.get(4)?,
            })
        })
        .map_err(map_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
}

pub fn replace_wrapped_keys(
    tx: &Connection,
    keys: &[(i64, Vec<u8>)],
    canary: &[u8],
) -> StoreResult<()> {
    for (id, wrapped) in keys {
        let n = tx
            .execute(
                "UPDATE stacks SET wrapped_key = ?2 WHERE id = ?1",
                params![id, wrapped],
            )
            .map_err(map_err)?;
        if n != 1 {
            return Err(StoreError::Conflict(format!(
                "stack {id} changed during the key rotation"
            )));
        }
    }
    let remaining: i64 = tx
        .query_row("SELECT COUNT(*) FROM stacks", [], |r| r.get(0))
        .map_err(map_err)?;
    if remaining as usize != keys.len() {
        return Err(StoreError::Conflict(
            "stacks were created during the key rotation".into(),
        ));
    }
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'master_key_canary'",
        [canary],
    )
    .map_err(map_err)?;
    Ok(())
}

pub fn integrity_problems(tx: &Connection) -> StoreResult<Vec<String>> {
    let mut problems = Vec::new();
    let mut st = tx.prepare("PRAGMA integrity_check").map_err(map_err)?;
    let lines = st
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(map_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(map_err)?;
    problems.extend(
        lines
            .into_iter()
            .filter(|l| l != "ok")
            .map(|l| format!("sqlite integrity_check: {l}")),
    );
    let mut st = tx.prepare("PRAGMA foreign_key_check").map_err(map_err)?;
    let orphans = st
        .query_map([], |r| {
            Ok(format!(
                "orphan row: {} rowid {} refers to a missing {}",
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?.unwrap_or(-1),
                r.get::<_, String>(2)?
            ))
        })
        .map_err(map_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(map_err)?;
    problems.extend(orphans);
    Ok(problems)
}

// ------------------------------------------------------------------- dump and load

pub fn dump(tx: &Connection, sink: &mut Sink) -> StoreResult<DumpReport> {
    let mut report = DumpReport::default();
    let mut emit = |r: Record, report: &mut DumpReport| -> StoreResult<()> {
        report.records += 1;
        if matches!(r, Record::Stack { .. }) {
            report.stacks += 1;
        }
        sink(r)
    };
    macro_rules! each {
        ($sql:expr, $map:expr) => {{
            let mut st = tx.prepare($sql).map_err(map_err)?;
            let mut rows = st.query([]).map_err(map_err)?;
            while let Some(row) = rows.next().map_err(map_err)? {
                let rec: Record = ($map)(row).map_err(map_err)?;
                emit(rec, &mut report)?;
            }
        }};
    }
    each!("SELECT key, value FROM meta ORDER BY key", |r: &Row<'_>| {
        Ok::<_, rusqlite::Error>(Record::Meta {
            key: r.get(0)?,
            value: r.get(1)?,
        })
    });
    each!(
        "SELECT id, user_name, description, hash, created_at, expires_at, last_used_at, \
         revoked_at FROM tokens ORDER BY id",
        |r: &Row<'_>| {
            Ok::<_, rusqlite::Error>(Record::Token {
                id: r.get(0)?,
                user_name: r.get(1)?,
                description: r.get(2)?,
                hash: r.get(3)?,
                created_at: r.get(4)?,
                expires_at: r.get(5)?,
                last_used_at: r.get(6)?,
                revoked_at: r.get(7)?,
            })
        }
    );
    each!(
        "SELECT id, org, project, name, tags, created_at, last_version, current_version, \
         active_update, resource_count, state_size, last_update_at, wrapped_key FROM stacks \
         ORDER BY id",
        |r: &Row<'_>| {
            Ok::<_, rusqlite::Error>(Record::Stack {
                id: r.get(0)?,
                org: r.get(1)?,
                project: r.get(2)?,
                name: r.get(3)?,
                tags: r.get(4)?,
                created_at: r.get(5)?,
                last_version: r.get(6)?,
                current_version: r.get(7)?,
                active_update: r.get(8)?,
                resource_count: r.get(9)?,
                state_size: r.get(10)?,
                last_update_at: r.get(11)?,
                wrapped_key: r.get(12)?,
            })
        }
    );
    each!(
        "SELECT org, project, name, stack_id, renamed_at FROM stack_former_names \
         ORDER BY org, project, name",
        |r: &Row<'_>| {
            Ok::<_, rusqlite::Error>(Record::FormerName {
                org: r.get(0)?,
                project: r.get(1)?,
                name: r.get(2)?,
                stack_id: r.get(3)?,
                renamed_at: r.get(4)?,
            })
        }
    );
    each!(
        "SELECT stack_id, version, state, sha256, size, resource_count, created_at \
         FROM stack_versions ORDER BY stack_id, version",
        |r: &Row<'_>| {
            Ok::<_, rusqlite::Error>(Record::Version {
                stack_id: r.get(0)?,
                version: r.get(1)?,
                state: r.get(2)?,
                sha256: r.get(3)?,
                size: r.get(4)?,
                resource_count: r.get(5)?,
                created_at: r.get(6)?,
            })
        }
    );
    each!(
        "SELECT id, stack_id, kind, dry_run, status, version, base_version, created_at, \
         started_at, ended_at, lease_hash, lease_expires, journal_version, author, message, \
         environment, config, resource_changes, resource_count FROM updates \
         ORDER BY stack_id, created_at, id",
        |r: &Row<'_>| {
            Ok::<_, rusqlite::Error>(Record::Update {
                id: r.get(0)?,
                stack_id: r.get(1)?,
                kind: r.get(2)?,
                dry_run: r.get(3)?,
                status: r.get(4)?,
                version: r.get(5)?,
                base_version: r.get(6)?,
                created_at: r.get(7)?,
                started_at: r.get(8)?,
                ended_at: r.get(9)?,
                lease_hash: r.get(10)?,
                lease_expires: r.get(11)?,
                journal_version: r.get(12)?,
                author: r.get(13)?,
                message: r.get(14)?,
                environment: r.get(15)?,
                config: r.get(16)?,
                resource_changes: r.get(17)?,
                resource_count: r.get(18)?,
            })
        }
    );
    each!(
        "SELECT update_id, state, sha256, size, resource_count, sequence, updated_at \
         FROM update_state ORDER BY update_id",
        |r: &Row<'_>| {
            Ok::<_, rusqlite::Error>(Record::UpdateState {
                update_id: r.get(0)?,
                state: r.get(1)?,
                sha256: r.get(2)?,
                size: r.get(3)?,
                resource_count: r.get(4)?,
                sequence: r.get(5)?,
                updated_at: r.get(6)?,
            })
        }
    );
    each!(
        "SELECT update_id, ordinal, sequence, hash, edits FROM update_deltas \
         ORDER BY update_id, ordinal",
        |r: &Row<'_>| {
            Ok::<_, rusqlite::Error>(Record::Delta {
                update_id: r.get(0)?,
                ordinal: r.get(1)?,
                sequence: r.get(2)?,
                hash: r.get(3)?,
                edits: r.get(4)?,
            })
        }
    );
    each!(
        "SELECT update_id, first_seq, last_seq, count, events FROM update_events \
         ORDER BY update_id, first_seq",
        |r: &Row<'_>| {
            Ok::<_, rusqlite::Error>(Record::Events {
                update_id: r.get(0)?,
                first_seq: r.get(1)?,
                last_seq: r.get(2)?,
                count: r.get(3)?,
                events: r.get(4)?,
            })
        }
    );
    each!(
        "SELECT update_id, ordinal, first_seq, last_seq, count, entries FROM journal_batches \
         ORDER BY update_id, ordinal",
        |r: &Row<'_>| {
            Ok::<_, rusqlite::Error>(Record::Journal {
                update_id: r.get(0)?,
                ordinal: r.get(1)?,
                first_seq: r.get(2)?,
                last_seq: r.get(3)?,
                count: r.get(4)?,
                entries: r.get(5)?,
            })
        }
    );
    Ok(report)
}

fn count(tx: &Connection, table: &str) -> StoreResult<i64> {
    tx.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .map_err(map_err)
}

pub fn load(tx: &Connection, records: Source, merge: Merge) -> StoreResult<LoadReport> {
    let empty = count(tx, "stacks")? == 0 && count(tx, "tokens")? == 0;
    if merge == Merge::Refuse && !empty {
        return Err(StoreError::Conflict(
            "the target database already holds stacks or tokens".into(),
        ));
    }
    let mut report = LoadReport::default();
    // Old stack id → new stack id (None: skipped).
    let mut stacks: HashMap<i64, Option<i64>> = HashMap::new();
    // Updates of skipped stacks.
    let mut skipped_updates: HashSet<String> = HashSet::new();
    let stack_of = |stacks: &HashMap<i64, Option<i64>>, old: i64| -> StoreResult<Option<i64>> {
        stacks.get(&old).copied().ok_or_else(|| {
            StoreError::Corrupt(format!(
                "a record refers to stack {old}, which is not in the backup"
            ))
        })
    };
    for rec in records {
        let rec = rec?;
        report.records += 1;
        match rec {
            Record::Meta { key, value } => {
                if merge == Merge::Refuse {
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        params![key, value],
                    )
                    .map_err(map_err)?;
                } else {
                    tx.execute(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
                        params![key, value],
                    )
                    .map_err(map_err)?;
                }
            }
            Record::Token {
                id,
                user_name,
                description,
                hash,
                created_at,
                expires_at,
                last_used_at,
                revoked_at,
            } => {
                tx.execute(
                    "INSERT OR IGNORE INTO tokens (id, user_name, description, hash, created_at, \
                     expires_at, last_used_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        id,
                        user_name,
                        description,
                        hash,
                        created_at,
                        expires_at,
                        last_used_at,
                        revoked_at
                    ],
                )
                .map_err(map_err)?;
            }
            Record::Stack {
                id,
                org,
                project,
                name,
                tags,
                created_at,
                last_version,
                current_version,
                active_update,
                resource_count,
                state_size,
                last_update_at,
                wrapped_key,
            } => {
                let exists: bool = tx
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM stacks WHERE org = ?1 AND project = ?2 \
                         AND name = ?3)",
                        params![org, project, name],
                        |r| r.get(0),
                    )
                    .map_err(map_err)?;
                if exists {
                    report
                        .skipped_stacks
                        .push(format!("{org}/{project}/{name}"));
                    stacks.insert(id, None);
                    continue;
                }
                let keep_id = merge == Merge::Refuse;
                tx.execute(
                    "INSERT INTO stacks (id, org, project, name, tags, created_at, last_version, \
                     current_version, active_update, resource_count, state_size, last_update_at, \
                     wrapped_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    params![
                        keep_id.then_some(id),
                        org,
                        project,
                        name,
                        tags,
                        created_at,
                        last_version,
                        current_version,
                        active_update,
                        resource_count,
                        state_size,
                        last_update_at,
                        wrapped_key
                    ],
                )
                .map_err(map_err)?;
                stacks.insert(id, Some(tx.last_insert_rowid()));
                report.stacks += 1;
            }
            Record::FormerName {
                org,
                project,
                name,
                stack_id,
                renamed_at,
            } => {
                if let Some(sid) = stack_of(&stacks, stack_id)? {
                    tx.execute(
                        "INSERT OR IGNORE INTO stack_former_names (org, project, name, stack_id, \
                         renamed_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![org, project, name, sid, renamed_at],
                    )
                    .map_err(map_err)?;
                }
            }
            Record::Version {
                stack_id,
                version,
                state,
                sha256,
                size,
                resource_count,
                created_at,
            } => {
                if let Some(sid) = stack_of(&stacks, stack_id)? {
                    tx.execute(
                        "INSERT INTO stack_versions (stack_id, version, state, sha256, size, \
                         resource_count, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            sid,
                            version,
                            state,
                            sha256,
                            size,
                            resource_count,
                            created_at
                        ],
                    )
                    .map_err(map_err)?;
                }
            }
            Record::Update {
                id,
                stack_id,
                kind,
                dry_run,
                status,
                version,
                base_version,
                created_at,
                started_at,
                ended_at,
                lease_hash,
                lease_expires,
                journal_version,
                author,
                message,
                environment,
                config,
                resource_changes,
                resource_count,
            } => match stack_of(&stacks, stack_id)? {
                None => {
                    skipped_updates.insert(id);
                }
                Some(sid) => {
                    tx.execute(
                        "INSERT INTO updates (id, stack_id, kind, dry_run, status, version, \
                         base_version, created_at, started_at, ended_at, lease_hash, \
                         lease_expires, journal_version, author, message, environment, config, \
                         resource_changes, resource_count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, \
                         ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
                        params![
                            id,
                            sid,
                            kind,
                            dry_run,
                            status,
                            version,
                            base_version,
                            created_at,
                            started_at,
                            ended_at,
                            lease_hash,
                            lease_expires,
                            journal_version,
                            author,
                            message,
                            environment,
                            config,
                            resource_changes,
                            resource_count
                        ],
                    )
                    .map_err(map_err)?;
                }
            },
            Record::UpdateState {
                update_id,
                state,
                sha256,
                size,
                resource_count,
                sequence,
                updated_at,
            } => {
                if !skipped_updates.contains(&update_id) {
                    tx.execute(
                        "INSERT INTO update_state (update_id, state, sha256, size, resource_count, \
                         sequence, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            update_id,
                            state,
                            sha256,
                            size,
                            resource_count,
                            sequence,
                            updated_at
                        ],
                    )
                    .map_err(map_err)?;
                }
            }
            Record::Delta {
                update_id,
                ordinal,
                sequence,
                hash,
                edits,
            } => {
                if !skipped_updates.contains(&update_id) {
                    tx.execute(
                        "INSERT INTO update_deltas (update_id, ordinal, sequence, hash, edits) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![update_id, ordinal, sequence, hash, edits],
                    )
                    .map_err(map_err)?;
                }
            }
            Record::Events {
                update_id,
                first_seq,
                last_seq,
                count,
                events,
            } => {
                if !skipped_updates.contains(&update_id) {
                    tx.execute(
                        "INSERT INTO update_events (update_id, first_seq, last_seq, count, events) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![update_id, first_seq, last_seq, count, events],
                    )
                    .map_err(map_err)?;
                }
            }
            Record::Journal {
                update_id,
                ordinal,
                first_seq,
                last_seq,
                count,
                entries,
            } => {
                if !skipped_updates.contains(&update_id) {
                    tx.execute(
                        "INSERT INTO journal_batches (update_id, ordinal, first_seq, last_seq, \
                         count, entries) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![update_id, ordinal, first_seq, last_seq, count, entries],
                    )
                    .map_err(map_err)?;
                }
            }
        }
    }
    Ok(report)
}
