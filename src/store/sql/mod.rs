//! The SQL behind every [`Store`] method, written once for both databases.
//!
//! Each store method is one function over a [`Tx`]: a connection inside a transaction that a
//! [`Backend`] hands out. The SQLite backend runs writes on its single writer thread under
//! `BEGIN IMMEDIATE`, so its transactions never interleave; the PostgreSQL backend runs them
//! concurrently on pooled connections under READ COMMITTED, where the rows an invariant
//! depends on are locked first ([`Tx::for_update`]) and a transaction that lost a
//! serialization race is run again. So every job may run more than once and must only
//! borrow what it captures.
//!
//! Statements are written in the common subset of the two dialects with SQLite's `?N`
//! placeholders (rewritten to `$N` for PostgreSQL); the few places they differ ask
//! [`Tx::dialect`]. Values cross as [`Param`] and come back as [`Row`]s of [`Value`]s.

mod access;
mod audit;
pub mod backup;
mod hooks;
mod logins;
mod people;
mod rows;
pub mod schema;
mod stacks;
mod state;
mod teams;
mod tokens;
mod updates;

use std::future::Future;
use std::pin::Pin;

use crate::store::backup::{DumpReport, LoadReport, Merge, Sink, Source};
use crate::store::*;

/// The two SQL dialects, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A statement parameter.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Blob(Option<&'a [u8]>),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}
impl From<Option<i64>> for Param<'_> {
    fn from(v: Option<i64>) -> Self {
        Param::Int(v)
    }
}
impl From<bool> for Param<'_> {
    fn from(v: bool) -> Self {
        Param::Int(Some(i64::from(v)))
    }
}
impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(Some(v))
    }
}
impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Param::Text(Some(v))
    }
}
impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Param::Text(v)
    }
}
impl<'a> From<&'a Option<String>> for Param<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Param::Text(v.as_deref())
    }
}
impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(v: &'a [u8]) -> Self {
        Param::Blob(Some(v))
    }
}
impl<'a> From<&'a Vec<u8>> for Param<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Param::Blob(Some(v))
    }
}
impl<'a> From<&'a Option<Vec<u8>>> for Param<'a> {
    fn from(v: &'a Option<Vec<u8>>) -> Self {
        Param::Blob(v.as_deref())
    }
}

/// Builds a parameter list: `p![a, b, c]`.
macro_rules! p {
    ($($e:expr),* $(,)?) => {
        &[$($crate::store::sql::Param::from($e)),*][..]
    };
}
pub(crate) use p;

/// A column value as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Value>);

fn corrupt(i: usize, want: &str, got: &Value) -> StoreError {
    StoreError::Corrupt(format!("column {i}: expected {want}, found {got:?}"))
}

impl Row {
    fn at(&self, i: usize) -> StoreResult<&Value> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("no column {i}")))
    }

    pub fn i64(&self, i: usize) -> StoreResult<i64> {
        self.opt_i64(i)?
            .ok_or_else(|| corrupt(i, "a number", &Value::Null))
    }

    pub fn opt_i64(&self, i: usize) -> StoreResult<Option<i64>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            other => Err(corrupt(i, "a number", other)),
        }
    }

    pub fn bool(&self, i: usize) -> StoreResult<bool> {
        Ok(self.i64(i)? != 0)
    }

    pub fn text(&self, i: usize) -> StoreResult<String> {
        self.opt_text(i)?
            .ok_or_else(|| corrupt(i, "text", &Value::Null))
    }

    pub fn opt_text(&self, i: usize) -> StoreResult<Option<String>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            other => Err(corrupt(i, "text", other)),
        }
    }

    /// Takes a binary column out of the row (no copy).
    pub fn blob(&mut self, i: usize) -> StoreResult<Vec<u8>> {
        self.opt_blob(i)?
            .ok_or_else(|| corrupt(i, "bytes", &Value::Null))
    }

    pub fn opt_blob(&mut self, i: usize) -> StoreResult<Option<Vec<u8>>> {
        let v = self
            .0
            .get_mut(i)
            .ok_or_else(|| StoreError::Corrupt(format!("no column {i}")))?;
        match std::mem::replace(v, Value::Null) {
            Value::Null => Ok(None),
            Value::Blob(b) => Ok(Some(b)),
            // SQLite stores what it is given: an empty blob may read back as text.
            Value::Text(t) => Ok(Some(t.into_bytes())),
            other => Err(corrupt(i, "bytes", &other)),
        }
    }
}

