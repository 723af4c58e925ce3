//! The HTTP face of the engine: routes, authentication, body handling, error rendering,
//! access logs, and the limits that keep any client from taking the server down. Handlers
//! stay thin; rules live in `engine`.
//!
//! Limits, outermost first: a cap on open connections (further ones wait in the kernel's
//! backlog), a deadline for each request's headers, a cap on requests being handled at once
//! (a request waits briefly for a slot, then gets 503), the route's access check (before any
//! body is read), the route's body limit, idle and total deadlines for reading a body, and a
//! budget of body bytes in flight across all requests.

pub mod auth;
pub mod client_addr;
pub mod compression;
pub mod console;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod management;
pub mod openapi;
pub mod ratelimit;
pub mod routes;
pub mod state;
pub mod tls;
pub mod version;
pub mod wire;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tracing::Instrument;

use crate::engine::Engine;
use crate::server::error::ApiError;
pub use state::AppState;

/// Limits on what clients may make the server do. Every field is a `serve` flag.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Open connections at once; more wait until one closes.
    pub max_connections: usize,
    /// Requests handled at once; more wait up to `queue_timeout`, then get 503.
    pub max_concurrent_requests: usize,
    pub queue_timeout: Duration,
    /// Request-body bytes (on the wire and inflated) held across all requests at once.
    pub max_inflight_body_bytes: usize,
    /// A client must send a request's headers within this.
    pub header_read_timeout: Duration,
    /// A body must not pause longer than this between two pieces ...
    pub body_idle_timeout: Duration,
    /// ... nor take longer than this in all.
    pub body_deadline: Duration,
    /// Per-credential limits on reads (none by default here; `serve` applies the service's).
    pub rate_limits: ratelimit::RateLimits,
    /// Proxies whose `X-Forwarded-For`/`X-Real-IP` name the client (none by default).
    pub trusted_proxies: client_addr::TrustedProxies,
    /// Serve HTTPS with this certificate (plain HTTP when none).
    pub tls: Option<tls::Tls>,
    /// On shutdown, how long requests in flight may take to finish before their connections
    /// are closed.
    pub shutdown_grace: Duration,
    /// Serve the web console beside the API.
    pub console: bool,
    /// Console session cookies are `Secure`: set when clients reach the server over HTTPS
    /// (its own TLS, or a proxy's: an `https://` public URL).
    pub secure_cookies: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 4096,
            max_concurrent_requests: 512,
            queue_timeout: Duration::from_secs(10),
            max_inflight_body_bytes: 1024 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(60),
            body_deadline: Duration::from_secs(600),
            rate_limits: Default::default(),
            trusted_proxies: Default::default(),
            tls: None,
            shutdown_grace: Duration::from_secs(30),
            console: true,
            secure_cookies: false,
        }
    }
}

