//! The audit log's rules: what a change leaves behind is written with the change and only
//! when it happened; listings filter and page newest first; pruning goes by age.

use super::*;
pub(super) use crate::store::integration::{
    AttemptRow, AuditQuery, HookEvent, HookRow, NewAuditEvent, OutboxRow, Settle,
};

fn event(org: Option<&str>, at: i64, kind: &str, user: &str) -> NewAuditEvent {
    NewAuditEvent {
        org: org.map(str::to_owned),
        at,
        event: kind.into(),
        description: format!("{kind} by {user}"),
        user_login: user.into(),
        user_name: user.into(),
        source_ip: "10.0.0.1".into(),
        token_id: Some("tok-1".into()),
        token_name: None,
        req_org_admin: false,
        req_stack_admin: kind == "stack-deleted",
        auth_failure: kind == "auth-failure",
    }
}

fn notes(kind: &str) -> Notes {
    Notes::audit(event(Some("org"), 500, kind, "alice"))
}

async fn kinds(s: &dyn Store, q: AuditQuery) -> Vec<String> {
    s.list_audit(q)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event.event)
        .collect()
}

fn all() -> AuditQuery {
    AuditQuery {
        limit: 100,
        ..Default::default()
    }
}

pub async fn audit_notes_ride_with_their_change(s: &dyn Store) {
    let a = stack(s, "a").await;
    let guard = StackGuard {
        now: 420,
        force: false,
        require_empty: true,
    };
    // A change that did not happen leaves no event: a busy stack is not deleted or renamed,
    // a second start finds the stack taken, a retried finish changes nothing, revoking
    // nothing revokes nothing.
    started(s, "u1", a.id, 400).await;
    let busy = s.delete_stack(a.id, guard, notes("stack-deleted")).await;
    assert!(matches!(busy, Ok(Guarded::Busy(_))), "{busy:?}");
    let busy = s
        .rename_stack(a.id, key("a2"), guard, notes("stack-renamed"))
        .await;
    assert!(matches!(busy, Ok(Guarded::Busy(_))), "{busy:?}");
    s.create_update(new_update("u2", a.id, false))
        .await
        .unwrap();
    let mut second = start("u2", a.id, 401, b"u2");
    second.notes = notes("update-started");
    assert!(matches!(
        s.start_update(second).await.unwrap(),
        StartOutcome::Busy(_)
    ));
    let revoked = s
        .revoke_tokens(
            TokenSelector::User("nobody".into()),
            400,
            notes("access-token-revoked"),
        )
        .await
        .unwrap();
    assert!(revoked.is_empty());
    assert!(
        kinds(s, all()).await.is_empty(),
        "a change that did not happen left an event"
    );

    // A change that happened leaves exactly its event, once.
    let mut f = finish(
        "u1",
        a.id,
        FinishGuard::Lease(lease("u1", a.id, 410, b"u1")),
        FinalState::Working {
            resource_count: None,
        },
    );
    f.notes = notes("update-succeeded");
    s.finish_update(f.clone()).await.unwrap();
    assert!(matches!(
        s.finish_update(f).await.unwrap(),
        FinishOutcome::AlreadyFinished(_)
    ));
    s.set_stack_tags(a.id, Tags::new(), notes("stack-tags-updated"))
        .await
        .unwrap();
    let later = StackGuard {
        now: 10_000,
        ..guard
    };
    s.delete_stack(a.id, later, notes("stack-deleted"))
        .await
        .unwrap();
    // A write that fails rolls its event back with it.
    let taken = s
        .create_stack(NewStack {
            created_by: None,
            teams: vec![],
            key: key("b"),
            tags: Tags::new(),
            created_at: 1,
            wrapped_key: vec![],
            initial_state: None,
            notes: notes("stack-created"),
        })
        .await;
    assert!(taken.is_ok());
    let dup = s
        .create_stack(NewStack {
            created_by: None,
            teams: vec![],
            key: key("b"),
            tags: Tags::new(),
            created_at: 1,
            wrapped_key: vec![],
            initial_state: None,
            notes: notes("stack-created"),
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))));
    assert_eq!(
        kinds(s, all()).await,
        [
            "stack-created",
            "stack-deleted",
            "stack-tags-updated",
            "update-succeeded"
        ],
        "newest first, one event per change"
    );

    // Refusals on their own; filters; paging by id; instance events (no org).
    s.append_audit(vec![
        event(None, 600, "auth-failure", ""),
        event(Some("other"), 700, "stack-created", "bob"),
    ])
    .await
    .unwrap();
    let org = |o: &str| AuditQuery {
        org: Some(o.into()),
        ..all()
    };
    assert_eq!(kinds(s, org("other")).await, ["stack-created"]);
    assert_eq!(kinds(s, all()).await.len(), 6);
    let q = AuditQuery {
        event: Some("stack-created".into()),
        user: Some("alice".into()),
        ..all()
    };
    assert_eq!(kinds(s, q).await, ["stack-created"]);
    let q = AuditQuery {
        since: Some(600),
        until: Some(650),
        ..all()
    };
    let rows = s.list_audit(q).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event.org, None);
    assert!(rows[0].event.auth_failure);
    let first = s
        .list_audit(AuditQuery { limit: 2, ..all() })
        .await
        .unwrap();
    let rest = s
        .list_audit(AuditQuery {
            before_id: Some(first[1].id),
            ..all()
        })
        .await
        .unwrap();
    assert_eq!(first.len() + rest.len(), 6);
    assert!(rest.iter().all(|r| r.id < first[1].id));

    // Pruning by age.
    assert_eq!(s.prune_audit(600).await.unwrap(), 4);
    assert_eq!(kinds(s, all()).await.len(), 2);
}

