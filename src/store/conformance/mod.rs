//! One conformance suite for every [`Store`]: the rules a backend must keep, checked against
//! the trait alone. `tests/store_conformance.rs` runs it on SQLite, and on PostgreSQL when a
//! server is available (the test starts one). Each check takes a fresh, empty store.
//!
//! Panics on the first broken rule, naming it.

use std::collections::BTreeMap;
use std::sync::Arc;

mod integration;

use crate::store::backup::{Merge, Record};
use crate::store::*;

/// A store to check and a way to get another empty one of the same kind (for backup loads).
pub struct Subject {
    pub store: Arc<dyn Store>,
    pub fresh:
        Box<dyn Fn() -> futures_util::future::BoxFuture<'static, Arc<dyn Store>> + Send + Sync>,
}

fn key(stack: &str) -> StackKey {
    StackKey {
        org: "org".into(),
        project: "proj".into(),
        stack: stack.into(),
    }
}

fn blob(text: &str, resources: i64) -> StateBlob {
    StateBlob {
        gz: text.as_bytes().to_vec(),
        sha256: format!("{:0>64}", text.len()),
        size: text.len() as i64,
        resource_count: resources,
    }
}

async fn stack(s: &dyn Store, name: &str) -> StackRow {
    s.create_stack(NewStack {
        created_by: None,
        teams: vec![],
        key: key(name),
        tags: BTreeMap::from([("team".into(), name.into())]),
        created_at: 100,
        wrapped_key: vec![1, 2, 3],
        initial_state: None,
        notes: Notes::none(),
    })
    .await
    .expect("create stack")
}

fn new_update(id: &str, stack_id: i64, dry_run: bool) -> NewUpdate {
    NewUpdate {
        id: id.into(),
        stack_id,
        kind: if dry_run { "preview" } else { "update" }.into(),
        dry_run,
        created_at: 200,
        author: "alice".into(),
        message: "m".into(),
        environment: "{}".into(),
        config: "{}".into(),
        coherence_window: None,
    }
}

fn start(id: &str, stack_id: i64, now: i64, lease: &[u8]) -> StartUpdate {
    StartUpdate {
        update_id: id.into(),
        stack_id,
        now,
        lease_hash: lease.to_vec(),
        lease_expires: now + 60,
        tags: None,
        journal_version: 1,
        notes: Notes::none(),
    }
}

fn lease(id: &str, stack_id: i64, now: i64, hash: &[u8]) -> LeaseCheck {
    LeaseCheck {
        update_id: id.into(),
        stack_id,
        token_hash: hash.to_vec(),
        now,
    }
}

/// Starts `id` on `stack_id` and expects it to take the stack.
async fn started(s: &dyn Store, id: &str, stack_id: i64, now: i64) -> UpdateRow {
    s.create_update(new_update(id, stack_id, false))
        .await
        .unwrap();
    match s
        .start_update(start(id, stack_id, now, id.as_bytes()))
        .await
        .unwrap()
    {
        StartOutcome::Started(r) => r,
        other => panic!("start of {id}: {other:?}"),
    }
}

