//! The operator commands' one error type. Causes stay typed until `main` prints them as one
//! line; the exit code is 1 for all of them (clap's usage errors exit 2 before we run).

use crate::engine::EngineError;
use crate::store::StoreError;

pub type CliResult<T = ()> = Result<T, CliError>;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An engine rule refused the operation or the engine failed; its message is the one an
    /// HTTP client would get.
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot open the database {db}: {source}")]
    Open {
        db: String,
        #[source]
        source: StoreError,
    },
    #[error(
        "{db} is in use by a running `pbackend serve` (or another maintenance command): \
         {why}; stop it first"
    )]
    InUse { db: String, why: &'static str },
    /// A file, socket or stream operation failed; `what` says which and where.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A value given on the command line (or in a file it names) cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// The command ran to the end and found the instance wanting (verify's findings).
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// For `map_err`: an I/O failure described by `what` ("cannot write out.json").
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let what = what.into();
        move |source| CliError::Io { what, source }
    }
}
