//! The audit log: what each change and each refusal records, and how the log is read and
//! exported. Changes hand their [`Notes`] to the store with the change itself, so an event
//! exists exactly when its change does; a refusal, which changes nothing, is written alone.

use std::sync::Mutex;

use serde::Serialize;

use crate::engine::error::{EngineError, EngineResult};
use crate::engine::{Engine, Identity};
use crate::store::Notes;
use crate::store::integration::{AuditEventRow, AuditQuery, NewAuditEvent};

/// Every kind of event the log records. The ids are ours (listed in
/// `reference/integrations.md`), in the service's style: lowercase words joined by dashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    StackCreated,
    StackDeleted,
    StackRenamed,
    StackTagsUpdated,
    StackImported,
    /// A stack's state set back to a kept version (console, `pbackend stack rollback`).
    StackRolledBack,
    UpdateStarted,
    UpdateSucceeded,
    UpdateFailed,
    UpdateCancelled,
    SecretsDecrypted,
    TokenCreated,
    TokenRevoked,
    MemberAdded,
    MemberRoleChanged,
    MemberRemoved,
    WebhookCreated,
    WebhookUpdated,
    WebhookDeleted,
    TeamCreated,
    TeamUpdated,
    TeamDeleted,
    RoleCreated,
    RoleUpdated,
    RoleDeleted,
    StackPermissionChanged,
    /// A credential that matched nobody, or a caller refused a permission.
    AuthFailure,
}

impl AuditKind {
    pub fn id(self) -> &'static str {
        match self {
            AuditKind::StackCreated => "stack-created",
            AuditKind::StackDeleted => "stack-deleted",
            AuditKind::StackRenamed => "stack-renamed",
            AuditKind::StackTagsUpdated => "stack-tags-updated",
            AuditKind::StackImported => "stack-imported",
            AuditKind::StackRolledBack => "stack-rolled-back",
            AuditKind::UpdateStarted => "update-started",
            AuditKind::UpdateSucceeded => "update-succeeded",
            AuditKind::UpdateFailed => "update-failed",
            AuditKind::UpdateCancelled => "update-cancelled",
            AuditKind::SecretsDecrypted => "secrets-decrypted",
            AuditKind::TokenCreated => "access-token-created",
            AuditKind::TokenRevoked => "access-token-revoked",
            AuditKind::MemberAdded => "member-added",
            AuditKind::MemberRoleChanged => "member-role-changed",
            AuditKind::MemberRemoved => "member-removed",
            AuditKind::WebhookCreated => "webhook-created",
            AuditKind::WebhookUpdated => "webhook-updated",
            AuditKind::WebhookDeleted => "webhook-deleted",
            AuditKind::TeamCreated => "team-created",
            AuditKind::TeamUpdated => "team-updated",
            AuditKind::TeamDeleted => "team-deleted",
            AuditKind::RoleCreated => "role-created",
            AuditKind::RoleUpdated => "role-updated",
            AuditKind::RoleDeleted => "role-deleted",
            AuditKind::StackPermissionChanged => "stack-permission-changed",
            AuditKind::AuthFailure => "auth-failure",
        }
    }

    /// Whether the action needs the organization's admin role.
    fn requires_org_admin(self) -> bool {
        matches!(
            self,
            AuditKind::MemberAdded
                | AuditKind::MemberRoleChanged
                | AuditKind::MemberRemoved
                | AuditKind::WebhookCreated
                | AuditKind::WebhookUpdated
                | AuditKind::WebhookDeleted
                | AuditKind::TeamCreated
                | AuditKind::TeamDeleted
                | AuditKind::RoleCreated
                | AuditKind::RoleUpdated
                | AuditKind::RoleDeleted
        )
    }

    /// Whether the action needs admin on the stack.
    fn requires_stack_admin(self) -> bool {
        matches!(
            self,
            AuditKind::StackDeleted | AuditKind::StackRenamed | AuditKind::StackPermissionChanged
        )
    }
}

