//! What the engine hands out: its own views of stacks, updates, tokens and versions, so that
//! callers (the server, the operator CLI) depend on the engine and never on how the store
//! lays its rows out.

use serde::Serialize;

use crate::store::{PruneReport, StackRow, TokenRow, UpdateRow, VersionInfo};
use crate::types::{StackKey, Tags, UpdateStatus};

/// A stack.
#[derive(Debug, Clone)]
pub struct StackView {
    pub id: i64,
    pub key: StackKey,
    pub tags: Tags,
    pub created_at: i64,
    /// Highest version handed out to an update.
    pub last_version: i64,
    /// Version holding the current state; `None` when it never had one.
    pub current_version: Option<i64>,
    /// Most recent non-preview update (kept after it finishes).
    pub active_update: Option<String>,
    pub resource_count: i64,
    pub last_update_at: Option<i64>,
    /// Uncompressed size of the current state.
    pub state_size: i64,
    /// The user who created it.
    pub created_by: Option<String>,
}

impl From<StackRow> for StackView {
    fn from(r: StackRow) -> Self {
        StackView {
            id: r.id,
            key: r.key,
            tags: r.tags,
            created_at: r.created_at,
            last_version: r.last_version,
            current_version: r.current_version,
            active_update: r.active_update,
            resource_count: r.resource_count,
            last_update_at: r.last_update_at,
            state_size: r.state_size,
            created_by: r.created_by,
        }
    }
}

/// An update (or preview, refresh, destroy, import).
#[derive(Debug, Clone)]
pub struct UpdateView {
    pub id: String,
    pub kind: String,
    pub dry_run: bool,
    pub status: UpdateStatus,
    pub version: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub lease_expires: Option<i64>,
    pub journal_version: i64,
    pub author: String,
    pub message: String,
    /// JSON object text.
    pub environment: String,
    /// JSON object text.
    pub config: String,
    /// JSON object text.
    pub resource_changes: Option<String>,
    pub resource_count: Option<i64>,
}

impl UpdateView {
    /// True while this update holds (or held until `now`) an unexpired lease.
    pub fn lease_live(&self, now: i64) -> bool {
        self.status == UpdateStatus::Running && self.lease_expires.is_some_and(|e| e > now)
    }
}

impl From<UpdateRow> for UpdateView {
    fn from(r: UpdateRow) -> Self {
        UpdateView {
            id: r.id,
            kind: r.kind,
            dry_run: r.dry_run,
            status: r.status,
            version: r.version,
            created_at: r.created_at,
            started_at: r.started_at,
            ended_at: r.ended_at,
            lease_expires: r.lease_expires,
            journal_version: r.journal_version,
            author: r.author,
            message: r.message,
            environment: r.environment,
            config: r.config,
            resource_changes: r.resource_changes,
            resource_count: r.resource_count,
        }
    }
}

/// An access token of any kind (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    pub id: String,
    /// `personal`, `organization` or `team`.
    pub kind: &'static str,
    /// The user it acts as (the organization's name for an organization token).
    pub user: String,
    pub org: Option<String>,
    pub team: Option<String>,
    pub name: String,
    pub description: String,
    pub admin: bool,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl From<TokenRow> for TokenView {
    fn from(t: TokenRow) -> Self {
        TokenView {
            id: t.id,
            kind: t.kind.as_str(),
            user: t.user,
            org: t.org,
            team: t.team,
            name: t.name,
            description: t.description,
            admin: t.admin,
            created_by: t.created_by,
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A kept version of a stack's state.
#[derive(Debug, Clone, Serialize)]
pub struct VersionView {
    pub version: i64,
    pub sha256: String,
    /// Uncompressed size.
    pub size: i64,
    /// Stored (compressed) size.
    pub stored_size: i64,
    pub resource_count: i64,
    pub created_at: i64,
}

impl From<VersionInfo> for VersionView {
    fn from(v: VersionInfo) -> Self {
        VersionView {
            version: v.version,
            sha256: v.sha256,
            size: v.size,
            stored_size: v.stored_size,
            resource_count: v.resource_count,
            created_at: v.created_at,
        }
    }
}

/// What a prune removed (or would remove).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneSummary {
    pub versions: i64,
    /// Stored (compressed) bytes.
    pub bytes: i64,
}

impl From<PruneReport> for PruneSummary {
    fn from(p: PruneReport) -> Self {
        PruneSummary {
            versions: p.versions,
            bytes: p.bytes,
        }
    }
}
