//! The HTTP face of the engine: routes, authentication, body handling, error rendering,
//! access logs. Handlers stay thin; rules live in `engine`. This module never names the store.

pub mod auth;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod routes;
pub mod state;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::SizeAbove;
use tracing::Instrument;

use crate::engine::Engine;
pub use state::AppState;

/// The application with all its layers.
pub fn router(engine: Arc<Engine>) -> Router {
    routes::routes()
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .no_br()
                .no_deflate()
                .no_zstd()
                // Small answers (the stream of batch-encrypt replies) cost more to compress
                // than to send over a LAN; setting up a deflate stream showed in profiles.
                .compress_when(SizeAbove::new(4096)),
        )
        .layer(middleware::from_fn(access_log))
        .with_state(AppState { engine })
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The CLI waits on each state write before the next: never let Nagle hold a reply back.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(engine))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Gives each request an id (returned as `X-Pulumi-Request-ID`, which the CLI quotes in
/// server errors), runs it inside a span carrying that id, and logs its outcome. Query
/// strings and headers are not logged: they may carry tokens.
async fn access_log(req: Request, next: Next) -> Response {
    let id = hex::encode(crate::engine::crypto::random_bytes::<8>());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", id = %id, method = %method, path = %path);
    let start = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(status, ms, "request failed");
        } else if status >= 400 {
            tracing::info!(status, ms, "request refused");
        } else {
            tracing::debug!(status, ms, "request served");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-pulumi-request-id", v);
    }
    resp
}
