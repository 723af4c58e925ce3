//! Errors of the storage layer. They say what went wrong in storage terms only; the engine
//! decides what each means to a client (a unique-name conflict is "already exists" for a stack
//! create but a bug anywhere else).

use std::fmt;

pub type StoreResult<T> = Result<T, StoreError>;

/// Why a write that must be made under an update's lease was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseDenied {
    /// No update with that id belongs to that stack.
    UnknownUpdate,
    /// The token is not this update's lease token.
    WrongToken,
    /// The token was right but its lease ran out.
    Expired,
    /// The update is no longer running; carries its final status.
    Finished(crate::store::UpdateStatus),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write (names the constraint's subject).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database stayed locked by another writer longer than the busy timeout.
    #[error("database is busy")]
    Busy,
    /// Stored data failed a consistency check.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A lease-guarded write was refused.
    #[error("lease refused: {0:?}")]
    Lease(LeaseDenied),
    /// Anything else the backend reported.
    #[error("storage backend error: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    /// The store's worker thread is gone (the process is shutting down).
    #[error("store is closed")]
    Closed,
    /// A transaction lost a race with a concurrent one and may succeed if run again.
    #[error("transient conflict: {0}")]
    Transient(String),
    /// A write was prepared from a cached view of an update that the store has moved past
    /// (another replica wrote since): nothing was written; rebuild the view and try again.
    #[error("stale cache: {0}")]
    Stale(&'static str),
    /// Another process holds the database's instance lock in a mode that excludes ours.
    #[error("the database is in use")]
    InUse,
}

impl StoreError {
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

impl fmt::Display for LeaseDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseDenied::UnknownUpdate => f.write_str("unknown update"),
            LeaseDenied::WrongToken => f.write_str("wrong update token"),
            LeaseDenied::Expired => f.write_str("lease expired"),
            LeaseDenied::Finished(s) => write!(f, "update already {}", s.as_str()),
        }
    }
}
