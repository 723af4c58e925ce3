//! Opening the database for a maintenance command: the same store and engine the server
//! uses, on a small runtime of its own.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cli::args::DbArgs;
use crate::engine::clock::SystemClock;
use crate::engine::{Engine, EngineConfig};
use crate::store::open::{Location, Opened, open};
use crate::store::postgres::PgOptions;
use crate::store::sqlite::SqliteOptions;

/// The lock `serve` holds for its lifetime. Commands that must have the database to themselves
/// take it too, so neither can start while the other runs.
pub struct ServerLock {
    _file: File,
}

pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl ServerLock {
    pub fn acquire(db: &Path, purpose: &str) -> Result<ServerLock, String> {
        let path = lock_path(db);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(ServerLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(format!(
                "{} is in use by a running `pbackend serve` (or another maintenance command): \
                 {purpose}; stop it first",
                db.display()
            )),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(format!("cannot lock {}: {e}", path.display()))
            }
        }
    }
}

pub struct Offline {
    pub engine: Engine,
    store: Opened,
    location: Location,
    rt: tokio::runtime::Runtime,
    _lock: Option<ServerLock>,
}

#[derive(Default)]
pub struct OpenOptions {
    /// Create the database when absent (otherwise a missing file is an error, so that a typo
    /// in --db does not silently create an empty database).
    pub create: bool,
    /// Refuse while a server runs on the database, saying `why`.
    pub exclusive: Option<&'static str>,
    /// The master key is required (otherwise used when available).
    pub need_key: bool,
}

impl Offline {
    pub fn open(db: &DbArgs, opts: OpenOptions) -> Result<Offline, String> {
        let loc = db.location();
        let lock = match &loc {
            Location::Sqlite(path) => {
                if !opts.create && !path.exists() {
                    return Err(format!(
                        "no database at {} (pass --db or set PULUMI_BACKEND_DB)",
                        path.display()
                    ));
                }
                match opts.exclusive {
                    Some(why) => Some(ServerLock::acquire(path, why)?),
                    None => None,
                }
            }
            // Servers sharing a PostgreSQL database hold no lock a command could take: the
            // operator stops them first where a command says so.
            Location::Postgres(_) => None,
        };
        let master = db.master_key_if_available()?;
        if opts.need_key && master.is_none() {
            return Err(format!(
                "this command needs the master key: pass --master-key (or \
                 PULUMI_BACKEND_MASTER_KEY) or --master-key-file; {} does not exist",
                db.default_key_file().display()
            ));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        let store = rt
            .block_on(open(&loc, SqliteOptions::default(), PgOptions::default()))
            .map_err(|e| format!("cannot open the database {}: {e}", loc.shown()))?;
        let engine = rt
            .block_on(Engine::open_offline(
                store.store.clone(),
                master,
                EngineConfig::default(),
                Arc::new(SystemClock),
            ))
            .map_err(|e| e.to_string())?;
        Ok(Offline {
            engine,
            store,
            location: loc,
            rt,
            _lock: lock,
        })
    }

    /// The database, as messages name it.
    pub fn shown(&self) -> String {
        self.location.shown()
    }

    pub fn run<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.rt.block_on(f)
    }
}

impl Drop for Offline {
    fn drop(&mut self) {
        self.store.close();
    }
}
