//! The audit log's rules: what a change leaves behind is written with the change and only
//! when it happened; listings filter and page newest first; pruning goes by age.

use super::*;
pub(super) use crate::store::integration::{AuditQuery, NewAuditEvent};

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
