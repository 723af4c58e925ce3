//! The SQLite store: one file, WAL mode.
//!
//! Threading: SQLite calls block, so none of them run on the async runtime's workers.
//! * All writes go to **one writer thread** that owns the only read-write connection. Callers
//!   send it a closure over a channel; it runs the closure inside `BEGIN IMMEDIATE … COMMIT`
//!   and answers through a oneshot channel *after* the commit, so an acknowledged write is on
//!   disk. One writer means no `SQLITE_BUSY` between our own writers, and each invariant
//!   (one running update per stack, lease checks, version numbering) is checked and applied in
//!   the same transaction.
//! * Reads run on tokio's blocking pool, each on a connection taken from a small pool of
//!   `query_only` connections; WAL lets them proceed while the writer commits.
//!
//! Durability ([`Durability`]): with `Normal` (`synchronous=NORMAL` in WAL mode) a commit has
//! been written to the WAL file before the writer answers, so it survives the process being
//! killed (`kill -9`): the OS holds the pages and the next open replays the WAL. It is not
//! fsynced at each commit, so a power loss or kernel crash can lose the last transactions
//! (never corrupt the database). With `Full` the WAL is fsynced at every commit, so an
//! acknowledged write also survives power loss, at the cost of an fsync per write.
//!
//! The writer's queue is bounded: a write that cannot be queued within [`QUEUE_WAIT`] fails
//! with `Busy` (the server answers 503 with `Retry-After`) instead of piling up in memory.
//! A job that panics rolls back and answers an error; the writer keeps serving.
//!
//! Other processes (the operator CLI) may open the same file: `busy_timeout` makes them wait
//! for the writer instead of failing at once.

mod migrate;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::store::sql::{Backend, BoxFuture, Dialect, Job, Param, Row, SqlStore, Tx, Value};
use crate::store::{StoreError, StoreResult};

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_IDLE_READERS: usize = 8;
/// How long a write waits for room in the writer's queue before it fails with `Busy`.
pub const QUEUE_WAIT: Duration = Duration::from_secs(10);

type WriterJob = Box<dyn FnOnce(&mut Connection) + Send>;

/// What an acknowledged write survives (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Process crashes; the last commits may be lost to an OS crash or power loss.
    #[default]
    Normal,
    /// Process crashes, OS crashes and power loss: an fsync per commit.
    Full,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        }
    }
}

/// How a database is opened.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub durability: Durability,
    /// Writes waiting for the writer thread at most.
    pub writer_queue: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Normal,
            writer_queue: 1024,
        }
    }
}

/// The SQLite store.
pub type SqliteStore = SqlStore<SqliteBackend>;

/// Handle to an open SQLite database. Cheap to clone.
#[derive(Clone)]
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    durability: Durability,
    writer: Mutex<Option<mpsc::Sender<WriterJob>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
}

impl SqlStore<SqliteBackend> {
    /// Opens (creating when absent) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> StoreResult<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens with explicit options. A new database file is created readable by its owner
    /// only; SQLite gives its WAL and shared-memory files the same permissions.
    pub fn open_with(path: &Path, opts: SqliteOptions) -> StoreResult<Self> {
        create_owner_only(path)?;
        let mut conn = open_connection(path, false, opts.durability)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        migrate::run(&mut conn)?;
        let (tx, rx) = mpsc::channel::<WriterJob>(opts.writer_queue.max(1));
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(StoreError::backend)?;
        Ok(SqlStore::new(SqliteBackend {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                durability: opts.durability,
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(thread)),
                readers: Mutex::new(Vec::new()),
            }),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.backend.inner.path
    }

    /// Stops the writer thread after the writes already queued, and closes every connection.
    /// Later calls fail with `StoreError::Closed`.
    pub fn close(&self) {
        self.backend.close()
    }
}

impl SqliteBackend {
    /// Stops the writer thread after the writes already queued, and closes every connection.
    /// Later calls fail with `StoreError::Closed`.
    pub fn close(&self) {
        if let Ok(mut w) = self.inner.writer.lock() {
            w.take();
        }
        let handle = self
            .inner
            .writer_thread
            .lock()
            .ok()
            .and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
        if let Ok(mut r) = self.inner.readers.lock() {
            r.clear();
        }
    }

