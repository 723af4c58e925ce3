//! Persistence of what other systems read about the changes: the audit log (and, with the
//! webhooks, their outbox). A trait of its own beside [`crate::store::Store`], which
//! requires it, so that one backend implements every subject.
//!
//! What a change leaves behind travels with the change as [`Notes`]: the store writes them in
//! the very transaction that makes the change, and only when the change happened (a guarded
//! delete that found the stack busy leaves none). Refusals, which change nothing, are noted
//! with [`IntegrationStore::append_audit`] in a transaction of their own.

use crate::store::StoreFuture;

/// One audit event as the engine describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    /// The organization whose log it belongs to; `None`: the instance's own (a credential
    /// that matched nobody).
    pub org: Option<String>,
    /// Unix seconds.
    pub at: i64,
    pub event: String,
    pub description: String,
    pub user_login: String,
    pub user_name: String,
    pub source_ip: String,
    pub token_id: Option<String>,
    pub token_name: Option<String>,
    pub req_org_admin: bool,
    pub req_stack_admin: bool,
    pub auth_failure: bool,
}

/// A stored audit event: what was noted, and its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEventRow {
    pub id: i64,
    pub event: NewAuditEvent,
}

/// Which audit events to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// `None`: every organization's and the instance's events (the operator's view).
    pub org: Option<String>,
    /// Events at or after this time.
    pub since: Option<i64>,
    /// Events at or before this time.
    pub until: Option<i64>,
    pub event: Option<String>,
    pub user: Option<String>,
    /// Only events older in the log than this id (the continuation of a listing).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// What a change leaves behind, written in the change's own transaction.
#[derive(Debug, Clone, Default)]
pub struct Notes {
    pub audit: Vec<NewAuditEvent>,
}

impl Notes {
    pub fn none() -> Self {
        Notes::default()
    }

    pub fn audit(event: NewAuditEvent) -> Self {
        Notes { audit: vec![event] }
    }

    pub fn is_empty(&self) -> bool {
        self.audit.is_empty()
    }
}

pub trait IntegrationStore: Send + Sync + 'static {
    /// Writes audit events in a transaction of their own (refused requests, which change
    /// nothing else).
    fn append_audit(&self, events: Vec<NewAuditEvent>) -> StoreFuture<'_, ()>;
    fn list_audit(&self, query: AuditQuery) -> StoreFuture<'_, Vec<AuditEventRow>>;
    /// Deletes the events older than `before`; how many went.
    fn prune_audit(&self, before: i64) -> StoreFuture<'_, i64>;
}
