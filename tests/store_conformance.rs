//! The store conformance suite (`pbackend::store::conformance`) on every backend: SQLite
//! always, PostgreSQL on a server this test starts (skipped, saying so, without one).

mod common;

use std::sync::Arc;

use futures_util::FutureExt;
use pbackend::store::Store;
use pbackend::store::conformance::{Subject, run_all};
use pbackend::store::postgres::{PgOptions, PgStore};
use pbackend::store::sqlite::SqliteStore;

fn sqlite_store() -> Arc<dyn Store> {
    // Each store keeps its directory for the rest of the test process.
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    Arc::new(SqliteStore::open(&dir.path().join("t.db")).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_rule() {
    let subject = Subject {
        store: sqlite_store(),
        fresh: Box::new(|| async { sqlite_store() }.boxed()),
    };
    run_all(&subject).await;
}

async fn pg_store(url: String) -> Arc<dyn Store> {
    Arc::new(PgStore::connect(&url, PgOptions::default()).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_every_rule() {
    let Some(pg) = common::pg::server() else {
        return;
    };
    let subject = Subject {
        store: pg_store(pg.fresh_database()).await,
        fresh: Box::new(move || pg_store(pg.fresh_database()).boxed()),
    };
    run_all(&subject).await;
}
