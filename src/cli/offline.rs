//! Opening the database for a maintenance command: the same store and engine the server
//! uses, on a small runtime of its own.

use std::sync::Arc;

use crate::cli::args::DbArgs;
use crate::cli::error::{CliError, CliResult};
use crate::engine::clock::SystemClock;
use crate::engine::{Engine, EngineConfig};
use crate::store::StoreError;
use crate::store::lock::{InstanceLock, LockMode};
use crate::store::open::{Location, Opened, open};
use crate::store::postgres::PgOptions;
use crate::store::sqlite::SqliteOptions;

/// Takes the database's instance lock in `mode`, or says who holds it and why we need it.
pub fn instance_lock(loc: &Location, mode: LockMode, why: &'static str) -> CliResult<InstanceLock> {
    InstanceLock::acquire(loc, mode).map_err(|e| match e {
        StoreError::InUse => CliError::InUse {
            db: loc.shown(),
            why,
        },
        source => CliError::Open {
            db: loc.shown(),
            source,
        },
    })
}

pub struct Offline {
    pub engine: Engine,
    store: Opened,
    location: Location,
    rt: tokio::runtime::Runtime,
    _lock: Option<InstanceLock>,
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
    pub fn open(db: &DbArgs, opts: OpenOptions) -> CliResult<Offline> {
        let loc = db.location();
        if let Location::Sqlite(path) = &loc
            && !opts.create
            && !path.exists()
        {
            return Err(CliError::Invalid(format!(
                "no database at {} (pass --db or set PULUMI_BACKEND_DB)",
                path.display()
            )));
        }
        let lock = match opts.exclusive {
            Some(why) => Some(instance_lock(&loc, LockMode::Exclusive, why)?),
            None => None,
        };
        let master = db.master_key_if_available()?;
        if opts.need_key && master.is_none() {
            return Err(CliError::Invalid(format!(
                "this command needs the master key: pass --master-key (or \
                 PULUMI_BACKEND_MASTER_KEY) or --master-key-file; {} does not exist",
                db.default_key_file().display()
            )));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(CliError::io("cannot start the async runtime"))?;
        let store = rt
            .block_on(open(&loc, SqliteOptions::default(), PgOptions::default()))
            .map_err(|source| CliError::Open {
                db: loc.shown(),
                source,
            })?;
        let engine = rt.block_on(Engine::open_offline(
            store.store.clone(),
            master,
            EngineConfig::default(),
            Arc::new(SystemClock),
        ))?;
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
