//! pbackend: a self-hosted, Pulumi Cloud-compatible state backend, and the operator's tool for
//! its database. `cli` parses commands; `server` speaks HTTP; `engine` holds every rule;
//! `store` persists.

pub mod cli;
pub mod engine;
pub mod server;
pub mod store;
pub mod telemetry;
#[doc(hidden)]
pub mod testkit;
pub mod types;
