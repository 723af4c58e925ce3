//! The engine's error type: what went wrong in terms a client can act on. The server maps each
//! variant to one HTTP status and Pulumi error message; the operator CLI prints it.

use crate::store::{LeaseDenied, StoreError};

pub type EngineResult<T> = Result<T, EngineError>;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    /// The message must contain "already exists": the CLI looks for it.
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Conflict(String),
    /// Another update holds the stack's lease.
    #[error("Another update is currently in progress.")]
    UpdateInProgress,
    /// A stack delete without `force` while resources remain.
    #[error("Stack still contains resources.")]
    StackHasResources,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// Includes a dead or foreign update lease: the CLI stops renewing on 403.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an infrastructure failure; the detail is for the logs only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        EngineError::Internal(e.to_string())
    }
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Busy | StoreError::Transient(_) | StoreError::Stale(_) => {
                EngineError::Unavailable("the database is busy; retry shortly".into())
            }
            StoreError::Lease(denied) => lease_error(&denied),
            StoreError::Closed => EngineError::Unavailable("the server is shutting down".into()),
            other => EngineError::Internal(other.to_string()),
        }
    }
}

/// The error a refused lease-guarded call gets. A finished update is a conflict (the CLI shows
/// it); everything else means the caller's lease is not valid, which must be 403.
pub fn lease_error(denied: &LeaseDenied) -> EngineError {
    match denied {
        LeaseDenied::UnknownUpdate => EngineError::NotFound("update not found".into()),
        LeaseDenied::WrongToken => {
            EngineError::Forbidden("the update token is not valid for this update".into())
        }
        LeaseDenied::Expired => EngineError::Forbidden(
            "the update's lease has expired; another update may take over the stack".into(),
        ),
        LeaseDenied::Finished(status) => EngineError::Conflict(format!(
            "the update has already finished ({})",
            status.as_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Storage failures carry SQL and paths; the engine keeps them as internal details
    /// (logged, never sent) or turns them into a retryable answer.
    #[test]
    fn store_failures_become_internal_or_retryable() {
        let detail = "UNIQUE constraint failed: stacks.name (/var/lib/pbackend.db)";
        for e in [
            StoreError::Conflict(detail.into()),
            StoreError::Corrupt(detail.into()),
            StoreError::Backend(detail.to_string().into()),
        ] {
            assert!(matches!(EngineError::from(e), EngineError::Internal(_)));
        }
        for e in [
            StoreError::Busy,
            StoreError::Transient(detail.into()),
            StoreError::Stale("journal"),
        ] {
            match EngineError::from(e) {
                EngineError::Unavailable(m) => assert!(!m.contains("UNIQUE"), "{m}"),
                other => panic!("expected Unavailable, got {other:?}"),
            }
        }
    }
}
