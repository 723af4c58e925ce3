//! Backup records: every row of the database as a typed value, the unit of
//! `pbackend export --all` / `import --all`. The archive format around them (gzip of JSON
//! lines with a header) is the engine's; this module only says what a row is.
//!
//! Binary columns travel as standard base64. Records are dumped parents first, so a load can
//! insert them in the order it reads them.

use serde::{Deserialize, Serialize};

use crate::store::StoreResult;

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }

    pub mod opt {
        use super::*;

        pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(b) => super::serialize(b, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            let text = Option::<String>::deserialize(d)?;
            text.map(|t| STANDARD.decode(t).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "table", rename_all = "snake_case")]
pub enum Record {
    Meta {
        key: String,
        #[serde(with = "b64")]
        value: Vec<u8>,
    },
    Token {
        id: String,
        user_name: String,
        description: String,
        #[serde(with = "b64")]
        hash: Vec<u8>,
        created_at: i64,
        expires_at: Option<i64>,
        last_used_at: Option<i64>,
        revoked_at: Option<i64>,
    },
    Stack {
        id: i64,
        org: String,
        project: String,
        name: String,
        tags: String,
        created_at: i64,
        last_version: i64,
        current_version: Option<i64>,
        active_update: Option<String>,
        resource_count: i64,
        state_size: i64,
        last_update_at: Option<i64>,
        #[serde(with = "b64")]
        wrapped_key: Vec<u8>,
    },
    FormerName {
        org: String,
        project: String,
        name: String,
        stack_id: i64,
        renamed_at: i64,
    },
    Version {
        stack_id: i64,
        version: i64,
        #[serde(with = "b64")]
        state: Vec<u8>,
        sha256: String,
        size: i64,
        resource_count: i64,
        created_at: i64,
    },
    Update {
        id: String,
        stack_id: i64,
        kind: String,
        dry_run: bool,
        status: String,
        version: i64,
        base_version: Option<i64>,
        created_at: i64,
        started_at: Option<i64>,
        ended_at: Option<i64>,
        #[serde(with = "b64::opt")]
        lease_hash: Option<Vec<u8>>,
        lease_expires: Option<i64>,
        journal_version: i64,
        author: String,
        message: String,
        environment: String,
        config: String,
        resource_changes: Option<String>,
        resource_count: Option<i64>,
    },
    UpdateWindow {
        update_id: String,
        window_id: String,
        seq: i64,
        outputs: Option<String>,
        secrets_providers: Option<String>,
    },
    UpdateState {
        update_id: String,
        #[serde(with = "b64")]
        state: Vec<u8>,
        sha256: String,
        size: i64,
        resource_count: Option<i64>,
        sequence: i64,
        updated_at: i64,
    },
    Delta {
        update_id: String,
        ordinal: i64,
        sequence: i64,
        hash: String,
        #[serde(with = "b64")]
        edits: Vec<u8>,
    },
    Events {
        update_id: String,
        first_seq: i64,
        last_seq: i64,
        count: i64,
        #[serde(with = "b64")]
        events: Vec<u8>,
    },
    Journal {
        update_id: String,
        ordinal: i64,
        first_seq: i64,
        last_seq: i64,
        count: i64,
        #[serde(with = "b64")]
        entries: Vec<u8>,
    },
}

impl Record {
    /// The stack a record belongs to, for records that belong to one directly.
    pub fn stack_id(&self) -> Option<i64> {
        match self {
            Record::Stack { id, .. } => Some(*id),
            Record::FormerName { stack_id, .. }
            | Record::Version { stack_id, .. }
            | Record::Update { stack_id, .. } => Some(*stack_id),
            _ => None,
        }
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
