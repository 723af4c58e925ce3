//! Webhooks: organization and stack hooks, what they may subscribe to, and the events the
//! engine raises for them. Each event is queued in the outbox by the very transaction that
//! makes its change (see [`crate::store::integration::Notes`]); `delivery.rs` sends them.
//!
//! Names, filters, groups, formats and payload shapes are the service's (see
//! `reference/integrations.md`).

use serde::Serialize;
use serde_json::json;

use crate::engine::crypto;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::integration::audit::AuditKind;
use crate::engine::integration::delivery::{self, Destination};
use crate::engine::{Engine, Identity};
use crate::store::integration::{AttemptRow, HookEvent, HookRow};
use crate::store::{StackKey, StoreError};

/// Filters by group, as the service defines them; `*` marks those an organization's hook
/// may take but a stack's may not.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "stacks",
        &[
            "*stack_created",
            "*stack_deleted",
            "update_succeeded",
            "update_failed",
            "preview_succeeded",
            "preview_failed",
            "destroy_succeeded",
            "destroy_failed",
            "refresh_succeeded",
            "refresh_failed",
            "import_succeeded",
            "import_failed",
        ],
    ),
    (
        "deployments",
        &[
            "deployment_queued",
            "deployment_started",
            "deployment_succeeded",
            "deployment_failed",
            "drift_detected",
            "drift_detection_succeeded",
            "drift_detection_failed",
            "drift_remediation_succeeded",
            "drift_remediation_failed",
            "deployment_file_ingestion_failed",
        ],
    ),
    (
        "policies",
        &["policy_violation_mandatory", "policy_violation_advisory"],
    ),
    (
        "*environments",
        &[
            "environment_created",
            "environment_deleted",
            "environment_revision_created",
            "environment_revision_retracted",
            "environment_revision_tag_created",
            "environment_revision_tag_deleted",
            "environment_revision_tag_updated",
            "environment_tag_created",
            "environment_tag_deleted",
            "environment_tag_updated",
            "imported_environment_changed",
        ],
    ),
    (
        "*change_requests",
        &[
            "change_request_created",
            "change_request_updated",
            "change_request_approved",
            "change_request_unapproved",
            "change_request_closed",
            "change_request_applied",
            "change_request_submitted",
        ],
    ),
];

/// Formats a hook may deliver in.
const FORMATS: &[&str] = &["raw", "slack", "ms_teams"];

/// The value `pulumi … webhook edit --secret ""` sends to clear a secret.
const REMOVE_SECRET: &str = "__remove-secret";

/// Where a hook lives: an organization, or one of its stacks.
#[derive(Debug, Clone)]
pub enum HookScope {
    Org(String),
    Stack(StackKey),
}

impl HookScope {
    fn org(&self) -> &str {
        match self {
            HookScope::Org(o) => o,
            HookScope::Stack(k) => &k.org,
        }
    }

    fn is_stack(&self) -> bool {
        matches!(self, HookScope::Stack(_))
    }
}

/// A hook's settings as a client sends them (create, or the whole object on update).
#[derive(Debug, Clone, Default)]
pub struct HookSpec {
    pub organization_name: String,
    pub project_name: Option<String>,
    pub stack_name: Option<String>,
    /// Empty on create: one is generated.
    pub name: String,
    pub display_name: String,
    pub payload_url: String,
    pub active: bool,
    pub format: Option<String>,
    pub filters: Vec<String>,
    pub groups: Vec<String>,
    /// `None`: keep (on update) or none (on create).
    pub secret: Option<String>,
}

/// A hook as the API shows it (never its secret).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HookView {
    pub organization_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_name: Option<String>,
    pub name: String,
    pub display_name: String,
    pub payload_url: String,
    pub active: bool,
    pub format: String,
    pub filters: Vec<String>,
    pub groups: Vec<String>,
    pub has_secret: bool,
    pub secret_ciphertext: String,
}