/// A connection inside a transaction.
pub trait Tx {
    fn dialect(&self) -> Dialect;
    /// The clause that locks the rows a write transaction's invariant depends on: empty for
    /// reads and under SQLite's single writer, ` FOR UPDATE` for PostgreSQL writes.
    fn for_update(&self) -> &'static str;
    /// Runs a statement; the number of rows it changed.
    fn exec(&mut self, sql: &str, p: &[Param<'_>]) -> StoreResult<u64>;
    fn query(&mut self, sql: &str, p: &[Param<'_>]) -> StoreResult<Vec<Row>>;
    /// Writes `data` into `table.column` of the row `rowid`, which already holds as many zero
    /// bytes (SQLite's incremental BLOB I/O: the value goes straight to the database's pages,
    /// never copied whole in memory). Only SQLite has it; see [`Tx::dialect`].
    fn fill_blob(&mut self, table: &str, column: &str, rowid: i64, data: &[u8]) -> StoreResult<()> {
        let _ = (table, column, rowid, data);
        Err(StoreError::Corrupt(
            "this database has no incremental BLOB I/O".into(),
        ))
    }
    /// Reads `table.column` of the row `rowid` straight into one buffer (SQLite's incremental
    /// BLOB I/O; a plain read of a large value is assembled in SQLite's memory first and then
    /// copied). Only SQLite has it.
    fn read_blob(&mut self, table: &str, column: &str, rowid: i64) -> StoreResult<Vec<u8>> {
        let _ = (table, column, rowid);
        Err(StoreError::Corrupt(
            "this database has no incremental BLOB I/O".into(),
        ))
    }
}

impl dyn Tx + '_ {
    /// The first row, if any.
    pub fn one(&mut self, sql: &str, p: &[Param<'_>]) -> StoreResult<Option<Row>> {
        Ok(self.query(sql, p)?.into_iter().next())
    }

    /// The first column of the first row, as a number (0 when there is no row or it is NULL).
    pub fn count(&mut self, sql: &str, p: &[Param<'_>]) -> StoreResult<i64> {
        Ok(match self.one(sql, p)? {
            Some(r) => r.opt_i64(0)?.unwrap_or(0),
            None => 0,
        })
    }
}

/// A store job: runs inside one transaction, perhaps more than once (see the module comment).
pub type Job<T> = Box<dyn FnMut(&mut dyn Tx) -> StoreResult<T> + Send>;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send>>;

/// What a database must provide for [`SqlStore`] to serve the whole [`Store`] trait.
pub trait Backend: Send + Sync + 'static {
    /// Runs `job` in a write transaction; resolves after the commit.
    fn write<T: Send + 'static>(&self, job: Job<T>) -> BoxFuture<T>;
    /// Runs `job` in a read transaction (one consistent snapshot).
    fn read<T: Send + 'static>(&self, job: Job<T>) -> BoxFuture<T>;
    /// Problems the database's own consistency checks find.
    fn integrity(&self) -> BoxFuture<Vec<String>>;
    /// Gives unused space back to the operating system.
    fn vacuum(&self) -> BoxFuture<()>;
}

/// The [`Store`] over any [`Backend`].
#[derive(Clone)]
pub struct SqlStore<B: Backend> {
    pub(crate) backend: B,
}

impl<B: Backend> SqlStore<B> {
    pub fn new(backend: B) -> Self {
        SqlStore { backend }
    }

    fn w<T: Send + 'static>(
        &self,
        job: impl FnMut(&mut dyn Tx) -> StoreResult<T> + Send + 'static,
    ) -> BoxFuture<T> {
        self.backend.write(Box::new(job))
    }

    /// A write whose `notes` go in the same transaction, when `changed` says the job's
    /// outcome is a change (a refused or repeated change leaves none).
    fn wn<T: Send + 'static>(
        &self,
        notes: Notes,
        changed: fn(&T) -> bool,
        mut job: impl FnMut(&mut dyn Tx) -> StoreResult<T> + Send + 'static,
    ) -> BoxFuture<T> {
        let audit = notes.audit.clone();
        let write = self.w(move |tx| {
            let out = job(tx)?;
            if changed(&out) && !notes.is_empty() {
                write_notes(tx, &notes)?;
            }
            Ok(out)
        });
        Box::pin(async move {
            let out = write.await?;
            if changed(&out) {
                audit
                    .iter()
                    .for_each(integration::NewAuditEvent::log_committed);
            }
            Ok(out)
        })
    }

    fn r<T: Send + 'static>(
        &self,
        job: impl FnMut(&mut dyn Tx) -> StoreResult<T> + Send + 'static,
    ) -> BoxFuture<T> {
        self.backend.read(Box::new(job))
    }
}

impl<B: Backend> Store for SqlStore<B> {
    fn meta_get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        let key = key.to_owned();
        self.r(move |tx| stacks::meta_get(tx, &key))
    }