/// Events one page of the log holds at most (the CLI pages through with the continuation).
pub const AUDIT_PAGE: i64 = 100;

/// Refusals noted per second at most: a flood of bad credentials must not become a flood
/// of writes. The rest are counted in the log line of the next one noted.
const FAILURES_PER_SECOND: u32 = 20;

/// Which way the time bounds of a listing point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSemantics {
    /// The first API: `startTime` is the upper bound ("older than").
    V1,
    /// `startTime` is the lower bound and `endTime` the upper one.
    V2,
}

/// A listing as the client asked for it (either API version's names).
#[derive(Debug, Clone, Default)]
pub struct AuditListing {
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub event: Option<String>,
    pub user: Option<String>,
    pub continuation: Option<String>,
}

/// One event as the API and the operator's listing show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEventView {
    pub timestamp: i64,
    #[serde(rename = "sourceIP")]
    pub source_ip: String,
    pub event: String,
    pub description: String,
    pub user: AuditUser,
    #[serde(rename = "tokenID", skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_name: Option<String>,
    pub req_org_admin: bool,
    pub req_stack_admin: bool,
    pub auth_failure: bool,
    /// The organization the event belongs to (absent: the instance's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditUser {
    pub name: String,
    pub github_login: String,
    pub avatar_url: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub audit_log_events: Vec<AuditEventView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continuation_token: Option<String>,
}

/// The export formats of `…/auditlogs/export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Cef,
}

impl ExportFormat {
    pub fn parse(s: Option<&str>) -> EngineResult<Self> {
        match s.unwrap_or("csv").to_ascii_lowercase().as_str() {
            "" | "csv" => Ok(ExportFormat::Csv),
            "cef" => Ok(ExportFormat::Cef),
            other => Err(EngineError::Invalid(format!(
                "unknown export format '{other}': use csv or cef"
            ))),
        }
    }
}

/// Keeps refusals from turning into unbounded writes.
#[derive(Default)]
pub struct FailureBudget {
    inner: Mutex<(i64, u32, u64)>,
}

impl FailureBudget {
    /// Whether one more refusal may be noted at `now`; and how many were dropped before it.
    fn take(&self, now: i64) -> Option<u64> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (second, used, dropped) = &mut *g;
        if *second != now {
            *second = now;
            *used = 0;
        }
        if *used >= FAILURES_PER_SECOND {
            *dropped += 1;
            return None;
        }
        *used += 1;
        Some(std::mem::take(dropped))
    }
}

fn view(row: AuditEventRow) -> AuditEventView {
    let e = row.event;
    AuditEventView {
        timestamp: e.at,
        source_ip: e.source_ip,
        event: e.event,
        description: e.description,
        user: AuditUser {
            name: e.user_name,
            github_login: e.user_login,
            avatar_url: String::new(),
        },
        token_id: e.token_id,
        token_name: e.token_name,
        req_org_admin: e.req_org_admin,
        req_stack_admin: e.req_stack_admin,
        auth_failure: e.auth_failure,
        org: e.org,
    }
}

fn parse_continuation(token: Option<&str>) -> EngineResult<Option<i64>> {
    match token.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => t
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(Some)
            .ok_or_else(|| EngineError::Invalid(format!("invalid continuation token '{t}'"))),
    }
}

impl Engine {
    /// The audit event a change by `caller` records, to hand to the store with the change.
    pub(crate) fn note(
        &self,
        caller: &Identity,
        org: Option<&str>,
        kind: AuditKind,
        description: impl Into<String>,
    ) -> Notes {
        Notes::audit(self.audit_event(caller, org, kind, description.into()))
    }

