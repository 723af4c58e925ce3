//! Schema migrations, tracked with `PRAGMA user_version`. Each step runs in its own
//! transaction and only when the database is older than it, so running them at every start is
//! safe. Steps are append-only: never edit a released one, add the next.

use rusqlite::{Connection, TransactionBehavior};

use crate::store::sql::Dialect;
use crate::store::sql::schema::{SHARED_STEPS, render};
use crate::store::{StoreError, StoreResult};

const STEPS: &[&str] = &[
    // 1: stacks, versions, updates, working checkpoints, engine events.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );

    CREATE TABLE stacks (
        id              INTEGER PRIMARY KEY,
        org             TEXT NOT NULL,
        project         TEXT NOT NULL,
        name            TEXT NOT NULL,
        tags            TEXT NOT NULL DEFAULT '{}',
        created_at      INTEGER NOT NULL,
        last_version    INTEGER NOT NULL DEFAULT 0,
        current_version INTEGER,
        active_update   TEXT,
        resource_count  INTEGER NOT NULL DEFAULT 0,
        state_size      INTEGER NOT NULL DEFAULT 0,
        last_update_at  INTEGER,
        wrapped_key     BLOB NOT NULL,
        UNIQUE (org, project, name)
    );
    CREATE INDEX stacks_by_project ON stacks (org, project);

    -- Names a stack had before a rename: deployments written under the old name still point
    -- their secrets provider there, so decrypt calls on it must reach the renamed stack.
    CREATE TABLE stack_former_names (
        org        TEXT NOT NULL,
        project    TEXT NOT NULL,
        name       TEXT NOT NULL,
        stack_id   INTEGER NOT NULL REFERENCES stacks (id) ON DELETE CASCADE,
        renamed_at INTEGER NOT NULL,
        PRIMARY KEY (org, project, name)
    );
    CREATE INDEX stack_former_names_by_stack ON stack_former_names (stack_id);

    CREATE TABLE stack_versions (
        stack_id       INTEGER NOT NULL REFERENCES stacks (id) ON DELETE CASCADE,
        version        INTEGER NOT NULL,
        state          BLOB NOT NULL,
        sha256         TEXT NOT NULL,
        size           INTEGER NOT NULL,
        resource_count INTEGER NOT NULL,
        created_at     INTEGER NOT NULL,
        PRIMARY KEY (stack_id, version)
    );

    CREATE TABLE updates (
        id               TEXT PRIMARY KEY,
        stack_id         INTEGER NOT NULL REFERENCES stacks (id) ON DELETE CASCADE,
        kind             TEXT NOT NULL,
        dry_run          INTEGER NOT NULL,
        status           TEXT NOT NULL,
        version          INTEGER NOT NULL DEFAULT 0,
        base_version     INTEGER,
        created_at       INTEGER NOT NULL,
        started_at       INTEGER,
        ended_at         INTEGER,
        lease_hash       BLOB,
        lease_expires    INTEGER,
        journal_version  INTEGER NOT NULL DEFAULT 0,
        author           TEXT NOT NULL,
        message          TEXT NOT NULL,
        environment      TEXT NOT NULL,
        config           TEXT NOT NULL,
        resource_changes TEXT,
        resource_count   INTEGER
    );
    CREATE INDEX updates_history ON updates (stack_id, dry_run, version);
    -- The lock: at most one running non-preview update per stack, enforced by the database.
    CREATE UNIQUE INDEX updates_one_running ON updates (stack_id)
        WHERE status = 'running' AND dry_run = 0;

    -- The latest state a running update reported (checkpoint mode).
    CREATE TABLE update_state (
        update_id      TEXT PRIMARY KEY REFERENCES updates (id) ON DELETE CASCADE,
        state          BLOB NOT NULL,
        sha256         TEXT NOT NULL,
        size           INTEGER NOT NULL,
        resource_count INTEGER,
        sequence       INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL
    );

    -- Engine events, one row per batch the CLI sent, kept gzip-compressed as received.
    CREATE TABLE update_events (
        update_id TEXT NOT NULL REFERENCES updates (id) ON DELETE CASCADE,
        first_seq INTEGER NOT NULL,
        last_seq  INTEGER NOT NULL,
        count     INTEGER NOT NULL,
        events    BLOB NOT NULL,
        PRIMARY KEY (update_id, first_seq)
    );
    "#,
    // 2: journal batches and delta checkpoints.
    r#"
    CREATE TABLE journal_batches (
        update_id TEXT NOT NULL REFERENCES updates (id) ON DELETE CASCADE,
        ordinal   INTEGER NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq  INTEGER NOT NULL,
        count     INTEGER NOT NULL,
        entries   BLOB NOT NULL,
        PRIMARY KEY (update_id, ordinal)
    );

    -- Deltas applied on top of update_state, in order; folded into it from time to time.
    CREATE TABLE update_deltas (
        update_id TEXT NOT NULL REFERENCES updates (id) ON DELETE CASCADE,
        ordinal   INTEGER NOT NULL,
        sequence  INTEGER NOT NULL,
        hash      TEXT NOT NULL,
        edits     BLOB NOT NULL,
        PRIMARY KEY (update_id, ordinal)
    );
    "#,
    // 3: managed access tokens.
    r#"
    CREATE TABLE tokens (
        id           TEXT PRIMARY KEY,
        user_name    TEXT NOT NULL,
        description  TEXT NOT NULL,
        hash         BLOB NOT NULL UNIQUE,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        last_used_at INTEGER,
        revoked_at   INTEGER
    );
    CREATE INDEX tokens_by_user ON tokens (user_name);
    "#,
    // 4: coherence windows: the window an update runs in, and the outputs a preview in a
    // window recorded when it completed.
    r#"
    CREATE TABLE update_windows (
        update_id         TEXT PRIMARY KEY REFERENCES updates (id) ON DELETE CASCADE,
        window_id         TEXT NOT NULL,
        seq               INTEGER NOT NULL,
        outputs           TEXT,
        secrets_providers TEXT
    );
    CREATE INDEX update_windows_by_window ON update_windows (window_id);
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = (STEPS.len() + SHARED_STEPS.len()) as i64;

/// Every step in order, the shared ones rendered for SQLite.
fn steps() -> Vec<std::borrow::Cow<'static, str>> {
    STEPS
        .iter()
        .map(|s| std::borrow::Cow::Borrowed(*s))
        .chain(
            SHARED_STEPS
                .iter()
                .map(|s| std::borrow::Cow::Owned(render(s, Dialect::Sqlite))),
        )
        .collect()
}

