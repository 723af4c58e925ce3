//! The state protocol: stacks, updates and their leases, checkpoints (whole, verbatim and
//! delta), journal replay, engine events, history, outputs and each stack's secrets.

pub mod browse;
pub mod checkpoint;
pub mod delta;
pub mod deployment;
pub(crate) mod events;
pub mod history;
pub mod journal;
pub mod lease;
pub mod live;
pub mod outputs;
pub mod rawjson;
pub mod rekey;
pub mod reveal;
pub mod secrets;
pub mod stacks;
pub mod updates;