fn hook(org: &str, stack_id: Option<i64>, name: &str, filters: &[&str]) -> HookRow {
    HookRow {
        id: 0,
        org: org.into(),
        stack_id,
        name: name.into(),
        display_name: name.into(),
        payload_url: "http://receiver/x".into(),
        active: true,
        format: "raw".into(),
        filters: filters.iter().map(|f| (*f).to_owned()).collect(),
        groups: vec![],
        secret: Some(vec![1, 2]),
        created_at: 1,
    }
}

fn hook_event(stack_id: Option<i64>, filter: &str) -> HookEvent {
    HookEvent {
        org: "org".into(),
        stack_id,
        kind: "stack_update".into(),
        filter: filter.into(),
        group: "stacks".into(),
        payload: format!("{{\"filter\":\"{filter}\"}}"),
        at: 100,
    }
}

pub async fn webhooks_outbox_and_attempts(s: &dyn Store) {
    let a = stack(s, "a").await;
    let all = s
        .create_hook(hook("org", None, "all", &[]), Notes::none())
        .await
        .unwrap();
    let failed = s
        .create_hook(
            hook("org", Some(a.id), "failed", &["update_failed"]),
            Notes::none(),
        )
        .await
        .unwrap();
    s.create_hook(hook("other", None, "elsewhere", &[]), Notes::none())
        .await
        .unwrap();
    assert!(matches!(
        s.create_hook(hook("org", None, "all", &[]), Notes::none())
            .await,
        Err(StoreError::Conflict(_))
    ));
    // The same name in another scope is another hook.
    s.create_hook(hook("org", Some(a.id), "all", &[]), Notes::none())
        .await
        .unwrap();
    assert_eq!(s.list_hooks("org", None).await.unwrap().len(), 1);
    assert_eq!(s.list_hooks("org", Some(a.id)).await.unwrap().len(), 2);
    let got = s
        .get_hook("org", Some(a.id), "failed")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.filters, ["update_failed"]);
    assert_eq!(got.secret, Some(vec![1, 2]));

    // A change's events fan out, in its transaction, to the hooks that want them.
    let notes = Notes {
        audit: vec![],
        hooks: vec![hook_event(Some(a.id), "update_succeeded")],
    };
    s.set_stack_tags(a.id, Tags::new(), notes).await.unwrap();
    let notes = Notes {
        audit: vec![],
        hooks: vec![hook_event(Some(a.id), "update_failed")],
    };
    s.set_stack_tags(a.id, Tags::new(), notes).await.unwrap();
    // org hook "all": both; stack hook "failed": one; stack hook "all": both; "other": none.
    assert_eq!(s.next_delivery_due().await.unwrap(), Some(100));
    let claimed = s.claim_deliveries(150, 200, 100, None).await.unwrap();
    assert_eq!(claimed.len(), 5);
    assert!(claimed.iter().all(|c| c.attempts == 0));
    assert!(
        s.claim_deliveries(150, 200, 100, None)
            .await
            .unwrap()
            .is_empty(),
        "claimed deliveries are held"
    );
    let to_failed = claimed.iter().find(|c| c.hook.id == failed.id).unwrap();
    assert_eq!(to_failed.payload, "{\"filter\":\"update_failed\"}");
    let attempt = |c: &OutboxRow, id: &str, code: Option<i64>| AttemptRow {
        id: id.into(),
        outbox_id: c.id,
        hook_id: c.hook.id,
        at: 160,
        kind: c.kind.clone(),
        payload: c.payload.clone(),
        request_url: c.hook.payload_url.clone(),
        request_headers: "Content-Type: application/json\n".into(),
        duration_ms: 3,
        response_code: code,
        response_headers: String::new(),
        response_body: String::new(),
    };
    for (i, c) in claimed.iter().enumerate() {
        let settle = if c.hook.id == all.id {
            Settle::RetryAt(300)
        } else {
            Settle::Delivered
        };
        s.record_attempt(attempt(c, &format!("a{i}"), Some(500)), settle)
            .await
            .unwrap();
    }
    // After its hold, nothing settled comes back; the retries come back when due.
    assert!(
        s.claim_deliveries(250, 400, 100, None)
            .await
            .unwrap()
            .is_empty()
    );
    let again = s.claim_deliveries(300, 400, 100, None).await.unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|c| c.hook.id == all.id && c.attempts == 1));
    let listed = s.list_attempts(all.id, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        s.get_attempt(all.id, &listed[0].id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        s.get_attempt(failed.id, &listed[0].id)
            .await
            .unwrap()
            .is_none()
    );
    // One delivery claimed alone (a ping), even when not due.
    let ping = s
        .enqueue_delivery(all.id, "ping".into(), "{}".into(), 1_000)
        .await
        .unwrap();
    let one = s.claim_deliveries(500, 600, 10, Some(ping)).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].kind, "ping");

    // Updating and deleting; a stack's hooks go with the stack.
    let mut changed = got.clone();
    changed.active = false;
    changed.secret = None;
    assert!(s.update_hook(changed, Notes::none()).await.unwrap());
    let got = s
        .get_hook("org", Some(a.id), "failed")
        .await
        .unwrap()
        .unwrap();
    assert!(!got.active && got.secret.is_none());
    assert!(s.delete_hook(all.id, Notes::none()).await.unwrap());
    assert!(!s.delete_hook(all.id, Notes::none()).await.unwrap());
    assert!(s.list_attempts(all.id, 10).await.unwrap().is_empty());
    let guard = StackGuard {
        now: 10_000,
        force: true,
        require_empty: false,
    };
    s.delete_stack(a.id, guard, Notes::none()).await.unwrap();
    assert!(
        s.get_hook("org", Some(a.id), "failed")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.list_hooks("other", None).await.unwrap().len(), 1);
    // Old records go.
    assert!(s.prune_deliveries(10_000).await.unwrap() >= 0);
}