    /// Runs `f` in a write transaction on the writer thread; resolves after the commit.
    fn write_tx<T, F>(
        &self,
        f: F,
    ) -> impl std::future::Future<Output = StoreResult<T>> + Send + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.write_raw(move |conn| in_transaction(conn, "BEGIN IMMEDIATE", f))
    }

    /// Runs `f` on the writer's connection outside any transaction (for statements such as
    /// `VACUUM` that cannot run inside one).
    fn write_raw<T, F>(
        &self,
        f: F,
    ) -> impl std::future::Future<Output = StoreResult<T>> + Send + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel();
        // The transaction's span is a child of the request that asked for it, though it runs
        // on the writer thread (traces follow a request down to its commit).
        let parent = tracing::Span::current();
        let job: WriterJob = Box::new(move |conn: &mut Connection| {
            let _span = crate::store::tx_span(&parent, "store.write").entered();
            let _ = reply_tx.send(catch_panic(|| f(conn)));
        });
        let writer = self.inner.writer.lock().ok().and_then(|g| g.clone());
        async move {
            let Some(writer) = writer else {
                return Err(StoreError::Closed);
            };
            match tokio::time::timeout(QUEUE_WAIT, writer.send(job)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(StoreError::Closed),
                Err(_) => return Err(StoreError::Busy),
            }
            reply_rx.await.map_err(|_| StoreError::Closed)?
        }
    }

    /// Runs `f` on a pooled read connection off the async workers ([`run_read`]), inside one
    /// read transaction so that multi-statement reads see one snapshot.
    fn read_tx<T, F>(
        &self,
        f: F,
    ) -> impl std::future::Future<Output = StoreResult<T>> + Send + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let parent = tracing::Span::current();
        async move {
            let job = move || {
                let _span = crate::store::tx_span(&parent, "store.read").entered();
                let conn = inner.take_reader()?;
                let result = catch_panic(|| in_transaction(&conn, "BEGIN", f));
                roll_back_leftover(&conn);
                inner.put_reader(conn);
                result
            };
            run_read(job).await
        }
    }
}

impl Backend for SqliteBackend {
    fn write<T: Send + 'static>(&self, mut job: Job<T>) -> BoxFuture<T> {
        Box::pin(self.write_tx(move |conn| job(&mut SqliteTx { conn })))
    }

    fn read<T: Send + 'static>(&self, mut job: Job<T>) -> BoxFuture<T> {
        Box::pin(self.read_tx(move |conn| job(&mut SqliteTx { conn })))
    }

    fn integrity(&self) -> BoxFuture<Vec<String>> {
        Box::pin(self.read_tx(integrity_problems))
    }

    fn vacuum(&self) -> BoxFuture<()> {
        Box::pin(self.write_raw(|conn| Ok(conn.execute_batch("VACUUM")?)))
    }
}

/// Runs a read job off the async workers. On the multi-threaded runtime it runs in place:
/// `block_in_place` first hands this worker's other tasks to another thread, so nothing waits
/// behind the read, and the request skips the two thread wake-ups that a hop to the blocking
/// pool and back costs. Reads here are page-cache lookups of microseconds, and on a virtual
/// machine those wake-ups were most of a small read's latency: `batch-encrypt`, one read, went
/// from 0.2 to 0.1 ms. Elsewhere (a current-thread runtime, as in unit tests) it goes to the
/// blocking pool.
async fn run_read<T: Send + 'static>(
    job: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        return tokio::task::block_in_place(job);
    }
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))?
}

/// A SQLite connection inside a transaction.
struct SqliteTx<'a> {
    conn: &'a Connection,
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Param::Int(Some(v)) => ToSqlOutput::from(v),
            Param::Text(Some(t)) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Param::Blob(Some(b)) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Param::Int(None) | Param::Text(None) | Param::Blob(None) => {
                ToSqlOutput::Borrowed(ValueRef::Null)
            }
        })
    }
}