/// One attempt at a delivery, as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub id: String,
    pub kind: String,
    pub payload: String,
    pub timestamp: i64,
    pub duration: i64,
    pub request_url: String,
    pub request_headers: String,
    pub response_code: i64,
    pub response_headers: String,
    pub response_body: String,
}

impl From<AttemptRow> for DeliveryView {
    fn from(a: AttemptRow) -> Self {
        DeliveryView {
            id: a.id,
            kind: a.kind,
            payload: a.payload,
            timestamp: a.at,
            duration: a.duration_ms,
            request_url: a.request_url,
            request_headers: a.request_headers,
            response_code: a.response_code.unwrap_or(0),
            response_headers: a.response_headers,
            response_body: a.response_body,
        }
    }
}

fn bad(msg: impl Into<String>) -> EngineError {
    EngineError::Invalid(msg.into())
}

/// Checks groups and filters as the service does (the same messages as the CLI's own check).
fn check_subscriptions(
    stack_hook: bool,
    groups: &[String],
    filters: &[String],
) -> EngineResult<()> {
    let allowed_group = |g: &str| {
        GROUPS.iter().find_map(|(name, filters)| {
            let org_only = name.starts_with('*');
            let bare = name.trim_start_matches('*');
            (bare == g && !(org_only && stack_hook)).then_some(*filters)
        })
    };
    for g in groups {
        if allowed_group(g).is_none() {
            let valid: Vec<String> = GROUPS
                .iter()
                .filter(|(n, _)| !(stack_hook && n.starts_with('*')))
                .map(|(n, _)| format!("{:?}", n.trim_start_matches('*')))
                .collect();
            return Err(bad(format!(
                "invalid group {g:?}; valid groups: {}",
                valid.join(", ")
            )));
        }
    }
    for f in filters {
        let home = GROUPS.iter().find_map(|(group, fs)| {
            fs.iter().find(|x| x.trim_start_matches('*') == f).map(|x| {
                (
                    group.trim_start_matches('*'),
                    x.starts_with('*') || group.starts_with('*'),
                )
            })
        });
        match home {
            Some((_, true)) if stack_hook => return Err(bad(format!("invalid event {f:?}"))),
            Some((group, _)) if groups.iter().any(|g| g == group) => {
                return Err(bad(format!(
                    "event {f:?} is already included by group {group:?}; remove the event or \
                     the group"
                )));
            }
            Some(_) => {}
            None => return Err(bad(format!("invalid event {f:?}"))),
        }
    }
    Ok(())
}

fn check_format(format: &str) -> EngineResult<()> {
    if FORMATS.contains(&format) {
        return Ok(());
    }
    if format == "pulumi_deployments" {
        return Err(bad(
            "the 'pulumi_deployments' format needs Pulumi Deployments, which this server does not run",
        ));
    }
    Err(bad(format!(
        "invalid format {format:?}: use raw, slack or ms_teams"
    )))
}

fn check_name(name: &str) -> EngineResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "invalid webhook name {name:?}: 1-64 letters, digits, '-', '_' or '.'"
        )))
    }
}