    fn meta_put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()> {
        let key = key.to_owned();
        self.w(move |tx| stacks::meta_put(tx, &key, &value))
    }

    fn create_stack(&self, mut s: NewStack) -> StoreFuture<'_, StackRow> {
        let notes = std::mem::take(&mut s.notes);
        self.wn(notes, |_| true, move |tx| stacks::create(tx, &s))
    }

    fn get_stack<'a>(&'a self, key: &'a StackKey) -> StoreFuture<'a, Option<StackRow>> {
        let key = key.clone();
        self.r(move |tx| rows::stack_by_key(tx, &key))
    }

    fn get_stack_or_former<'a>(&'a self, key: &'a StackKey) -> StoreFuture<'a, Option<StackRow>> {
        let key = key.clone();
        self.r(move |tx| stacks::by_key_or_former(tx, &key))
    }

    fn list_stacks(&self, q: StackQuery) -> StoreFuture<'_, Vec<StackRow>> {
        self.r(move |tx| stacks::list(tx, &q))
    }

    fn project_exists<'a>(&'a self, org: &'a str, project: &'a str) -> StoreFuture<'a, bool> {
        let (org, project) = (org.to_owned(), project.to_owned());
        self.r(move |tx| stacks::project_exists(tx, &org, &project))
    }

    fn delete_stack(
        &self,
        stack_id: i64,
        guard: StackGuard,
        notes: Notes,
    ) -> StoreFuture<'_, Guarded<bool>> {
        self.wn(
            notes,
            |o| matches!(o, Guarded::Done(true)),
            move |tx| stacks::delete(tx, stack_id, guard),
        )
    }

    fn set_stack_tags(&self, stack_id: i64, tags: Tags, notes: Notes) -> StoreFuture<'_, ()> {
        self.wn(
            notes,
            |_| true,
            move |tx| stacks::set_tags(tx, stack_id, &tags),
        )
    }

    fn rename_stack(
        &self,
        stack_id: i64,
        to: StackKey,
        guard: StackGuard,
        notes: Notes,
    ) -> StoreFuture<'_, Guarded<StackRow>> {
        self.wn(
            notes,
            |o| matches!(o, Guarded::Done(_)),
            move |tx| stacks::rename(tx, stack_id, &to, guard),
        )
    }

    fn get_stack_key(&self, stack_id: i64) -> StoreFuture<'_, Option<Vec<u8>>> {
        self.r(move |tx| stacks::wrapped_key(tx, stack_id))
    }

    fn get_secrets_key<'a>(&'a self, key: &'a StackKey) -> StoreFuture<'a, Option<(i64, Vec<u8>)>> {
        let key = key.clone();
        self.r(move |tx| stacks::secrets_key(tx, &key))
    }

    fn create_update(&self, u: NewUpdate) -> StoreFuture<'_, ()> {
        self.w(move |tx| updates::insert(tx, &u, UpdateStatus::NotStarted))
    }

    fn get_update<'a>(&'a self, update_id: &'a str) -> StoreFuture<'a, Option<UpdateRow>> {
        let id = update_id.to_owned();
        self.r(move |tx| rows::update_by_id(tx, &id, false))
    }

    fn start_update(&self, s: StartUpdate) -> StoreFuture<'_, StartOutcome> {
        let notes = s.notes.clone();
        self.wn(notes, started, move |tx| updates::start(tx, &s))
    }

    fn begin_update(&self, u: NewUpdate, s: StartUpdate) -> StoreFuture<'_, StartOutcome> {
        let notes = s.notes.clone();
        self.wn(notes, started, move |tx| updates::begin(tx, &u, &s))
    }

    fn update_window<'a>(&'a self, update_id: &'a str) -> StoreFuture<'a, Option<String>> {
        let id = update_id.to_owned();
        self.r(move |tx| updates::window_of(tx, &id))
    }

    fn window_members<'a>(
        &'a self,
        stack_id: i64,
        window: &'a str,
    ) -> StoreFuture<'a, Vec<WindowMember>> {
        let window = window.to_owned();
        self.r(move |tx| updates::window_members(tx, stack_id, &window))
    }

    fn lease_state<'a>(
        &'a self,
        key: &'a StackKey,
        update_id: &'a str,
    ) -> StoreFuture<'a, Option<LeaseState>> {
        let (key, id) = (key.clone(), update_id.to_owned());
        self.r(move |tx| updates::lease_state(tx, &key, &id))
    }

    fn renew_lease(&self, lease: LeaseCheck, expires: i64) -> StoreFuture<'_, ()> {
        self.w(move |tx| updates::renew(tx, &lease, expires))
    }

    fn save_checkpoint(&self, lease: LeaseCheck, w: CheckpointWrite) -> StoreFuture<'_, ()> {
        self.w(move |tx| state::save_checkpoint(tx, &lease, &w))
    }

    fn get_working_state<'a>(
        &'a self,
        update_id: &'a str,
    ) -> StoreFuture<'a, Option<WorkingState>> {
        let id = update_id.to_owned();
        self.r(move |tx| state::working(tx, &id))
    }

    fn check_lease(&self, lease: LeaseCheck) -> StoreFuture<'_, ()> {
        self.r(move |tx| updates::check_lease(tx, &lease, false))
    }

    fn progress<'a>(&'a self, update_id: &'a str) -> StoreFuture<'a, Progress> {
        let id = update_id.to_owned();
        self.r(move |tx| state::progress(tx, &id))
    }

    fn append_journal(&self, lease: LeaseCheck, b: JournalBatch) -> StoreFuture<'_, i64> {
        self.w(move |tx| state::append_journal(tx, &lease, &b))
    }

    fn list_journal_batches<'a>(
        &'a self,
        update_id: &'a str,
    ) -> StoreFuture<'a, Vec<JournalBatch>> {
        let id = update_id.to_owned();
        self.r(move |tx| state::journal_batches(tx, &id))
    }

    fn append_delta(&self, lease: LeaseCheck, d: DeltaWrite) -> StoreFuture<'_, ()> {
        self.w(move |tx| state::append_delta(tx, &lease, &d))
    }

    fn list_deltas<'a>(&'a self, update_id: &'a str) -> StoreFuture<'a, Vec<DeltaWrite>> {
        let id = update_id.to_owned();
        self.r(move |tx| state::deltas(tx, &id))
    }

    fn append_events(&self, lease: LeaseCheck, b: EventBatch) -> StoreFuture<'_, ()> {
        self.w(move |tx| state::append_events(tx, &lease, &b))
    }

    fn list_event_batches<'a>(
        &'a self,
        update_id: &'a str,
        after: Option<i64>,
        limit: i64,
    ) -> StoreFuture<'a, Vec<EventBatch>> {
        let id = update_id.to_owned();
        self.r(move |tx| state::event_batches(tx, &id, after, limit))
    }

    fn finish_update(&self, f: FinishUpdate) -> StoreFuture<'_, FinishOutcome> {
        let notes = f.notes.clone();
        self.wn(
            notes,
            |o| matches!(o, FinishOutcome::Finished(_)),
            move |tx| updates::finish(tx, &f),
        )
    }

    fn import_state(
        &self,
        u: NewUpdate,
        state: StateBlob,
        keep_versions: i64,
        notes: Notes,
    ) -> StoreFuture<'_, ImportOutcome> {
        self.wn(
            notes,
            |o| matches!(o, ImportOutcome::Imported { .. }),
            move |tx| updates::import(tx, &u, &state, keep_versions),
        )
    }

    fn adopt_state(
        &self,
        u: NewUpdate,
        record: AdoptedRecord,
        state: StateBlob,
    ) -> StoreFuture<'_, ImportOutcome> {
        self.w(move |tx| {
            let out = updates::import(tx, &u, &state, i64::MAX)?;
            if let ImportOutcome::Imported { .. } = out {
                updates::set_adopted(tx, &u.id, &record)?;
            }
            Ok(out)
        })
    }

    fn get_state(&self, stack_id: i64, version: Option<i64>) -> StoreFuture<'_, Option<StateBlob>> {
        self.r(move |tx| state::get(tx, stack_id, version))
    }

    fn list_updates(
        &self,
        stack_id: i64,
        offset: i64,
        limit: i64,
    ) -> StoreFuture<'_, Vec<UpdateRow>> {
        self.r(move |tx| updates::history(tx, stack_id, offset, limit))
    }

    fn get_update_by_version(
        &self,
        stack_id: i64,
        version: i64,
    ) -> StoreFuture<'_, Option<UpdateRow>> {
        self.r(move |tx| updates::by_version(tx, stack_id, version))
    }

    fn create_token(&self, mut token: NewToken) -> StoreFuture<'_, ()> {
        let notes = std::mem::take(&mut token.notes);
        self.wn(notes, |_| true, move |tx| tokens::create(tx, &token))
    }

    fn find_token(&self, hash: Vec<u8>) -> StoreFuture<'_, Option<TokenRow>> {
        self.r(move |tx| tokens::find(tx, &hash))
    }

    fn touch_token<'a>(&'a self, id: &'a str, now: i64) -> StoreFuture<'a, ()> {
        let id = id.to_owned();
        self.w(move |tx| tokens::touch(tx, &id, now))
    }

    fn list_tokens(&self, user: Option<String>) -> StoreFuture<'_, Vec<TokenRow>> {
        self.r(move |tx| tokens::list(tx, user.as_deref()))
    }

    fn revoke_tokens(
        &self,
        which: TokenSelector,
        now: i64,
        notes: Notes,
    ) -> StoreFuture<'_, Vec<String>> {
        self.wn(
            notes,
            |ids| !ids.is_empty(),
            move |tx| tokens::revoke(tx, &which, now),
        )
    }

    fn list_versions(&self, stack_id: i64) -> StoreFuture<'_, Vec<VersionInfo>> {
        self.r(move |tx| state::versions(tx, stack_id))
    }

    fn prune_stack_versions(
        &self,
        stack_id: i64,
        keep: i64,
        dry_run: bool,
    ) -> StoreFuture<'_, PruneReport> {
        if dry_run {
            self.r(move |tx| state::prune_candidates(tx, stack_id, keep))
        } else {
            self.w(move |tx| {
                let report = state::prune_candidates(tx, stack_id, keep)?;
                state::prune_keeping_current(tx, stack_id, keep)?;
                Ok(report)
            })
        }
    }

    fn replace_version_state(
        &self,
        stack_id: i64,
        version: i64,
        blob: StateBlob,
    ) -> StoreFuture<'_, ()> {
        self.w(move |tx| state::replace_version(tx, stack_id, version, &blob))
    }

    fn list_wrapped_keys(&self) -> StoreFuture<'_, Vec<WrappedKey>> {
        self.r(stacks::wrapped_keys)
    }

    fn replace_wrapped_keys(
        &self,
        keys: Vec<(i64, Vec<u8>)>,
        canary: Vec<u8>,
    ) -> StoreFuture<'_, ()> {
        self.w(move |tx| stacks::replace_wrapped_keys(tx, &keys, &canary))
    }

    fn integrity_problems(&self) -> StoreFuture<'_, Vec<String>> {
        self.backend.integrity()
    }

    fn vacuum(&self) -> StoreFuture<'_, ()> {
        self.backend.vacuum()
    }

    fn dump(&self, sink: Sink) -> StoreFuture<'_, DumpReport> {
        let mut sink = Some(sink);
        self.r(move |tx| {
            let mut sink = sink
                .take()
                .ok_or_else(|| StoreError::Corrupt("a dump cannot be run twice".into()))?;
            backup::dump(tx, &mut sink)
        })
    }

    fn load(&self, records: Source, merge: Merge) -> StoreFuture<'_, LoadReport> {
        let mut records = Some(records);
        self.w(move |tx| {
            let records = records
                .take()
                .ok_or_else(|| StoreError::Corrupt("a load cannot be run twice".into()))?;
            backup::load(tx, records, merge)
        })
    }

    fn running_update(&self, stack_id: i64) -> StoreFuture<'_, Option<UpdateRow>> {
        self.r(move |tx| rows::running_update_of(tx, stack_id))
    }

    fn running_updates(&self, now: i64) -> StoreFuture<'_, RunningUpdates> {
        self.r(move |tx| rows::running_updates(tx, now))
    }

    fn probe(&self) -> StoreFuture<'_, ()> {
        self.w(|_| Ok(()))
    }
}