fn row_of(r: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<Row> {
    let mut vals = Vec::with_capacity(n);
    for i in 0..n {
        vals.push(match r.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Int(v),
            // Nothing we store is a float; read one as its integer part rather than fail.
            ValueRef::Real(f) => Value::Int(f as i64),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        });
    }
    Ok(Row(vals))
}

impl Tx for SqliteTx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn for_update(&self) -> &'static str {
        ""
    }

    fn exec(&mut self, sql: &str, p: &[Param<'_>]) -> StoreResult<u64> {
        let mut st = self.conn.prepare_cached(sql)?;
        Ok(st.execute(rusqlite::params_from_iter(p))? as u64)
    }

    fn query(&mut self, sql: &str, p: &[Param<'_>]) -> StoreResult<Vec<Row>> {
        let mut st = self.conn.prepare_cached(sql)?;
        let n = st.column_count();
        let rows = st.query_map(rusqlite::params_from_iter(p), |r| row_of(r, n))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn fill_blob(&mut self, table: &str, column: &str, rowid: i64, data: &[u8]) -> StoreResult<()> {
        let mut blob = self
            .conn
            .blob_open(rusqlite::MAIN_DB, table, column, rowid, false)?;
        if blob.len() != data.len() {
            return Err(StoreError::Corrupt(format!(
                "{table}.{column} holds {} bytes where {} were reserved",
                blob.len(),
                data.len()
            )));
        }
        blob.write_all_at(data, 0)?;
        Ok(())
    }

    fn read_blob(&mut self, table: &str, column: &str, rowid: i64) -> StoreResult<Vec<u8>> {
        let blob = self
            .conn
            .blob_open(rusqlite::MAIN_DB, table, column, rowid, true)?;
        let mut out = vec![0; blob.len()];
        blob.read_at_exact(&mut out, 0)?;
        Ok(out)
    }
}

/// SQLite's own checks: page-level integrity and foreign keys.
fn integrity_problems(conn: &Connection) -> StoreResult<Vec<String>> {
    let mut problems = Vec::new();
    let mut st = conn.prepare("PRAGMA integrity_check")?;
    let lines = st
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    problems.extend(
        lines
            .into_iter()
            .filter(|l| l != "ok")
            .map(|l| format!("sqlite integrity_check: {l}")),
    );
    let mut st = conn.prepare("PRAGMA foreign_key_check")?;
    let orphans = st
        .query_map([], |r| {
            Ok(format!(
                "orphan row: {} rowid {} refers to a missing {}",
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?.unwrap_or(-1),
                r.get::<_, String>(2)?
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    problems.extend(orphans);
    Ok(problems)
}

impl Inner {
    fn take_reader(&self) -> StoreResult<Connection> {
        if self.writer.lock().map(|w| w.is_none()).unwrap_or(true) {
            return Err(StoreError::Closed);
        }
        if let Some(conn) = self.readers.lock().ok().and_then(|mut r| r.pop()) {
            return Ok(conn);
        }
        open_connection(&self.path, true, self.durability)
    }

    fn put_reader(&self, conn: Connection) {
        if let Ok(mut r) = self.readers.lock()
            && r.len() < MAX_IDLE_READERS
        {
            r.push(conn);
        }
    }
}

/// Runs `f` between `begin` and `COMMIT` (or `ROLLBACK` when it fails). The statements come
/// from the connection's cache: rusqlite's `Transaction` parses them anew every time, which
/// showed in profiles at thousands of small transactions per update.
fn in_transaction<T>(
    conn: &Connection,
    begin: &str,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    let run = |sql: &str| -> StoreResult<usize> {
        Ok(conn.prepare_cached(sql).and_then(|mut st| st.execute([]))?)
    };
    run(begin)?;
    let result = f(conn).and_then(|value| run("COMMIT").map(|_| value));
    if result.is_err() {
        let _ = run("ROLLBACK");
    }
    result
}

/// Rolls back whatever a job that panicked left open, so the next job starts clean.
fn roll_back_leftover(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

/// Runs a store job, turning a panic into an error for its caller (and a log line).
fn catch_panic<T>(f: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        tracing::error!(panic = %what, "a storage job panicked");
        Err(StoreError::backend(std::io::Error::other(format!(
            "a storage job panicked: {what}"
        ))))
    })
}

fn writer_loop(mut conn: Connection, mut rx: mpsc::Receiver<WriterJob>) {
    let metrics = crate::telemetry::metrics();
    while let Some(job) = rx.blocking_recv() {
        metrics.writer_queue.set(rx.len() as i64);
        let started = std::time::Instant::now();
        // Jobs catch their own panics (see `write_raw`); this one guards the loop itself.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn)));
        roll_back_leftover(&conn);
        metrics
            .write_transaction_duration
            .observe(started.elapsed().as_secs_f64());
    }
    // Fold the WAL back into the main file so a closed database is one self-contained file.
    let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
}

/// Creates an empty database file readable by its owner only, when none exists yet.
fn create_owner_only(path: &Path) -> StoreResult<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::backend(e)),
    }
}

fn open_connection(
    path: &Path,
    query_only: bool,
    durability: Durability,
) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Room for every statement of the hot paths (the default keeps 16).
    conn.set_prepared_statement_cache_capacity(64);
    // Plans must not depend on bound values. Otherwise a query on `updates` that the planner
    // weighs against the partial index `updates_one_running` (a constant in its WHERE) marks
    // its parameters "re-prepare when rebound", and every execution compiled the statement
    // anew: two of them per journal batch (the lease checks), ~90,000 instructions each.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.pragma_update(None, "synchronous", durability.pragma())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if query_only {
        conn.pragma_update(None, "query_only", "ON")?;
    }
    Ok(conn)
}

