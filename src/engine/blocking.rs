//! CPU-heavy work (gzip, hashing, parsing large deployments, AES-GCM over batches) runs on the
//! blocking pool so that it never stalls the async workers that serve other requests.

use crate::engine::error::{EngineError, EngineResult};

/// CPU-heavy jobs running at once: about one per core. More would not finish sooner; they
/// would only take the CPU from the async workers that answer everyone else (and hold more
/// memory at once). Jobs queue for a permit in arrival order.
fn heavy_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores.max(2))
    })
}

/// Runs `f` on tokio's blocking pool. A panic inside `f` becomes an internal error rather than
/// taking the request (or the server) down.
pub async fn run_blocking<T, F>(f: F) -> EngineResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> EngineResult<T> + Send + 'static,
{
    let _permit = heavy_permits()
        .acquire()
        .await
        .map_err(|_| EngineError::Unavailable("the server is shutting down".into()))?;
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => Err(EngineError::Internal("a worker panicked".into())),
        Err(e) => Err(EngineError::internal(e)),
    }
}

/// Work below this many bytes is cheaper to do in place than to hand to another thread.
pub const INLINE_LIMIT: usize = 64 * 1024;

/// Like [`run_blocking`] but runs small jobs inline.
pub async fn run_sized<T, F>(size: usize, f: F) -> EngineResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> EngineResult<T> + Send + 'static,
{
    if size < INLINE_LIMIT {
        f()
    } else {
        run_blocking(f).await
    }
}
