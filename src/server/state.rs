use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::engine::Engine;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Request-body bytes (on the wire and inflated) the server holds at once, across all
    /// requests: one permit per byte.
    pub inflight: Arc<Semaphore>,
    /// A body may pause this long between two pieces ...
    pub body_idle_timeout: Duration,
    /// ... and take this long in all.
    pub body_deadline: Duration,
    /// Per-credential rate limits on reads.
    pub limiter: Arc<crate::server::ratelimit::Limiter>,
    /// Console session cookies are `Secure` (the server or the proxy in front of it speaks
    /// HTTPS).
    pub secure_cookies: bool,
}
