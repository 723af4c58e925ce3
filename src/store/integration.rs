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

impl NewAuditEvent {
    /// Writes the event to the audit log stream (`--audit-log`), once it is committed.
    pub fn log_committed(&self) {
        tracing::info!(
            target: crate::telemetry::AUDIT_TARGET,
            at = self.at,
            event = %self.event,
            org = self.org.as_deref().unwrap_or(""),
            user = %self.user_login,
            source_ip = %self.source_ip,
            token = self.token_name.as_deref().unwrap_or(""),
            auth_failure = self.auth_failure,
            description = %self.description,
            "audit event"
        );
    }
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

/// A registered webhook: an organization's (`stack_id` `None`) or a stack's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRow {
    /// Assigned by the store (ignored on create).
    pub id: i64,
    pub org: String,
    pub stack_id: Option<i64>,
    pub name: String,
    pub display_name: String,
    pub payload_url: String,
    pub active: bool,
    pub format: String,
    pub filters: Vec<String>,
    pub groups: Vec<String>,
    /// The signing secret, sealed with the master key.
    pub secret: Option<Vec<u8>>,
    pub created_at: i64,
}

impl HookRow {
    /// Whether the hook subscribes to an event of this filter (`update_succeeded`) in this
    /// group (`stacks`): a hook with neither filters nor groups takes everything.
    pub fn wants(&self, filter: &str, group: &str) -> bool {
        (self.filters.is_empty() && self.groups.is_empty())
            || self.filters.iter().any(|f| f == filter)
            || self.groups.iter().any(|g| g == group)
    }
}

/// An event for webhooks, raised by a change: delivered to the active hooks of `org` (and
/// of the stack, when it names one) that want it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEvent {
    pub org: String,
    /// The stack the event is about, whose own hooks get it too; `None`: organization hooks
    /// only (a stack created or deleted).
    pub stack_id: Option<i64>,
    /// `Pulumi-Webhook-Kind`: `stack`, `stack_update`, `stack_preview`.
    pub kind: String,
    pub filter: String,
    pub group: String,
    /// The JSON payload of the `raw` format.
    pub payload: String,
    pub at: i64,
}

/// A delivery to make: one event for one hook.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub hook: HookRow,
    pub kind: String,
    pub payload: String,
    pub created_at: i64,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// One attempt at sending a delivery, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    /// Also sent as `Pulumi-Webhook-ID`.
    pub id: String,
    pub outbox_id: i64,
    pub hook_id: i64,
    pub at: i64,
    pub kind: String,
    /// The exact body sent.
    pub payload: String,
    pub request_url: String,
    pub request_headers: String,
    pub duration_ms: i64,
    /// `None`: no answer (connection refused, timeout).
    pub response_code: Option<i64>,
    pub response_headers: String,
    pub response_body: String,
}

/// What becomes of a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Delivered,
    /// Try again at this time.
    RetryAt(i64),
    /// Out of attempts.
    Failed,
}

/// What a change leaves behind, written in the change's own transaction.
#[derive(Debug, Clone, Default)]
pub struct Notes {
    pub audit: Vec<NewAuditEvent>,
    pub hooks: Vec<HookEvent>,
}

impl Notes {
    pub fn none() -> Self {
        Notes::default()
    }

    pub fn audit(event: NewAuditEvent) -> Self {
        Notes {
            audit: vec![event],
            hooks: vec![],
        }
    }

    /// The same notes, raising a webhook event too.
    pub fn with_hook(mut self, event: HookEvent) -> Self {
        self.hooks.push(event);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.audit.is_empty() && self.hooks.is_empty()
    }
}

pub trait IntegrationStore: Send + Sync + 'static {
    /// Writes audit events in a transaction of their own (refused requests, which change
    /// nothing else).
    fn append_audit(&self, events: Vec<NewAuditEvent>) -> StoreFuture<'_, ()>;
    fn list_audit(&self, query: AuditQuery) -> StoreFuture<'_, Vec<AuditEventRow>>;
    /// Deletes the events older than `before`; how many went.
    fn prune_audit(&self, before: i64) -> StoreFuture<'_, i64>;

    // --- webhooks
    /// `Conflict` when the scope has a hook of that name.
    fn create_hook(&self, hook: HookRow, notes: Notes) -> StoreFuture<'_, HookRow>;
    /// Replaces a hook's settings (not its name or scope); false when it is gone.
    fn update_hook(&self, hook: HookRow, notes: Notes) -> StoreFuture<'_, bool>;
    /// Deletes a hook with its pending deliveries and attempts; false when absent.
    fn delete_hook(&self, id: i64, notes: Notes) -> StoreFuture<'_, bool>;
    fn get_hook<'a>(
        &'a self,
        org: &'a str,
        stack_id: Option<i64>,
        name: &'a str,
    ) -> StoreFuture<'a, Option<HookRow>>;
    fn list_hooks<'a>(
        &'a self,
        org: &'a str,
        stack_id: Option<i64>,
    ) -> StoreFuture<'a, Vec<HookRow>>;
    /// Queues one delivery to one hook (a ping, a redelivery); its outbox id.
    fn enqueue_delivery(
        &self,
        hook_id: i64,
        kind: String,
        payload: String,
        now: i64,
    ) -> StoreFuture<'_, i64>;
    /// Takes up to `limit` deliveries due at `now` (or the one with `only`), making them not
    /// due again before `hold_until` (so a crash mid-send means a later new attempt, and
    /// another replica does not send it meanwhile).
    fn claim_deliveries(
        &self,
        now: i64,
        hold_until: i64,
        limit: i64,
        only: Option<i64>,
    ) -> StoreFuture<'_, Vec<OutboxRow>>;
    /// Records an attempt and what becomes of its delivery, in one transaction.
    fn record_attempt(&self, attempt: AttemptRow, settle: Settle) -> StoreFuture<'_, ()>;
    /// A hook's attempts, newest first.
    fn list_attempts(&self, hook_id: i64, limit: i64) -> StoreFuture<'_, Vec<AttemptRow>>;
    fn get_attempt<'a>(&'a self, hook_id: i64, id: &'a str) -> StoreFuture<'a, Option<AttemptRow>>;
    /// When the next pending delivery falls due (`None`: nothing pending).
    fn next_delivery_due(&self) -> StoreFuture<'_, Option<i64>>;
    /// Deletes settled deliveries and attempts older than `before`; how many rows went.
    fn prune_deliveries(&self, before: i64) -> StoreFuture<'_, i64>;
}