pub fn run(conn: &mut Connection) -> StoreResult<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "the database schema (version {current}) is newer than this pbackend understands \
             (version {SCHEMA_VERSION}); upgrade pbackend"
        )));
    }
    for (i, sql) in steps().iter().enumerate().skip(current as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        // Re-read inside the lock: another process may have migrated meanwhile.
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now > i as i64 {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Step 8 moves a version's state to the row's last column and keeps every row as it was.
    #[test]
    fn step_8_keeps_versions_and_puts_state_last() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        for (i, sql) in steps().iter().enumerate().take(7) {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", (i + 1) as i64)
                .unwrap();
        }
        conn.execute(
            "INSERT INTO stacks (id, org, project, name, created_at, wrapped_key) \
             VALUES (1, 'o', 'p', 's', 0, x'00')",
            [],
        )
        .unwrap();
        let state: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
        conn.execute(
            "INSERT INTO stack_versions VALUES (1, 3, ?1, 'abc', 99, 5, 42)",
            [&state],
        )
        .unwrap();

        run(&mut conn).unwrap();

        let cols: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('stack_versions') ORDER BY cid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(cols.last().map(String::as_str), Some("state"));
        let row: (i64, i64, Vec<u8>, String, i64, i64, i64) = conn
            .query_row(
                "SELECT stack_id, version, state, sha256, size, resource_count, created_at \
                 FROM stack_versions",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                },
            )
            .unwrap();
        assert_eq!(row, (1, 3, state, "abc".into(), 99, 5, 42));
        // Deleting the stack still removes its versions (the foreign key came along).
        conn.execute("DELETE FROM stacks", []).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM stack_versions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }
}