/// SQLite failures as the store's error kinds.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        map_err(e)
    }
}

fn map_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(code, msg) = &e {
        match code.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => return StoreError::Busy,
            ErrorCode::ConstraintViolation => {
                // The constraint's text names tables and columns: for the log, not a client.
                tracing::debug!(detail = ?msg, "a constraint refused a write");
                return StoreError::Conflict("a uniqueness rule refused the write".into());
            }
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                return StoreError::Corrupt(e.to_string());
            }
            _ => {}
        }
    }
    StoreError::backend(e)
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
        if let Some(h) = self.writer_thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_job_answers_an_error_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let store = &store.backend;
        let r: StoreResult<()> = store.write_tx(|_| panic!("boom")).await;
        match r {
            Err(StoreError::Backend(e)) => assert!(e.to_string().contains("boom")),
            other => panic!("expected a backend error, got {other:?}"),
        }
        let r: StoreResult<()> = store.read_tx(|_| panic!("boom")).await;
        assert!(matches!(r, Err(StoreError::Backend(_))));
        let n: i64 = store
            .write_tx(|c| Ok(c.query_row("SELECT 41 + 1", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 42);
    }

    /// A full writer queue answers `Busy` after `QUEUE_WAIT` instead of growing.
    #[tokio::test(start_paused = true)]
    async fn a_full_writer_queue_answers_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with(
            &dir.path().join("t.db"),
            SqliteOptions {
                writer_queue: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let backend = store.backend.clone();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        // Job 1 holds the writer thread; job 2 fills the queue of one.
        let first = tokio::spawn(backend.write_tx(move |_| {
            let _ = started_tx.send(());
            let _ = held.recv();
            Ok(1)
        }));
        started.await.unwrap();
        let second = tokio::spawn(backend.write_tx(|_| Ok(2)));
        tokio::task::yield_now().await;
        let third: StoreResult<i32> = backend.write_tx(|_| Ok(3)).await;
        assert!(matches!(third, Err(StoreError::Busy)), "{third:?}");
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(second.await.unwrap().unwrap(), 2);
    }

    #[tokio::test]
    async fn a_new_database_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = SqliteStore::open(&path).unwrap();
        store
            .backend
            .write_tx(|c| Ok(c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")?))
            .await
            .unwrap();
        for p in [path.clone(), dir.path().join("t.db-wal")] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }
}