    fn audit_event(
        &self,
        caller: &Identity,
        org: Option<&str>,
        kind: AuditKind,
        description: String,
    ) -> NewAuditEvent {
        let source_ip = match (&caller.source_ip, caller.operator) {
            (Some(ip), _) => ip.to_string(),
            (None, true) => "operator".into(),
            (None, false) => String::new(),
        };
        NewAuditEvent {
            org: org.map(str::to_owned),
            at: self.now(),
            event: kind.id().into(),
            description,
            user_login: caller.user.clone(),
            user_name: caller.user.clone(),
            source_ip,
            token_id: caller.token.as_ref().map(|t| t.id.clone()),
            token_name: caller
                .token
                .as_ref()
                .map(|t| t.name.clone())
                .filter(|n| !n.is_empty()),
            req_org_admin: kind.requires_org_admin(),
            req_stack_admin: kind.requires_stack_admin(),
            auth_failure: kind == AuditKind::AuthFailure,
        }
    }

    /// Notes a refused request in its own transaction: a credential that matched nobody
    /// (`caller` `None`, the instance's log) or a caller refused `what` in `org`. At most
    /// [`FAILURES_PER_SECOND`] a second are written; a failure to write is logged, never
    /// turned into the request's answer.
    pub async fn note_refusal(
        &self,
        caller: Option<&Identity>,
        source_ip: Option<std::net::IpAddr>,
        org: Option<&str>,
        what: String,
    ) {
        let Some(dropped) = self.refusals.take(self.now()) else {
            return;
        };
        if dropped > 0 {
            tracing::warn!(dropped, "refusals over the audit budget were not recorded");
        }
        let nobody = Identity {
            source_ip: None,
            ..Identity::user("")
        };
        let mut who = caller.cloned().unwrap_or(nobody);
        if who.source_ip.is_none() {
            who.source_ip = source_ip;
        }
        let event = self.audit_event(&who, org, AuditKind::AuthFailure, what);
        if let Err(e) = self.store.append_audit(vec![event]).await {
            tracing::warn!(error = %e, "recording a refused request in the audit log failed");
        }
    }

    /// One page of an organization's audit log, newest first. Organization admins only
    /// (the route says so); `org` `None` reads every event (the operator).
    pub async fn audit_log(
        &self,
        org: Option<&str>,
        listing: AuditListing,
        semantics: TimeSemantics,
        limit: i64,
    ) -> EngineResult<AuditPage> {
        let (since, until) = match semantics {
            TimeSemantics::V1 => (None, listing.start_time.or(listing.end_time)),
            TimeSemantics::V2 => (listing.start_time, listing.end_time),
        };
        if let (Some(s), Some(u)) = (since, until)
            && s > u
        {
            return Err(EngineError::Invalid("startTime is after endTime".into()));
        }
        let limit = limit.clamp(1, 10_000);
        let rows = self
            .store
            .list_audit(AuditQuery {
                org: org.map(str::to_owned),
                since,
                until,
                event: listing.event.filter(|e| !e.is_empty()),
                user: listing.user.filter(|u| !u.is_empty()),
                before_id: parse_continuation(listing.continuation.as_deref())?,
                limit: limit + 1,
            })
            .await?;
        let more = rows.len() as i64 > limit;
        let mut rows = rows;
        rows.truncate(limit as usize);
        let continuation = if more {
            rows.last().map(|r| r.id.to_string())
        } else {
            None
        };
        Ok(AuditPage {
            audit_log_events: rows.into_iter().map(view).collect(),
            continuation_token: continuation,
        })
    }

    /// Records that the CLI showed a stack's secrets in clear (`decrypt/log-decryption`,
    /// `…/log-batch-decryption`): a change of nothing, so written on its own.
    pub async fn note_decryption(
        &self,
        caller: &Identity,
        key: &crate::store::StackKey,
        what: &str,
    ) -> EngineResult<()> {
        crate::engine::names::check_key(key)?;
        let shown = if what.is_empty() {
            String::new()
        } else {
            format!(" ({})", what.chars().take(200).collect::<String>())
        };
        let event = self.audit_event(
            caller,
            Some(&key.org),
            AuditKind::SecretsDecrypted,
            format!("secrets of stack {key} shown in clear{shown}"),
        );
        Ok(self.store.append_audit(vec![event]).await?)
    }

