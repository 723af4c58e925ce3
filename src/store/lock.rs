//! Who may use a database at the same time. A server holds a lock for its whole life;
//! maintenance commands that must have the database to themselves (import over everything,
//! key rotation, journal replay) take it exclusively, so neither starts while the other runs.
//!
//! SQLite: an exclusive `flock` on `<db>.lock` beside the file; one server per file.
//! PostgreSQL: a session advisory lock held on a connection of its own. Servers take it
//! shared (replicas of one service run side by side); exclusive commands take it
//! exclusively. The connection lives on a thread of its own, because the synchronous client
//! must not be created or dropped on an async worker.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::store::open::Location;
use crate::store::{StoreError, StoreResult};

/// "pbackend" in ASCII, minus one: distinct from the migration lock's key.
const INSTANCE_LOCK: i64 = 0x7062_6163_6b65_6e63;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// A server: alone on SQLite, beside other replicas on PostgreSQL.
    Serve,
    /// A command that needs the database to itself.
    Exclusive,
}

/// Released when dropped.
pub struct InstanceLock {
    _file: Option<File>,
    /// Dropping the sender ends the thread that holds the connection, which closes it and so
    /// releases the lock.
    _session: Option<mpsc::Sender<()>>,
}

pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl InstanceLock {
    /// Takes the lock without waiting: `StoreError::InUse` when someone else holds it in a
    /// mode that excludes `mode`.
    pub fn acquire(loc: &Location, mode: LockMode) -> StoreResult<InstanceLock> {
        Ok(match loc {
            Location::Sqlite(path) => InstanceLock {
                _file: Some(file_lock(path)?),
                _session: None,
            },
            Location::Postgres(url) => InstanceLock {
                _file: None,
                _session: Some(session_lock(url, mode)?),
            },
        })
    }
}

fn file_lock(db: &Path) -> StoreResult<File> {
    let path = lock_path(db);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            StoreError::Backend(format!("cannot open the lock file {}: {e}", path.display()).into())
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Backend(
            format!("cannot lock {}: {e}", path.display()).into(),
        )),
    }
}

/// A server killed a moment ago still holds its lock until PostgreSQL notices the closed
/// connection, which takes milliseconds; an operator's command right after should not fail.
const SESSION_LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

fn session_lock(url: &str, mode: LockMode) -> StoreResult<mpsc::Sender<()>> {
    let config: postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Backend(format!("bad PostgreSQL URL: {e}").into()))?;
    let sql = match mode {
        LockMode::Serve => "SELECT pg_try_advisory_lock_shared($1)",
        LockMode::Exclusive => "SELECT pg_try_advisory_lock($1)",
    };
    let (taken_tx, taken_rx) = mpsc::channel::<StoreResult<()>>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("postgres-instance-lock".into())
        .spawn(move || {
            let attempt = (|| -> StoreResult<postgres::Client> {
                let mut client = config
                    .connect(postgres::NoTls)
                    .map_err(|e| StoreError::Backend(Box::new(e)))?;
                let deadline = std::time::Instant::now() + SESSION_LOCK_PATIENCE;
                loop {
                    let row = client
                        .query_one(sql, &[&INSTANCE_LOCK])
                        .map_err(|e| StoreError::Backend(Box::new(e)))?;
                    if row.get::<_, bool>(0) {
                        return Ok(client);
                    }
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::InUse);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            })();
            match attempt {
                Ok(client) => {
                    let _ = taken_tx.send(Ok(()));
                    // Blocks until the lock's owner drops its sender.
                    let _ = release_rx.recv();
                    drop(client);
                }
                Err(e) => {
                    let _ = taken_tx.send(Err(e));
                }
            }
        })
        .map_err(|e| StoreError::Backend(Box::new(e)))?;
    match taken_rx.recv() {
        Ok(Ok(())) => Ok(release_tx),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(StoreError::Backend(
            "the lock thread ended without an answer".to_string().into(),
        )),
    }
}
