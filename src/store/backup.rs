//! Backup records: every row of the database as a typed value, the unit of
//! `pbackend export --all` / `import --all`. The archive format around them (gzip of JSON
//! lines with a header) is the engine's; this module only says what a row is.
//!
//! Binary columns travel as standard base64. Records are dumped parents first, so a load can
//! insert them in the order it reads them.

use serde::{Deserialize, Serialize};

use crate::store::StoreResult;

/// One row: the table it comes from (its backup tag, e.g. `stack`) and its columns by name.
/// Numbers are JSON numbers, flags booleans, bytes standard base64, NULL `null`. Which
/// columns a table has, and of what kind, is the SQL layer's table list
/// (`store/sql/backup.rs`), checked on load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub table: String,
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl Record {
    pub fn text(&self, column: &str) -> Option<&str> {
        self.fields.get(column).and_then(serde_json::Value::as_str)
    }

    pub fn int(&self, column: &str) -> Option<i64> {
        self.fields.get(column).and_then(serde_json::Value::as_i64)
    }

    /// A binary column, decoded.
    pub fn bytes(&self, column: &str) -> Option<Vec<u8>> {
        use base64::Engine as _;
        self.text(column)
            .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
    }

    /// `org/project/name` of a `stack` record.
    pub fn stack_name(&self) -> Option<String> {
        (self.table == "stack").then(|| {
            format!(
                "{}/{}/{}",
                self.text("org").unwrap_or(""),
                self.text("project").unwrap_or(""),
                self.text("name").unwrap_or("")
            )
        })
    }
}

/// Receives dumped records (on the store's reading thread).
pub type Sink = Box<dyn FnMut(Record) -> StoreResult<()> + Send>;
/// Supplies records to load (on the store's writing thread).
pub type Source = Box<dyn Iterator<Item = StoreResult<Record>> + Send>;

/// What to do when the target database already holds stacks or tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Refuse unless the target has no stacks and no tokens; rows keep their ids.
    Refuse,
    /// Add the stacks (and tokens) whose names (ids) are free; skip the others.
    SkipExisting,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DumpReport {
    pub records: u64,
    pub stacks: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub records: u64,
    pub stacks: u64,
    pub skipped_stacks: Vec<String>,
}