fn dedup(v: &[String]) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for x in v {
        if !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

/// The `user`/`organization` objects of a payload.
fn person(login: &str) -> serde_json::Value {
    json!({"name": login, "githubLogin": login, "avatarUrl": ""})
}

impl Engine {
    fn view_of(&self, h: &HookRow, key: Option<&StackKey>) -> HookView {
        HookView {
            organization_name: h.org.clone(),
            project_name: key.map(|k| k.project.clone()),
            stack_name: key.map(|k| k.stack.clone()),
            name: h.name.clone(),
            display_name: h.display_name.clone(),
            payload_url: h.payload_url.clone(),
            active: h.active,
            format: h.format.clone(),
            filters: h.filters.clone(),
            groups: h.groups.clone(),
            has_secret: h.secret.is_some(),
            secret_ciphertext: String::new(),
        }
    }

    /// The organization and (for a stack's hooks) the stack id of a scope the caller may use.
    async fn scope_ids(&self, caller: &Identity, scope: &HookScope) -> EngineResult<Option<i64>> {
        match scope {
            HookScope::Org(org) => {
                self.check_org_access(caller, org)?;
                Ok(None)
            }
            HookScope::Stack(key) => Ok(Some(self.stack(caller, key).await?.id)),
        }
    }

    async fn hook(
        &self,
        caller: &Identity,
        scope: &HookScope,
        name: &str,
    ) -> EngineResult<(HookRow, Option<i64>)> {
        let stack_id = self.scope_ids(caller, scope).await?;
        let hook = self
            .store
            .get_hook(scope.org(), stack_id, name)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("webhook '{name}' not found")))?;
        Ok((hook, stack_id))
    }

    fn stack_key(scope: &HookScope) -> Option<&StackKey> {
        match scope {
            HookScope::Stack(k) => Some(k),
            HookScope::Org(_) => None,
        }
    }

    fn checked(
        &self,
        scope: &HookScope,
        spec: &HookSpec,
    ) -> EngineResult<(String, Vec<String>, Vec<String>)> {
        if !spec.organization_name.is_empty() && spec.organization_name != scope.org() {
            return Err(bad(format!(
                "organizationName {:?} does not match the organization in the path",
                spec.organization_name
            )));
        }
        if let HookScope::Stack(k) = scope {
            let differs = |given: &Option<String>, want: &str| {
                given.as_deref().is_some_and(|g| !g.is_empty() && g != want)
            };
            if differs(&spec.project_name, &k.project) || differs(&spec.stack_name, &k.stack) {
                return Err(bad(
                    "projectName/stackName do not match the stack in the path",
                ));
            }
        }
        let format = spec
            .format
            .clone()
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| "raw".into());
        check_format(&format)?;
        let (filters, groups) = (dedup(&spec.filters), dedup(&spec.groups));
        check_subscriptions(scope.is_stack(), &groups, &filters)?;
        delivery::check_url(&spec.payload_url, &self.cfg.webhooks)?;
        Ok((format, filters, groups))
    }

    fn sealed_secret(&self, secret: &str) -> EngineResult<Option<Vec<u8>>> {
        Ok(Some(self.master()?.seal_secret(secret.as_bytes())))
    }

    pub async fn list_hooks(
        &self,
        caller: &Identity,
        scope: &HookScope,
    ) -> EngineResult<Vec<HookView>> {
        let stack_id = self.scope_ids(caller, scope).await?;
        let key = Self::stack_key(scope);
        Ok(self
            .store
            .list_hooks(scope.org(), stack_id)
            .await?
            .iter()
            .map(|h| self.view_of(h, key))
            .collect())
    }

    pub async fn get_hook(
        &self,
        caller: &Identity,
        scope: &HookScope,
        name: &str,
    ) -> EngineResult<HookView> {
        let (h, _) = self.hook(caller, scope, name).await?;
        Ok(self.view_of(&h, Self::stack_key(scope)))
    }

    pub async fn create_hook(
        &self,
        caller: &Identity,
        scope: &HookScope,
        spec: HookSpec,
    ) -> EngineResult<HookView> {
        let stack_id = self.scope_ids(caller, scope).await?;
        let (format, filters, groups) = self.checked(scope, &spec)?;
        let name = if spec.name.is_empty() {
            hex::encode(crypto::random_bytes::<4>())
        } else {
            check_name(&spec.name)?;
            spec.name.clone()
        };
        let secret = match spec.secret.as_deref() {
            None | Some("") | Some(REMOVE_SECRET) => None,
            Some(s) => self.sealed_secret(s)?,
        };
        let display_name = if spec.display_name.is_empty() {
            name.clone()
        } else {
            spec.display_name.clone()
        };
        let notes = self.note(
            caller,
            Some(scope.org()),
            AuditKind::WebhookCreated,
            format!(
                "webhook '{name}' ({display_name}) created for {}",
                scope_label(scope)
            ),
        );
        let row = HookRow {
            id: 0,
            org: scope.org().to_owned(),
            stack_id,
            name: name.clone(),
            display_name,
            payload_url: spec.payload_url.clone(),
            active: spec.active,
            format,
            filters,
            groups,
            secret,
            created_at: self.now(),
        };
        match self.store.create_hook(row, notes).await {
            Ok(h) => Ok(self.view_of(&h, Self::stack_key(scope))),
            Err(StoreError::Conflict(_)) => Err(EngineError::Conflict(format!(
                "a webhook named '{name}' already exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a hook's settings with `spec` (the whole object, as the CLI's edit sends it).
    pub async fn update_hook(
        &self,
        caller: &Identity,
        scope: &HookScope,
        name: &str,
        spec: HookSpec,
    ) -> EngineResult<HookView> {
        let (mut h, _) = self.hook(caller, scope, name).await?;
        let (format, filters, groups) = self.checked(scope, &spec)?;
        h.secret = match spec.secret.as_deref() {
            None => h.secret,
            Some("") | Some(REMOVE_SECRET) => None,
            Some(s) => self.sealed_secret(s)?,
        };
        if !spec.display_name.is_empty() {
            h.display_name = spec.display_name.clone();
        }
        h.payload_url = spec.payload_url.clone();
        h.active = spec.active;
        h.format = format;
        h.filters = filters;
        h.groups = groups;
        let notes = self.note(
            caller,
            Some(scope.org()),
            AuditKind::WebhookUpdated,
            format!("webhook '{name}' of {} updated", scope_label(scope)),
        );
        if !self.store.update_hook(h.clone(), notes).await? {
            return Err(EngineError::NotFound(format!("webhook '{name}' not found")));
        }
        Ok(self.view_of(&h, Self::stack_key(scope)))
    }

    pub async fn delete_hook(
        &self,
        caller: &Identity,
        scope: &HookScope,
        name: &str,
    ) -> EngineResult<()> {
        let (h, _) = self.hook(caller, scope, name).await?;
        let notes = self.note(
            caller,
            Some(scope.org()),
            AuditKind::WebhookDeleted,
            format!("webhook '{name}' of {} deleted", scope_label(scope)),
        );
        if !self.store.delete_hook(h.id, notes).await? {
            return Err(EngineError::NotFound(format!("webhook '{name}' not found")));
        }
        Ok(())
    }

    /// Sends a `ping` now and answers with the attempt (also when the receiver failed: its
    /// answer is in the record).
    pub async fn ping_hook(
        &self,
        caller: &Identity,
        scope: &HookScope,
        name: &str,
    ) -> EngineResult<DeliveryView> {
        let (h, _) = self.hook(caller, scope, name).await?;
        let payload = json!({"timestamp": self.now(), "message": "ping"}).to_string();
        self.deliver_now(h.id, "ping".into(), payload).await
    }

    /// A hook's deliveries, newest first.
    pub async fn hook_deliveries(
        &self,
        caller: &Identity,
        scope: &HookScope,
        name: &str,
    ) -> EngineResult<Vec<DeliveryView>> {
        let (h, _) = self.hook(caller, scope, name).await?;
        Ok(self
            .store
            .list_attempts(h.id, 100)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Sends the payload of an earlier delivery again, now, as a new delivery.
    pub async fn redeliver(
        &self,
        caller: &Identity,
        scope: &HookScope,
        name: &str,
        delivery_id: &str,
    ) -> EngineResult<DeliveryView> {
        let (h, _) = self.hook(caller, scope, name).await?;
        let earlier = self
            .store
            .get_attempt(h.id, delivery_id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("delivery '{delivery_id}' not found")))?;
        self.deliver_now(h.id, earlier.kind, earlier.payload).await
    }

    async fn deliver_now(
        &self,
        hook_id: i64,
        kind: String,
        payload: String,
    ) -> EngineResult<DeliveryView> {
        let now = self.now();
        let id = self
            .store
            .enqueue_delivery(hook_id, kind, payload, now)
            .await?;
        let hold = self.cfg.webhooks.hold_until(now);
        let row = self
            .store
            .claim_deliveries(now, hold, 1, Some(id))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| EngineError::Internal("a queued delivery vanished".into()))?;
        let attempt = self.send(row, Destination::Now).await?;
        Ok(attempt.into())
    }

    /// The webhook event of a stack created or deleted (organization hooks only).
    pub(crate) fn stack_hook_event(
        &self,
        caller: &Identity,
        key: &StackKey,
        action: &str,
    ) -> HookEvent {
        let payload = json!({
            "user": person(&caller.user),
            "organization": person(&key.org),
            "action": action,
            "projectName": key.project,
            "stackName": key.stack,
        });
        HookEvent {
            org: key.org.clone(),
            stack_id: None,
            kind: "stack".into(),
            filter: format!("stack_{action}"),
            group: "stacks".into(),
            payload: payload.to_string(),
            at: self.now(),
        }
    }

    /// The webhook event of an update that finished.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update_hook_event(
        &self,
        author: &str,
        key: &StackKey,
        stack_id: i64,
        kind: &str,
        dry_run: bool,
        update_id: &str,
        version: i64,
        succeeded: bool,
        resource_changes: Option<&str>,
    ) -> HookEvent {
        let base = self.cfg.login.public_url.clone().unwrap_or_default();
        let base = base.trim_end_matches('/');
        let url = if dry_run {
            format!(
                "{base}/{}/{}/{}/previews/{update_id}",
                key.org, key.project, key.stack
            )
        } else {
            format!(
                "{base}/{}/{}/{}/updates/{version}",
                key.org, key.project, key.stack
            )
        };
        let result = if succeeded { "succeeded" } else { "failed" };
        let changes: serde_json::Value = resource_changes
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_else(|| json!({}));
        let payload = json!({
            "user": person(author),
            "organization": person(&key.org),
            "projectName": key.project,
            "stackName": key.stack,
            "updateUrl": url,
            "kind": if dry_run { "preview" } else { kind },
            "result": result,
            "resourceChanges": changes,
            "isPreview": dry_run,
        });
        let (event_kind, filter_kind) = if dry_run {
            ("stack_preview", "preview")
        } else {
            ("stack_update", kind)
        };
        HookEvent {
            org: key.org.clone(),
            stack_id: Some(stack_id),
            kind: event_kind.into(),
            filter: format!("{filter_kind}_{result}"),
            group: "stacks".into(),
            payload: payload.to_string(),
            at: self.now(),
        }
    }
}

fn scope_label(scope: &HookScope) -> String {
    match scope {
        HookScope::Org(o) => format!("organization {o}"),
        HookScope::Stack(k) => format!("stack {k}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn subscriptions_are_checked_as_the_service_does() {
        assert!(check_subscriptions(false, &s(&["stacks"]), &s(&["deployment_failed"])).is_ok());
        assert!(check_subscriptions(false, &[], &s(&["stack_created"])).is_ok());
        let e = check_subscriptions(true, &[], &s(&["stack_created"])).unwrap_err();
        assert_eq!(e.to_string(), "invalid event \"stack_created\"");
        let e = check_subscriptions(true, &s(&["environments"]), &[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid group \"environments\"; valid groups: \"stacks\"")
        );
        let e = check_subscriptions(false, &s(&["stacks"]), &s(&["update_failed"])).unwrap_err();
        assert!(
            e.to_string()
                .contains("already included by group \"stacks\"")
        );
        assert!(check_subscriptions(false, &[], &s(&["nope"])).is_err());
    }

    #[test]
    fn formats_and_names() {
        assert!(check_format("raw").is_ok() && check_format("ms_teams").is_ok());
        assert!(check_format("pulumi_deployments").is_err());
        assert!(check_format("xml").is_err());
        assert!(check_name("a1b2c3d4").is_ok());
        assert!(check_name("no spaces").is_err());
        assert!(check_name("").is_err());
    }
}
