//! The PostgreSQL store: the same SQL as SQLite's (see `sql`), on a pool of connections, so
//! that several `pbackend serve` processes can share one database.
//!
//! Concurrency: every write is a READ COMMITTED transaction of its own, run on the blocking
//! pool on a pooled connection; the rows an invariant depends on are locked inside it
//! (`SELECT … FOR UPDATE`: the stack for starts, finishes, imports, renames and deletes; the
//! update for every lease-guarded write), and the partial unique index on running updates
//! backs the one-running-update rule. A transaction that loses a serialization race or a
//! deadlock is rolled back and run again, up to [`ATTEMPTS`] times.
//!
//! The client is the synchronous `postgres` crate, which drives each connection on a small
//! runtime of its own: it is only ever used from the blocking pool, never on an async worker.

mod migrate;

use std::collections::HashMap;
use std::error::Error;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};
use tokio::sync::Semaphore;

use crate::store::sql::{Backend, BoxFuture, Dialect, Job, Param, Row, SqlStore, Tx, Value};
use crate::store::{StoreError, StoreResult};

/// Times a transaction is tried when it keeps losing serialization races.
pub const ATTEMPTS: usize = 5;

/// How a PostgreSQL database is used.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Connections held open at most.
    pub pool_size: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions { pool_size: 16 }
    }
}

/// The PostgreSQL store.
pub type PgStore = SqlStore<PgBackend>;

#[derive(Clone)]
pub struct PgBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: postgres::Config,
    idle: Mutex<Vec<Conn>>,
    slots: Semaphore,
    /// The URL with any password blanked, for messages.
    shown: String,
}

/// A pooled connection and the statements prepared on it.
struct Conn {
    client: Client,
    stmts: HashMap<String, Statement>,
}

/// Blanks the password of a `postgres://user:password@host/db` URL.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let auth = &url[s + 3..at];
            match auth.split_once(':') {
                Some((user, _)) => format!("{}{user}:****{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl SqlStore<PgBackend> {
    /// Connects to `url` (`postgres://…`) and brings the schema up to date. Replicas starting
    /// together migrate one at a time.
    pub async fn connect(url: &str, opts: PgOptions) -> StoreResult<Self> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("invalid database URL: {e}").into()))?;
        let inner = Arc::new(Inner {
            config,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(opts.pool_size.max(1)),
            shown: redact_url(url),
        });
        let init = inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = init.connect()?;
            migrate::run(&mut conn.client)?;
            init.put(conn);
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))??;
        Ok(SqlStore::new(PgBackend { inner }))
    }

    /// The database URL, password blanked.
    pub fn shown_url(&self) -> &str {
        &self.backend.inner.shown
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing a client blocks on its own small runtime, which is not allowed on an async
        // worker (where the last handle to a store may well be dropped): close them on a
        // thread of their own.
        let idle = self.idle.get_mut().map(std::mem::take).unwrap_or_default();
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("postgres-close".into())
                .spawn(move || drop(idle));
        }
    }
}

impl Inner {
    fn connect(&self) -> StoreResult<Conn> {
        let client = self.config.connect(NoTls).map_err(|e| {
            StoreError::Backend(format!("cannot connect to {}: {e}", self.shown).into())
        })?;
        Ok(Conn {
            client,
            stmts: HashMap::new(),
        })
    }

    fn take(&self) -> StoreResult<Conn> {
        let pooled = self.idle.lock().ok().and_then(|mut v| v.pop());
        match pooled {
            Some(c) if !c.client.is_closed() => Ok(c),
            _ => self.connect(),
        }
    }

    fn put(&self, conn: Conn) {
        if !conn.client.is_closed()
            && let Ok(mut v) = self.idle.lock()
        {
            v.push(conn);
        }
    }
}

impl PgBackend {
    fn run<T: Send + 'static>(&self, job: Job<T>, read_only: bool) -> BoxFuture<T> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let _slot = inner
                .slots
                .acquire()
                .await
                .map_err(|_| StoreError::Closed)?;
            let pool = inner.clone();
            let parent = tracing::Span::current();
            tokio::task::spawn_blocking(move || {
                let name = if read_only {
                    "store.read"
                } else {
                    "store.write"
                };
                let _span = crate::store::tx_span(&parent, name).entered();
                let mut conn = pool.take()?;
                let started = std::time::Instant::now();
                let result = run_tx(&mut conn, job, read_only);
                if !read_only {
                    crate::telemetry::metrics()
                        .write_transaction_duration
                        .observe(started.elapsed().as_secs_f64());
                }
                pool.put(conn);
                result
            })
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?
        })
    }
}