/// Writes what a change leaves behind (inside the change's transaction): its audit events,
/// and a delivery for each hook that wants one of its webhook events.
fn write_notes(tx: &mut dyn Tx, notes: &Notes) -> StoreResult<()> {
    audit::append(tx, &notes.audit)?;
    for e in &notes.hooks {
        hooks::raise(tx, e)?;
    }
    Ok(())
}

fn started(o: &StartOutcome) -> bool {
    matches!(o, StartOutcome::Started(_))
}

impl<B: Backend> IntegrationStore for SqlStore<B> {
    fn append_audit(&self, events: Vec<integration::NewAuditEvent>) -> StoreFuture<'_, ()> {
        let logged = events.clone();
        let write = self.w(move |tx| audit::append(tx, &events));
        Box::pin(async move {
            write.await?;
            logged
                .iter()
                .for_each(integration::NewAuditEvent::log_committed);
            Ok(())
        })
    }

    fn list_audit(
        &self,
        q: integration::AuditQuery,
    ) -> StoreFuture<'_, Vec<integration::AuditEventRow>> {
        self.r(move |tx| audit::list(tx, &q))
    }

    fn prune_audit(&self, before: i64) -> StoreFuture<'_, i64> {
        self.w(move |tx| audit::prune(tx, before))
    }

    fn create_hook(
        &self,
        hook: integration::HookRow,
        notes: Notes,
    ) -> StoreFuture<'_, integration::HookRow> {
        self.wn(notes, |_| true, move |tx| hooks::create(tx, &hook))
    }

    fn update_hook(&self, hook: integration::HookRow, notes: Notes) -> StoreFuture<'_, bool> {
        self.wn(notes, |done| *done, move |tx| hooks::update(tx, &hook))
    }

    fn delete_hook(&self, id: i64, notes: Notes) -> StoreFuture<'_, bool> {
        self.wn(notes, |done| *done, move |tx| hooks::delete(tx, id))
    }

    fn get_hook<'a>(
        &'a self,
        org: &'a str,
        stack_id: Option<i64>,
        name: &'a str,
    ) -> StoreFuture<'a, Option<integration::HookRow>> {
        let (org, name) = (org.to_owned(), name.to_owned());
        self.r(move |tx| hooks::get(tx, &org, stack_id, &name))
    }

    fn list_hooks<'a>(
        &'a self,
        org: &'a str,
        stack_id: Option<i64>,
    ) -> StoreFuture<'a, Vec<integration::HookRow>> {
        let org = org.to_owned();
        self.r(move |tx| hooks::list(tx, &org, stack_id))
    }

    fn enqueue_delivery(
        &self,
        hook_id: i64,
        kind: String,
        payload: String,
        now: i64,
    ) -> StoreFuture<'_, i64> {
        self.w(move |tx| hooks::enqueue(tx, hook_id, &kind, &payload, now))
    }

    fn claim_deliveries(
        &self,
        now: i64,
        hold_until: i64,
        limit: i64,
        only: Option<i64>,
    ) -> StoreFuture<'_, Vec<integration::OutboxRow>> {
        self.w(move |tx| hooks::claim(tx, now, hold_until, limit, only))
    }

    fn record_attempt(
        &self,
        attempt: integration::AttemptRow,
        settle: integration::Settle,
    ) -> StoreFuture<'_, ()> {
        self.w(move |tx| hooks::record(tx, &attempt, settle))
    }

    fn list_attempts(
        &self,
        hook_id: i64,
        limit: i64,
    ) -> StoreFuture<'_, Vec<integration::AttemptRow>> {
        self.r(move |tx| hooks::attempts(tx, hook_id, limit))
    }

    fn get_attempt<'a>(
        &'a self,
        hook_id: i64,
        id: &'a str,
    ) -> StoreFuture<'a, Option<integration::AttemptRow>> {
        let id = id.to_owned();
        self.r(move |tx| hooks::attempt_by_id(tx, hook_id, &id))
    }

    fn next_delivery_due(&self) -> StoreFuture<'_, Option<i64>> {
        self.r(hooks::next_due)
    }

    fn prune_deliveries(&self, before: i64) -> StoreFuture<'_, i64> {
        self.w(move |tx| hooks::prune(tx, before))
    }
}