fn finish(id: &str, stack_id: i64, guard: FinishGuard, state: FinalState) -> FinishUpdate {
    FinishUpdate {
        update_id: id.into(),
        stack_id,
        guard,
        status: UpdateStatus::Succeeded,
        ended_at: 300,
        resource_changes: Some(r#"{"create":1}"#.into()),
        final_state: state,
        keep_versions: 3,
        window_outputs: None,
        built_from: None,
        notes: Notes::none(),
    }
}

/// Every check, one fresh store each.
pub async fn run_all(fresh: &Subject) {
    stacks_names_and_tags((fresh.fresh)().await.as_ref()).await;
    renames_and_guarded_deletes((fresh.fresh)().await.as_ref()).await;
    update_lifecycle_and_leases((fresh.fresh)().await.as_ref()).await;
    working_state_journal_deltas_events((fresh.fresh)().await.as_ref()).await;
    imports_history_and_retention((fresh.fresh)().await.as_ref()).await;
    begin_update_and_windows((fresh.fresh)().await.as_ref()).await;
    tokens_and_keys((fresh.fresh)().await.as_ref()).await;
    one_running_update_under_concurrency((fresh.fresh)().await).await;
    integration::audit_notes_ride_with_their_change((fresh.fresh)().await.as_ref()).await;
    integration::webhooks_outbox_and_attempts((fresh.fresh)().await.as_ref()).await;
    backup_round_trip(fresh).await;
}

pub async fn stacks_names_and_tags(s: &dyn Store) {
    s.meta_put("k", b"v1".to_vec()).await.unwrap();
    s.meta_put("k", b"v2".to_vec()).await.unwrap();
    assert_eq!(s.meta_get("k").await.unwrap(), Some(b"v2".to_vec()));
    assert_eq!(s.meta_get("none").await.unwrap(), None);

    let a = stack(s, "a").await;
    assert_eq!(a.key, key("a"));
    assert_eq!(a.current_version, None);
    assert!(
        matches!(
            s.create_stack(NewStack {
                created_by: None,
                teams: vec![],
                key: key("a"),
                tags: BTreeMap::new(),
                created_at: 1,
                wrapped_key: vec![],
                initial_state: None,
                notes: Notes::none(),
            })
            .await,
            Err(StoreError::Conflict(_))
        ),
        "a duplicate stack name is a conflict"
    );
    let b = stack(s, "b").await;
    let mut other = key("c");
    other.project = "other".into();
    s.create_stack(NewStack {
        created_by: None,
        teams: vec![],
        key: other.clone(),
        tags: BTreeMap::new(),
        created_at: 1,
        wrapped_key: vec![9],
        initial_state: Some(blob("init", 2)),
        notes: Notes::none(),
    })
    .await
    .unwrap();
    let c = s.get_stack(&other).await.unwrap().expect("c");
    assert_eq!(c.current_version, Some(0), "an initial state is version 0");
    assert_eq!(c.resource_count, 2);

    assert!(s.project_exists("org", "proj").await.unwrap());
    assert!(!s.project_exists("org", "nope").await.unwrap());
    let all = |q: StackQuery| async move { s.list_stacks(q).await.unwrap() };
    let q = StackQuery {
        orgs: Some(vec!["org".into()]),
        limit: 10,
        ..StackQuery::default()
    };
    assert_eq!(all(q.clone()).await.len(), 3);
    let page = all(StackQuery {
        limit: 2,
        ..q.clone()
    })
    .await;
    assert_eq!(page.len(), 2);
    let rest = all(StackQuery {
        after_id: Some(page[1].id),
        ..q.clone()
    })
    .await;
    assert_eq!(rest.len(), 1, "paging by id continues where it stopped");
    let by_project = all(StackQuery {
        project: Some("other".into()),
        ..q.clone()
    })
    .await;
    assert_eq!(by_project.len(), 1);
    let by_tag = all(StackQuery {
        tag_name: Some("team".into()),
        tag_value: Some("b".into()),
        ..q.clone()
    })
    .await;
    assert_eq!(by_tag.iter().map(|r| r.id).collect::<Vec<_>>(), vec![b.id]);
    let tagged = all(StackQuery {
        tag_name: Some("team".into()),
        ..q.clone()
    })
    .await;
    assert_eq!(tagged.len(), 2);
    let other_org = all(StackQuery {
        orgs: Some(vec!["elsewhere".into()]),
        ..q.clone()
    })
    .await;
    assert!(other_org.is_empty());
    s.set_stack_tags(
        a.id,
        BTreeMap::from([("x".into(), "y".into())]),
        Notes::none(),
    )
    .await
    .unwrap();
    let a = s.get_stack(&key("a")).await.unwrap().unwrap();
    assert_eq!(a.tags.get("x").map(String::as_str), Some("y"));
    assert!(!a.tags.contains_key("team"));
}

pub async fn renames_and_guarded_deletes(s: &dyn Store) {
    let a = stack(s, "a").await;
    let guard = |force, empty| StackGuard {
        now: 420,
        force,
        require_empty: empty,
    };
    let renamed = match s
        .rename_stack(a.id, key("a2"), guard(false, false), Notes::none())
        .await
        .unwrap()
    {
        Guarded::Done(r) => r,
        other => panic!("rename: {other:?}"),
    };
    assert_eq!(renamed.key, key("a2"));
    assert!(s.get_stack(&key("a")).await.unwrap().is_none());
    let former = s.get_stack_or_former(&key("a")).await.unwrap().unwrap();
    assert_eq!(former.id, a.id, "the old name still leads to the stack");
    let (id, wrapped) = s.get_secrets_key(&key("a")).await.unwrap().unwrap();
    assert_eq!((id, wrapped), (a.id, vec![1, 2, 3]));
    assert_eq!(s.get_stack_key(a.id).await.unwrap(), Some(vec![1, 2, 3]));
    let b = stack(s, "b").await;
    assert!(
        matches!(
            s.rename_stack(b.id, key("a2"), guard(false, false), Notes::none())
                .await,
            Err(StoreError::Conflict(_))
        ),
        "renaming onto a taken name is a conflict"
    );
    // A name that is live again no longer redirects.
    let again = stack(s, "a").await;
    assert_eq!(
        s.get_stack_or_former(&key("a")).await.unwrap().unwrap().id,
        again.id
    );

    // Busy stacks are neither renamed nor deleted unless forced; expired leases do not hold.
    started(s, "u1", b.id, 400).await;
    assert!(matches!(
        s.rename_stack(b.id, key("b2"), guard(false, false), Notes::none())
            .await
            .unwrap(),
        Guarded::Busy(_)
    ));
    assert!(matches!(
        s.delete_stack(b.id, guard(false, true), Notes::none())
            .await
            .unwrap(),
        Guarded::Busy(_)
    ));
    let later = StackGuard {
        now: 10_000,
        force: false,
        require_empty: true,
    };
    assert!(matches!(
        s.delete_stack(b.id, later, Notes::none()).await.unwrap(),
        Guarded::Done(true)
    ));
    assert!(s.get_stack(&key("b")).await.unwrap().is_none());
    // Stacks with resources need force.
    let mut ck = key("c");
    ck.stack = "c".into();
    s.create_stack(NewStack {
        created_by: None,
        teams: vec![],
        key: ck.clone(),
        tags: BTreeMap::new(),
        created_at: 1,
        wrapped_key: vec![],
        initial_state: Some(blob("state", 5)),
        notes: Notes::none(),
    })
    .await
    .unwrap();
    let c = s.get_stack(&ck).await.unwrap().unwrap();
    assert!(matches!(
        s.delete_stack(c.id, guard(false, true), Notes::none())
            .await
            .unwrap(),
        Guarded::HasResources
    ));
    assert!(matches!(
        s.delete_stack(c.id, guard(true, true), Notes::none())
            .await
            .unwrap(),
        Guarded::Done(true)
    ));
    assert!(matches!(
        s.delete_stack(c.id, guard(true, true), Notes::none())
            .await
            .unwrap(),
        Guarded::Done(false)
    ));
}

pub async fn update_lifecycle_and_leases(s: &dyn Store) {
    let st = stack(s, "a").await;
    let u1 = started(s, "u1", st.id, 1000).await;
    assert_eq!(u1.version, 1);
    assert_eq!(u1.status, UpdateStatus::Running);
    let row = s.get_stack(&key("a")).await.unwrap().unwrap();
    assert_eq!(row.active_update.as_deref(), Some("u1"));
    // A second update finds the stack held, and is not started.
    s.create_update(new_update("u2", st.id, false))
        .await
        .unwrap();
    assert!(matches!(
        s.start_update(start("u2", st.id, 1000, b"u2")).await.unwrap(),
        StartOutcome::Busy(h) if h.id == "u1"
    ));
    assert!(matches!(
        s.start_update(start("u1", st.id, 1000, b"u1"))
            .await
            .unwrap(),
        StartOutcome::AlreadyStarted(_)
    ));
    // Previews neither wait nor hold, and see the current version.
    s.create_update(new_update("p1", st.id, true))
        .await
        .unwrap();
    assert!(matches!(
        s.start_update(start("p1", st.id, 1000, b"p1")).await.unwrap(),
        StartOutcome::Started(r) if r.version == 0
    ));
    assert_eq!(s.running_update(st.id).await.unwrap().unwrap().id, "u1");
    // The metrics' counts: the preview is not counted; a lease seen from far later is dead.
    assert_eq!(
        s.running_updates(1000).await.unwrap(),
        RunningUpdates {
            running: 1,
            live_leases: 1
        }
    );
    assert_eq!(
        s.running_updates(1 << 40).await.unwrap(),
        RunningUpdates {
            running: 1,
            live_leases: 0
        }
    );

    // Leases.
    let ls = s.lease_state(&key("a"), "u1").await.unwrap().unwrap();
    assert_eq!(ls.stack_id, st.id);
    assert_eq!(ls.lease_hash.as_deref(), Some(&b"u1"[..]));
    assert!(s.lease_state(&key("b"), "u1").await.unwrap().is_none());
    s.check_lease(lease("u1", st.id, 1000, b"u1"))
        .await
        .unwrap();
    let denied = |r: StoreResult<()>| match r {
        Err(StoreError::Lease(d)) => d,
        other => panic!("expected a refused lease, got {other:?}"),
    };
    assert_eq!(
        denied(s.check_lease(lease("u1", st.id, 1000, b"xx")).await),
        LeaseDenied::WrongToken
    );
    assert_eq!(
        denied(s.check_lease(lease("u1", st.id + 1, 1000, b"u1")).await),
        LeaseDenied::UnknownUpdate
    );
    assert_eq!(
        denied(s.check_lease(lease("u1", st.id, 1100, b"u1")).await),
        LeaseDenied::Expired
    );
    s.renew_lease(lease("u1", st.id, 1050, b"u1"), 1200)
        .await
        .unwrap();
    s.renew_lease(lease("u1", st.id, 1050, b"u1"), 1100)
        .await
        .unwrap();
    let u = s.get_update("u1").await.unwrap().unwrap();
    assert_eq!(
        u.lease_expires,
        Some(1200),
        "a renewal never shortens a lease"
    );

    // Finishing: a wrong lease is refused, the right one finishes once, a repeat says so.
    assert!(
        s.finish_update(finish(
            "u1",
            st.id,
            FinishGuard::Lease(lease("u1", st.id, 1100, b"xx")),
            FinalState::Blob(blob("v1", 3)),
        ))
        .await
        .is_err()
    );
    let out = s
        .finish_update(finish(
            "u1",
            st.id,
            FinishGuard::Lease(lease("u1", st.id, 1100, b"u1")),
            FinalState::Blob(blob("v1", 3)),
        ))
        .await
        .unwrap();
    assert!(matches!(out, FinishOutcome::Finished(r) if r.status == UpdateStatus::Succeeded));
    let again = s
        .finish_update(finish(
            "u1",
            st.id,
            FinishGuard::Lease(lease("u1", st.id, 1100, b"u1")),
            FinalState::Blob(blob("other", 9)),
        ))
        .await
        .unwrap();
    assert!(matches!(again, FinishOutcome::AlreadyFinished(_)));
    let row = s.get_stack(&key("a")).await.unwrap().unwrap();
    assert_eq!(row.current_version, Some(1));
    assert_eq!(row.resource_count, 3);
    let state = s.get_state(st.id, None).await.unwrap().unwrap();
    assert_eq!(state.gz, b"v1");
    assert_eq!(
        denied(s.check_lease(lease("u1", st.id, 1100, b"u1")).await),
        LeaseDenied::Finished(UpdateStatus::Succeeded)
    );
    let u = s.get_update("u1").await.unwrap().unwrap();
    assert_eq!(u.resource_changes.as_deref(), Some(r#"{"create":1}"#));

    // The stack is free: u2 now starts at the next version. Cancel it (no state sent): the
    // state carries over as its version.
    assert!(matches!(
        s.start_update(start("u2", st.id, 2000, b"u2")).await.unwrap(),
        StartOutcome::Started(r) if r.version == 2 && r.base_version == Some(1)
    ));
    let mut f = finish(
        "u2",
        st.id,
        FinishGuard::Running,
        FinalState::Working {
            resource_count: None,
        },
    );
    f.status = UpdateStatus::Cancelled;
    s.finish_update(f).await.unwrap();
    let row = s.get_stack(&key("a")).await.unwrap().unwrap();
    assert_eq!(row.current_version, Some(2));
    assert_eq!(
        s.get_state(st.id, Some(2)).await.unwrap().unwrap().gz,
        b"v1"
    );

    // An abandoned update is reaped only once its lease has expired.
    started(s, "u3", st.id, 3000).await;
    let reap = |now| {
        finish(
            "u3",
            st.id,
            FinishGuard::ExpiredAt(now),
            FinalState::Unchanged,
        )
    };
    assert!(matches!(
        s.finish_update(reap(3010)).await.unwrap(),
        FinishOutcome::AlreadyFinished(_)
    ));
    assert!(matches!(
        s.finish_update(reap(3100)).await.unwrap(),
        FinishOutcome::Finished(_)
    ));
}

pub async fn working_state_journal_deltas_events(s: &dyn Store) {
    let st = stack(s, "a").await;
    started(s, "u1", st.id, 1000).await;
    let l = || lease("u1", st.id, 1000, b"u1");
    s.save_checkpoint(
        l(),
        CheckpointWrite {
            blob: blob("c1", 1),
            sequence: 5,
            replaces: None,
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(
            s.save_checkpoint(
                l(),
                CheckpointWrite {
                    blob: blob("old", 1),
                    sequence: 4,
                    replaces: None,
                }
            )
            .await,
            Err(StoreError::Conflict(_))
        ),
        "an older sequence is refused"
    );
    let w = s.get_working_state("u1").await.unwrap().unwrap();
    assert_eq!((w.blob.gz.as_slice(), w.sequence), (&b"c1"[..], 5));
    for i in 0..3 {
        s.append_delta(
            l(),
            DeltaWrite {
                sequence: 6 + i,
                hash: format!("h{i}"),
                gz: vec![i as u8],
                base_sequence: 5 + i,
            },
        )
        .await
        .unwrap();
    }
    let d = s.list_deltas("u1").await.unwrap();
    assert_eq!(
        d.iter().map(|d| d.sequence).collect::<Vec<_>>(),
        vec![6, 7, 8]
    );
    // A new whole checkpoint drops the deltas on top of the old one.
    s.save_checkpoint(
        l(),
        CheckpointWrite {
            blob: blob("c2", 1),
            sequence: 9,
            replaces: None,
        },
    )
    .await
    .unwrap();
    assert!(s.list_deltas("u1").await.unwrap().is_empty());

    for i in 0..3 {
        let ordinal = s
            .append_journal(
                l(),
                JournalBatch {
                    ordinal: i + 1,
                    first_sequence: i * 10,
                    last_sequence: i * 10 + 9,
                    count: 10,
                    gz: vec![i as u8; 3],
                },
            )
            .await
            .unwrap();
        assert_eq!(
            ordinal,
            i + 1,
            "journal batches are numbered in arrival order"
        );
    }
    let j = s.list_journal_batches("u1").await.unwrap();
    assert_eq!(
        j.iter().map(|b| b.ordinal).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );

    let ev = |first: i64, changes: Option<&str>| EventBatch {
        first_sequence: first,
        last_sequence: first + 1,
        count: 2,
        gz: vec![first as u8],
        resource_changes: changes.map(str::to_owned),
    };
    for first in [30, 10, 20, 10] {
        s.append_events(l(), ev(first, None)).await.unwrap();
    }
    s.append_events(l(), ev(40, Some(r#"{"same":2}"#)))
        .await
        .unwrap();
    let all = s.list_event_batches("u1", None, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|b| b.first_sequence).collect::<Vec<_>>(),
        vec![10, 20, 30, 40],
        "events come in sequence order; a retried batch is stored once"
    );
    let page = s.list_event_batches("u1", Some(20), 1).await.unwrap();
    assert_eq!(
        page.iter().map(|b| b.first_sequence).collect::<Vec<_>>(),
        vec![30]
    );
    assert_eq!(
        s.get_update("u1")
            .await
            .unwrap()
            .unwrap()
            .resource_changes
            .as_deref(),
        Some(r#"{"same":2}"#)
    );
    // Finishing from the working state promotes it.
    s.finish_update(finish(
        "u1",
        st.id,
        FinishGuard::Lease(l()),
        FinalState::Working {
            resource_count: Some(7),
        },
    ))
    .await
    .unwrap();
    let v = s.get_state(st.id, None).await.unwrap().unwrap();
    assert_eq!((v.gz.as_slice(), v.resource_count), (&b"c2"[..], 7));
    assert!(s.get_working_state("u1").await.unwrap().is_none());
    // Writes under a finished lease are refused.
    assert!(
        s.append_journal(
            l(),
            JournalBatch {
                ordinal: 4,
                first_sequence: 0,
                last_sequence: 0,
                count: 1,
                gz: vec![]
            }
        )
        .await
        .is_err()
    );
    assert!(s.append_events(l(), ev(50, None)).await.is_err());
}

pub async fn imports_history_and_retention(s: &dyn Store) {
    let st = stack(s, "a").await;
    for v in 1..=5 {
        let out = s
            .import_state(
                new_update(&format!("i{v}"), st.id, false),
                blob(&format!("v{v}"), v),
                3,
                Notes::none(),
            )
            .await
            .unwrap();
        assert!(matches!(out, ImportOutcome::Imported { version } if version == v));
    }
    let versions = s.list_versions(st.id).await.unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![5, 4, 3],
        "only the newest kept versions remain"
    );
    assert!(s.get_state(st.id, Some(2)).await.unwrap().is_none());
    let h = s.list_updates(st.id, 0, 10).await.unwrap();
    assert_eq!(
        h.iter().map(|u| u.version).collect::<Vec<_>>(),
        vec![5, 4, 3, 2, 1]
    );
    let page = s.list_updates(st.id, 1, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|u| u.version).collect::<Vec<_>>(),
        vec![4, 3]
    );
    assert_eq!(
        s.get_update_by_version(st.id, 4).await.unwrap().unwrap().id,
        "i4"
    );
    // An import waits for no one but is refused while an update holds the stack.
    started(s, "u", st.id, 1000).await;
    assert!(matches!(
        s.import_state(
            new_update("i6", st.id, false),
            blob("v6", 6),
            3,
            Notes::none()
        )
        .await
        .unwrap(),
        ImportOutcome::Busy(_)
    ));
    // Pruning: dry runs report, real ones delete, the current version stays.
    let dry = s.prune_stack_versions(st.id, 1, true).await.unwrap();
    assert_eq!(dry.versions, 2);
    assert_eq!(s.list_versions(st.id).await.unwrap().len(), 3);
    s.prune_stack_versions(st.id, 1, false).await.unwrap();
    assert_eq!(s.list_versions(st.id).await.unwrap().len(), 1);
    s.replace_version_state(st.id, 5, blob("fixed", 9))
        .await
        .unwrap();
    assert_eq!(
        s.get_state(st.id, None).await.unwrap().unwrap().gz,
        b"fixed"
    );
    assert_eq!(
        s.get_stack(&key("a"))
            .await
            .unwrap()
            .unwrap()
            .resource_count,
        9
    );
    assert!(
        s.replace_version_state(st.id, 99, blob("x", 1))
            .await
            .is_err()
    );
}

pub async fn begin_update_and_windows(s: &dyn Store) {
    let st = stack(s, "a").await;
    let mut u = new_update("b1", st.id, false);
    u.coherence_window = Some("W".into());
    assert!(matches!(
        s.begin_update(u, start("b1", st.id, 1000, b"b1")).await.unwrap(),
        StartOutcome::Started(r) if r.version == 1
    ));
    // Busy: the second begin creates nothing.
    let out = s
        .begin_update(
            new_update("b2", st.id, false),
            start("b2", st.id, 1000, b"b2"),
        )
        .await
        .unwrap();
    assert!(matches!(out, StartOutcome::Busy(_)));
    assert!(
        s.get_update("b2").await.unwrap().is_none(),
        "a refused begin creates nothing"
    );
    assert_eq!(s.update_window("b1").await.unwrap().as_deref(), Some("W"));
    let mut p = new_update("p1", st.id, true);
    p.coherence_window = Some("W".into());
    s.begin_update(p, start("p1", st.id, 1000, b"p1"))
        .await
        .unwrap();
    let mut f = finish(
        "p1",
        st.id,
        FinishGuard::Lease(lease("p1", st.id, 1000, b"p1")),
        FinalState::Unchanged,
    );
    f.window_outputs = Some(WindowOutputs {
        outputs: Some(r#"{"x":1}"#.into()),
        secrets_providers: None,
    });
    s.finish_update(f).await.unwrap();
    let m = s.window_members(st.id, "W").await.unwrap();
    assert_eq!(
        m.iter().map(|m| m.update_id.as_str()).collect::<Vec<_>>(),
        vec!["b1", "p1"],
        "members come in the order they joined"
    );
    assert_eq!(m[0].status, UpdateStatus::Running);
    assert!(m[1].dry_run);
    assert_eq!(
        m[1].recorded.as_ref().and_then(|r| r.outputs.as_deref()),
        Some(r#"{"x":1}"#)
    );
    assert!(s.window_members(st.id, "other").await.unwrap().is_empty());
}

pub async fn tokens_and_keys(s: &dyn Store) {
    for (id, user) in [("t1", "alice"), ("t2", "alice"), ("t3", "bob")] {
        s.create_token(NewToken {
            kind: TokenKind::Personal,
            org: None,
            team: None,
            name: String::new(),
            admin: false,
            role_id: None,
            created_by: String::new(),
            upstream: None,
            id: id.into(),
            user: user.into(),
            description: "d".into(),
            hash: id.as_bytes().to_vec(),
            created_at: 10,
            expires_at: None,
            notes: Notes::none(),
        })
        .await
        .unwrap();
    }
    assert_eq!(
        s.find_token(b"t2".to_vec()).await.unwrap().unwrap().user,
        "alice"
    );
    assert!(s.find_token(b"zz".to_vec()).await.unwrap().is_none());
    s.touch_token("t1", 99).await.unwrap();
    assert_eq!(
        s.find_token(b"t1".to_vec())
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(99)
    );
    assert_eq!(s.list_tokens(Some("alice".into())).await.unwrap().len(), 2);
    assert_eq!(s.list_tokens(None).await.unwrap().len(), 3);
    let revoked = s
        .revoke_tokens(TokenSelector::User("alice".into()), 50, Notes::none())
        .await
        .unwrap();
    assert_eq!(revoked, vec!["t1".to_string(), "t2".to_string()]);
    assert!(
        s.revoke_tokens(TokenSelector::Id("t1".into()), 60, Notes::none())
            .await
            .unwrap()
            .is_empty()
    );

    let a = stack(s, "a").await;
    let b = stack(s, "b").await;
    s.meta_put("master_key_canary", b"old".to_vec())
        .await
        .unwrap();
    let keys = s.list_wrapped_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    s.replace_wrapped_keys(vec![(a.id, vec![7]), (b.id, vec![8])], b"new".to_vec())
        .await
        .unwrap();
    assert_eq!(s.get_stack_key(b.id).await.unwrap(), Some(vec![8]));
    assert_eq!(
        s.meta_get("master_key_canary").await.unwrap(),
        Some(b"new".to_vec())
    );
    assert!(
        s.replace_wrapped_keys(vec![(a.id, vec![1])], b"x".to_vec())
            .await
            .is_err(),
        "a rotation that misses a stack is refused whole"
    );
    assert_eq!(s.get_stack_key(a.id).await.unwrap(), Some(vec![7]));
    assert!(s.integrity_problems().await.unwrap().is_empty());
}

pub async fn one_running_update_under_concurrency(s: Arc<dyn Store>) {
    let st = stack(s.as_ref(), "a").await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("c{i}");
            s.create_update(new_update(&id, st.id, false))
                .await
                .unwrap();
            s.start_update(start(&id, st.id, 1000, id.as_bytes())).await
        }));
    }
    let mut started = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(StartOutcome::Started(r)) => {
                started += 1;
                assert_eq!(r.version, 1);
            }
            Ok(StartOutcome::Busy(_)) => {}
            other => panic!("concurrent start: {other:?}"),
        }
    }
    assert_eq!(
        started, 1,
        "exactly one of many concurrent starts takes the stack"
    );
}

pub async fn backup_round_trip(subject: &Subject) {
    let s = subject.store.as_ref();
    let st = stack(s, "a").await;
    started(s, "u1", st.id, 1000).await;
    s.save_checkpoint(
        lease("u1", st.id, 1000, b"u1"),
        CheckpointWrite {
            blob: blob("c", 1),
            sequence: 1,
            replaces: None,
        },
    )
    .await
    .unwrap();
    s.import_state(
        new_update("i", stack(s, "b").await.id, false),
        blob("b", 2),
        5,
        Notes::none(),
    )
    .await
    .unwrap();
    s.append_audit(vec![integration_event()]).await.unwrap();
    let mut u = new_update("w", st.id, true);
    u.coherence_window = Some("W".into());
    s.create_update(u).await.unwrap();
    s.create_token(NewToken {
        kind: TokenKind::Personal,
        org: None,
        team: None,
        name: String::new(),
        admin: false,
        role_id: None,
        created_by: String::new(),
        upstream: None,
        id: "t".into(),
        user: "u".into(),
        description: String::new(),
        hash: vec![1],
        created_at: 1,
        expires_at: Some(2),
        notes: Notes::none(),
    })
    .await
    .unwrap();
    let dump = |store: Arc<dyn Store>| async move {
        let out = Arc::new(std::sync::Mutex::new(Vec::<Record>::new()));
        let sink_out = out.clone();
        store
            .dump(Box::new(move |r| {
                sink_out.lock().unwrap().push(r);
                Ok(())
            }))
            .await
            .unwrap();
        out.lock().unwrap().clone()
    };
    let first = dump(subject.store.clone()).await;
    assert!(first.iter().any(|r| r.table == "update_window"));
    assert!(first.iter().any(|r| r.table == "audit"));
    let target = (subject.fresh)().await;
    let records: Vec<StoreResult<Record>> = first.iter().cloned().map(Ok).collect();
    target
        .load(Box::new(records.into_iter()), Merge::Refuse)
        .await
        .unwrap();
    let second = dump(target.clone()).await;
    assert_eq!(first, second, "a loaded dump dumps the same");
    // Loading again into a non-empty store is refused, unless merging (which skips names).
    let records: Vec<StoreResult<Record>> = first.iter().cloned().map(Ok).collect();
    assert!(
        target
            .load(Box::new(records.into_iter()), Merge::Refuse)
            .await
            .is_err()
    );
    let records: Vec<StoreResult<Record>> = first.iter().cloned().map(Ok).collect();
    let report = target
        .load(Box::new(records.into_iter()), Merge::SkipExisting)
        .await
        .unwrap();
    assert_eq!(report.skipped_stacks.len(), 2);
    // New stacks after a load get fresh ids.
    let c = stack(target.as_ref(), "c").await;
    assert!(c.id > st.id);
}

fn integration_event() -> integration::NewAuditEvent {
    integration::NewAuditEvent {
        org: Some("org".into()),
        at: 5,
        event: "stack-created".into(),
        description: "d".into(),
        user_login: "u".into(),
        user_name: "u".into(),
        source_ip: "::1".into(),
        token_id: None,
        token_name: None,
        req_org_admin: false,
        req_stack_admin: false,
        auth_failure: false,
    }
}