fn run_tx<T>(conn: &mut Conn, mut job: Job<T>, read_only: bool) -> StoreResult<T> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let mut builder = conn.client.build_transaction().read_only(read_only);
        if read_only {
            // One snapshot for the whole read: a dump or a multi-query view must not see a
            // write land between two of its statements. Read-only transactions at this level
            // never fail with serialization errors, so it costs nothing.
            builder = builder.isolation_level(postgres::IsolationLevel::RepeatableRead);
        }
        let mut tx = builder.start().map_err(map_pg)?;
        let mut pg = PgTx {
            tx: &mut tx,
            stmts: &mut conn.stmts,
            read_only,
        };
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut pg))).unwrap_or_else(|_| {
                Err(StoreError::Backend(
                    "a storage job panicked".to_string().into(),
                ))
            });
        match outcome {
            Ok(v) => match tx.commit() {
                Ok(()) => return Ok(v),
                Err(e) => match map_pg(e) {
                    StoreError::Transient(m) => last = Some(m),
                    other => return Err(other),
                },
            },
            // Dropping the transaction rolls it back.
            Err(StoreError::Transient(m)) => last = Some(m),
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Busy).inspect_err(|_| {
        tracing::warn!(cause = ?last, "a transaction kept losing serialization races");
    })
}

impl Backend for PgBackend {
    fn write<T: Send + 'static>(&self, job: Job<T>) -> BoxFuture<T> {
        self.run(job, false)
    }

    fn read<T: Send + 'static>(&self, job: Job<T>) -> BoxFuture<T> {
        self.run(job, true)
    }

    fn integrity(&self) -> BoxFuture<Vec<String>> {
        // Foreign keys and unique indexes are enforced by the server as rows are written;
        // what is left to check is that the indexes are usable.
        self.read(Box::new(|tx| {
            let bad = tx.query(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND NOT i.indisvalid",
                &[],
            )?;
            bad.iter()
                .map(|r| Ok(format!("postgres index {} is not valid", r.text(0)?)))
                .collect()
        }))
    }

    fn vacuum(&self) -> BoxFuture<()> {
        let inner = self.inner.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = inner.take()?;
                let r = conn.client.batch_execute("VACUUM").map_err(map_pg);
                inner.put(conn);
                r
            })
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?
        })
    }
}

/// A pooled connection inside a transaction.
struct PgTx<'a, 'c> {
    tx: &'a mut postgres::Transaction<'c>,
    stmts: &'a mut HashMap<String, Statement>,
    read_only: bool,
}

/// `?N` placeholders (SQLite's, which the shared SQL uses) as `$N`.
fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

impl PgTx<'_, '_> {
    fn statement(&mut self, sql: &str) -> StoreResult<Statement> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        let st = self.tx.prepare(&pg_sql(sql)).map_err(map_pg)?;
        self.stmts.insert(sql.to_owned(), st.clone());
        Ok(st)
    }
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match *self {
            Param::Int(None) | Param::Text(None) | Param::Blob(None) => Ok(IsNull::Yes),
            Param::Int(Some(v)) => match *ty {
                Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
                Type::BOOL => (v != 0).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Param::Text(Some(t)) => t.to_sql(ty, out),
            Param::Blob(Some(b)) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn value_of(row: &postgres::Row, i: usize) -> StoreResult<Value> {
    let ty = row.columns()[i].type_().clone();
    let v = match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map(|v| v.map(Value::Int)),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map(|v| v.map(|v| Value::Int(v.into()))),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)
            .map(|v| v.map(|v| Value::Int(v.into()))),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)
            .map(|v| v.map(|v| Value::Int(v.into()))),
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(i)
            .map(|v| v.map(Value::Blob)),
        _ => row
            .try_get::<_, Option<String>>(i)
            .map(|v| v.map(Value::Text)),
    };
    Ok(v.map_err(map_pg)?.unwrap_or(Value::Null))
}

impl Tx for PgTx<'_, '_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn for_update(&self) -> &'static str {
        if self.read_only { "" } else { " FOR UPDATE" }
    }

    fn exec(&mut self, sql: &str, p: &[Param<'_>]) -> StoreResult<u64> {
        let st = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = p.iter().map(|x| x as _).collect();
        self.tx.execute(&st, &params).map_err(map_pg)
    }

    fn query(&mut self, sql: &str, p: &[Param<'_>]) -> StoreResult<Vec<Row>> {
        let st = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = p.iter().map(|x| x as _).collect();
        let rows = self.tx.query(&st, &params).map_err(map_pg)?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| value_of(r, i))
                    .collect::<StoreResult<Vec<_>>>()
                    .map(Row)
            })
            .collect()
    }
}

/// PostgreSQL failures as the store's error kinds. The server's text stays in the log.
pub(crate) fn map_pg(e: postgres::Error) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => {
            tracing::debug!(detail = %e, "a constraint refused a write");
            StoreError::Conflict("a uniqueness rule refused the write".into())
        }
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            StoreError::Transient(e.to_string())
        }
        Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE || *c == SqlState::TOO_MANY_CONNECTIONS => {
            StoreError::Busy
        }
        _ => StoreError::backend(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_urls() {
        assert_eq!(
            pg_sql("SELECT a FROM t WHERE b = ?1 AND c = ?12 AND d = '?'"),
            "SELECT a FROM t WHERE b = $1 AND c = $12 AND d = '?'"
        );
        assert_eq!(
            redact_url("postgres://pb:s3cret@db:5432/pbackend"),
            "postgres://pb:****@db:5432/pbackend"
        );
        assert_eq!(
            redact_url("postgres://db/pbackend"),
            "postgres://db/pbackend"
        );
    }
}
