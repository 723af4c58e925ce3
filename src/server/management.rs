//! The management listener (`serve --management-addr`, off by default, apart from the API
//! port so that it need not be exposed with it): `/healthz` (the process answers),
//! `/readyz` (the database takes a write transaction within 2 s and the server is not
//! draining) and `/metrics` (the Prometheus text format).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::engine::Engine;

#[derive(Clone)]
pub struct Management {
    pub engine: Arc<Engine>,
    /// Set once shutdown begins: `/readyz` fails from then on.
    pub draining: Arc<AtomicBool>,
    /// The SQLite database file, for its size (`None` on PostgreSQL).
    pub sqlite_file: Option<PathBuf>,
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(m): State<Management>) -> (StatusCode, String) {
    if m.draining.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: shutting down\n".into(),
        );
    }
    match tokio::time::timeout(Duration::from_secs(2), m.engine.ready()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n".into()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the database did not take a write within 2 s\n".into(),
        ),
    }
}

async fn metrics(State(m): State<Management>) -> impl IntoResponse {
    let metrics = crate::telemetry::metrics();
    if let Ok(Ok(a)) = tokio::time::timeout(Duration::from_secs(2), m.engine.activity()).await {
        metrics.running_updates.set(a.running_updates);
        metrics.live_leases.set(a.live_leases);
    }
    if let Some(db) = &m.sqlite_file {
        let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = db.clone().into_os_string();
        wal.push("-wal");
        let total = size(db.clone()) + size(PathBuf::from(wal));
        metrics
            .database_size
            .set(i64::try_from(total).unwrap_or(i64::MAX));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render_prometheus(),
    )
}

pub fn router(m: Management) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(m)
}

/// Serves the management routes until the task is dropped.
pub async fn serve(listener: TcpListener, m: Management) -> std::io::Result<()> {
    axum::serve(listener, router(m)).await
}