/// The application with all its layers.
pub fn router(engine: Arc<Engine>, cfg: &ServerConfig) -> Router {
    let budget = cfg.max_inflight_body_bytes.min(Semaphore::MAX_PERMITS);
    let state = AppState {
        engine,
        inflight: Arc::new(Semaphore::new(budget)),
        body_idle_timeout: cfg.body_idle_timeout,
        body_deadline: cfg.body_deadline,
        limiter: Arc::new(ratelimit::Limiter::new(cfg.rate_limits.clone())),
        secure_cookies: cfg.secure_cookies || cfg.tls.is_some(),
    };
    let slots = Arc::new(Slots {
        sem: Semaphore::new(cfg.max_concurrent_requests.max(1)),
        wait: cfg.queue_timeout,
    });
    let mut app = routes::routes(state.clone());
    if cfg.console {
        app = app.merge(console::routes(state.clone()));
    }
    app.layer(compression::layer())
        .layer(middleware::from_fn(version::negotiate))
        .layer(middleware::from_fn_with_state(slots, limit_concurrency))
        .layer(middleware::from_fn(access_log))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Webhook deliveries run beside the server, outside every request, and stop with it.
    let deliveries = tokio::spawn(engine.clone().run_webhook_deliveries());
    let app = router(engine, &cfg);
    let connections = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let trusted = Arc::new(cfg.trusted_proxies.clone());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // The CLI waits on each state write before the next: never let Nagle hold a reply.
        let _ = tcp.set_nodelay(true);
        let proxies = trusted.clone();
        let svc = app
            .clone()
            .map_request(move |mut req: Request<hyper::body::Incoming>| {
                let client = proxies.client(remote, req.headers());
                req.extensions_mut().insert(client);
                req.map(axum::body::Body::new)
            });
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(cfg.header_read_timeout)
            .keep_alive(true);
        let watcher = graceful.watcher();
        let tls = cfg.tls.clone();
        // A handshake is held to the same bound as the headers that follow it.
        let handshake_timeout = cfg.header_read_timeout;
        tokio::spawn(async move {
            let svc = TowerToHyperService::new(svc);
            match tls {
                None => {
                    let _ = watcher
                        .watch(http.serve_connection(TokioIo::new(tcp), svc))
                        .await;
                }
                Some(tls) => {
                    match tokio::time::timeout(handshake_timeout, tls.acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = watcher
                                .watch(http.serve_connection(TokioIo::new(stream), svc))
                                .await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %remote, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(peer = %remote, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(cfg.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = cfg.shutdown_grace.as_secs(),
            "requests still running after the shutdown grace period; closing their connections"
        );
    }
    deliveries.abort();
    Ok(())
}

struct Slots {
    sem: Semaphore,
    wait: Duration,
}

/// Caps the requests handled at once. A request waits a little for a slot (bursts are
/// normal: the CLI sends from several workers), then gets 503, which the CLI retries.
async fn limit_concurrency(State(slots): State<Arc<Slots>>, req: Request, next: Next) -> Response {
    let permit = match tokio::time::timeout(slots.wait, slots.sem.acquire()).await {
        Ok(Ok(p)) => p,
        _ => {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is handling too many requests; retry shortly",
            )
            .into_response();
        }
    };
    let resp = next.run(req).await;
    drop(permit);
    resp
}

/// Gives each request an id (returned as `X-Pulumi-Request-ID`, which the CLI quotes in
/// server errors), runs it inside a span carrying that id, and logs its outcome. A handler
/// that panics gets a 500 in the Pulumi shape naming the id; the panic goes to the log.
/// Query strings and headers are not logged: they may carry tokens.
async fn access_log(req: Request, next: Next) -> Response {
    let id = hex::encode(crate::engine::crypto::random_bytes::<8>());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let peer = req
        .extensions()
        .get::<client_addr::ClientAddr>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    // The route template for metrics (a fallback answer has none).
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span =
        tracing::info_span!("request", id = %id, peer = %peer, method = %method, path = %path);
    let start = Instant::now();
    let run = AssertUnwindSafe(next.run(req)).catch_unwind();
    let mut resp = match run.instrument(span.clone()).await {
        Ok(resp) => resp,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            span.in_scope(|| tracing::error!(panic = %what, "a request handler panicked"));
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the server failed to handle the request (request id {id})"),
            )
            .into_response()
        }
    };
    let status = resp.status().as_u16();
    let secs = start.elapsed().as_secs_f64();
    crate::telemetry::metrics().request(&route, method.as_str(), status, secs);
    let ms = (secs * 1e4).round() / 10.0;
    // One access-log line per request (its own stream when `--access-log` says so).
    macro_rules! access {
        ($level:ident, $msg:literal) => {
            tracing::$level!(
                target: crate::telemetry::ACCESS_TARGET,
                id = %id, peer = %peer, method = %method, path = %path, route = %route,
                status, ms, $msg
            )
        };
    }
    if status >= 500 {
        access!(error, "request failed");
    } else if status >= 400 {
        access!(info, "request refused");
    } else {
        access!(debug, "request served");
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-pulumi-request-id", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_in_the_pulumi_shape_with_its_request_id() {
        async fn boom() -> &'static str {
            panic!("a bug with a secret detail")
        }
        let app = Router::new()
            .route("/boom", get(boom))
            .layer(axum::middleware::from_fn(access_log));
        let resp = app
            .oneshot(Request::builder().uri("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let id = resp.headers()["x-pulumi-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], 500);
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(&id), "{msg}");
        assert!(!msg.contains("secret detail"), "{msg}");
    }
}