    /// Deletes audit events older than `keep_secs`; how many went.
    pub async fn prune_audit(&self, keep_secs: i64) -> EngineResult<i64> {
        Ok(self.store.prune_audit(self.now() - keep_secs).await?)
    }
}

/// The export of a page of events: CSV with a header row, or one CEF line per event.
pub fn export(page: &AuditPage, format: ExportFormat) -> String {
    let mut out = String::new();
    match format {
        ExportFormat::Csv => {
            out.push_str(
                "Timestamp,Event,Description,User,Source IP,Token ID,Token Name,\
                 Requires Org Admin,Requires Stack Admin,Auth Failure\n",
            );
            for e in &page.audit_log_events {
                let fields = [
                    e.timestamp.to_string(),
                    e.event.clone(),
                    e.description.clone(),
                    e.user.github_login.clone(),
                    e.source_ip.clone(),
                    e.token_id.clone().unwrap_or_default(),
                    e.token_name.clone().unwrap_or_default(),
                    e.req_org_admin.to_string(),
                    e.req_stack_admin.to_string(),
                    e.auth_failure.to_string(),
                ];
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                out.push_str(&line.join(","));
                out.push('\n');
            }
        }
        ExportFormat::Cef => {
            for e in &page.audit_log_events {
                let severity = if e.auth_failure { 7 } else { 3 };
                out.push_str(&format!(
                    "CEF:0|pbackend|pbackend|{}|{}|{}|{}|rt={} src={} suser={}{}\n",
                    env!("CARGO_PKG_VERSION"),
                    cef_header(&e.event),
                    cef_header(&e.description),
                    severity,
                    e.timestamp * 1000,
                    cef_value(&e.source_ip),
                    cef_value(&e.user.github_login),
                    e.token_name
                        .as_deref()
                        .map(|n| format!(" cs1Label=tokenName cs1={}", cef_value(n)))
                        .unwrap_or_default(),
                ));
            }
        }
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// CEF header fields escape `\` and `|`; extension values escape `\`, `=` and line breaks.
fn cef_header(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

fn cef_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(desc: &str) -> AuditPage {
        AuditPage {
            audit_log_events: vec![AuditEventView {
                timestamp: 1_700_000_000,
                source_ip: "127.0.0.1".into(),
                event: "stack-created".into(),
                description: desc.into(),
                user: AuditUser {
                    name: "alice".into(),
                    github_login: "alice".into(),
                    avatar_url: String::new(),
                },
                token_id: None,
                token_name: Some("ci=main".into()),
                req_org_admin: false,
                req_stack_admin: false,
                auth_failure: false,
                org: Some("acme".into()),
            }],
            continuation_token: None,
        }
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let out = export(&page("a, \"quoted\" name"), ExportFormat::Csv);
        let line = out.lines().nth(1).unwrap();
        assert!(line.contains("\"a, \"\"quoted\"\" name\""), "{line}");
    }

    #[test]
    fn cef_escapes_separators() {
        let out = export(&page("a|b"), ExportFormat::Cef);
        assert!(out.starts_with("CEF:0|pbackend|pbackend|"), "{out}");
        assert!(out.contains("a\\|b"), "{out}");
        assert!(out.contains("cs1=ci\\=main"), "{out}");
    }

    #[test]
    fn refusals_are_bounded_per_second() {
        let b = FailureBudget::default();
        for _ in 0..FAILURES_PER_SECOND {
            assert_eq!(b.take(5), Some(0));
        }
        assert_eq!(b.take(5), None);
        assert_eq!(b.take(5), None);
        assert_eq!(b.take(6), Some(2));
    }

    #[test]
    fn continuation_tokens_are_positive_ids() {
        assert_eq!(parse_continuation(None).unwrap(), None);
        assert_eq!(parse_continuation(Some("42")).unwrap(), Some(42));
        assert!(parse_continuation(Some("x")).is_err());
        assert!(parse_continuation(Some("-1")).is_err());
    }
}
