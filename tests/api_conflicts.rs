//! Leases and conflicts: one running update per stack, tokens bound to their update, expiry.

mod common;

use common::*;
use pbackend::engine::EngineConfig;
use pbackend::engine::clock::ManualClock;
use serde_json::json;

fn ckpt(n: usize) -> serde_json::Value {
    json!({"isInvalid": false, "version": 3, "deployment": deployment(n, "c")["deployment"]})
}

#[tokio::test]
async fn second_start_on_busy_stack_gets_the_cli_conflict() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    api.create_stack("proj", "dev").await.ok();
    let (_id, _tok, _) = api.begin(&stack, "update", false).await;

    let r = api
        .post(
            &format!("{stack}/update"),
            json!({"options": {"dryRun": false}}),
        )
        .await;
    let second = r.json()["updateID"].as_str().unwrap().to_owned();
    let r = api
        .post(
            &format!("{stack}/update/{second}"),
            json!({"journalVersion": 1}),
        )
        .await;
    assert_eq!(
        r.error(409),
        "Conflict: Another update is currently in progress."
    );
    // Imports and non-forced deletes are refused too.
    let r = api
        .post_gz(&format!("{stack}/import"), deployment(1, "x"))
        .await;
    assert_eq!(
        r.error(409),
        "Conflict: Another update is currently in progress."
    );
    // Starting the same update twice is a conflict, not a second lease.
    let (id2, _, _) = {
        let s2 = stack_path("proj", "other");
        api.create_stack("proj", "other").await.ok();
        api.begin(&s2, "update", false).await
    };
    let r = api
        .post(
            &format!("{}/update/{id2}", stack_path("proj", "other")),
            json!({}),
        )
        .await;
    r.error(409);
}

#[tokio::test]
async fn wrong_foreign_or_missing_update_tokens_are_refused() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let a = stack_path("proj", "a");
    let b = stack_path("proj", "b");
    api.create_stack("proj", "a").await.ok();
    api.create_stack("proj", "b").await.ok();
    let (ida, toka, _) = api.begin(&a, "update", false).await;
    let (idb, tokb, _) = api.begin(&b, "update", false).await;

    // Wrong token.
    api.lease("nonsense")
        .patch_gz(&format!("{a}/update/{ida}/checkpoint"), ckpt(1))
        .await
        .error(403);
    // The token of another update (of another stack) is refused here.
    api.lease(&tokb)
        .patch_gz(&format!("{a}/update/{ida}/checkpoint"), ckpt(1))
        .await
        .error(403);
    // A valid token on the wrong stack's path: that update is not on this stack.
    api.lease(&toka)
        .patch_gz(&format!("{b}/update/{ida}/checkpoint"), ckpt(1))
        .await
        .error(404);
    // An API token is not an update token.
    api.patch_gz(&format!("{a}/update/{ida}/checkpoint"), ckpt(1))
        .await
        .error(401);
    // Nothing was stored by any of those.
    api.lease(&toka)
        .post(
            &format!("{a}/update/{ida}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    assert_eq!(
        api.get(&format!("{a}/export")).await.json()["deployment"].get("resources"),
        None
    );
    let _ = (idb, tokb);
}

#[tokio::test]
async fn checkpoint_after_complete_or_cancel_is_refused() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    api.create_stack("proj", "dev").await.ok();

    let (id, tok, _) = api.begin(&stack, "update", false).await;
    let lease = api.lease(&tok);
    lease
        .patch_gz(&format!("{stack}/update/{id}/checkpoint"), ckpt(1))
        .await
        .ok();
    lease
        .post(
            &format!("{stack}/update/{id}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    lease
        .patch_gz(&format!("{stack}/update/{id}/checkpoint"), ckpt(2))
        .await
        .error(409);

    // Cancel: the lease dies, the state it reached is kept, the stack is free.
    let (id, tok, v) = api.begin(&stack, "update", false).await;
    assert_eq!(v, 2);
    let lease = api.lease(&tok);
    lease
        .patch_gz(&format!("{stack}/update/{id}/checkpoint"), ckpt(3))
        .await
        .ok();
    api.post(&format!("{stack}/update/{id}/cancel"), json!({}))
        .await
        .ok();
    lease
        .patch_gz(&format!("{stack}/update/{id}/checkpoint"), ckpt(4))
        .await
        .error(409);
    lease
        .post(
            &format!("{stack}/update/{id}/renew_lease"),
            json!({"token": "", "duration": 300}),
        )
        .await
        .error(409);
    // The CLI retries cancel: a repeat succeeds without changing anything.
    api.post(&format!("{stack}/update/{id}/cancel"), json!({}))
        .await
        .ok();
    let e = api.get(&format!("{stack}/export")).await.json();
    assert_eq!(e["deployment"]["resources"].as_array().unwrap().len(), 4);
    let h = api.get(&format!("{stack}/updates")).await.json();
    assert_eq!(h["updates"][0]["result"], "failed");
    assert_eq!(h["updates"][0]["version"], 2);
    // And a new update can start.
    let (_, _, v) = api.begin(&stack, "update", false).await;
    assert_eq!(v, 3);
}

#[tokio::test]
async fn an_expired_lease_frees_the_stack_and_its_token_dies() {
    let clock = ManualClock::new(1_800_000_000);
    let srv = TestServer::start_with(Options {
        clock: Some(clock.clone()),
        config: EngineConfig {
            lease_duration: 60,
            ..EngineConfig::default()
        },
        ..Options::default()
    })
    .await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    api.create_stack("proj", "dev").await.ok();
    let (id, tok, _) = api.begin(&stack, "update", false).await;
    let lease = api.lease(&tok);
    lease
        .patch_gz(&format!("{stack}/update/{id}/checkpoint"), ckpt(2))
        .await
        .ok();

    // Renewal extends the lease (the same token keeps working).
    clock.advance(50);
    let r = lease
        .post(
            &format!("{stack}/update/{id}/renew_lease"),
            json!({"token": "", "duration": 300}),
        )
        .await
        .json();
    assert_eq!(r["token"], json!(tok));
    clock.advance(50);
    lease
        .patch_gz(&format!("{stack}/update/{id}/checkpoint"), ckpt(3))
        .await
        .ok();

    // Past expiry: the old token gets 403 and a new update takes the stack.
    clock.advance(61);
    lease
        .patch_gz(&format!("{stack}/update/{id}/checkpoint"), ckpt(4))
        .await
        .error(403);
    lease
        .post(
            &format!("{stack}/update/{id}/renew_lease"),
            json!({"token": "", "duration": 300}),
        )
        .await
        .error(403);
    let (_id2, _tok2, v2) = api.begin(&stack, "update", false).await;
    assert_eq!(v2, 2);
    // The abandoned update is history, as failed, and its last checkpoint is the state.
    let h = api.get(&format!("{stack}/updates")).await.json();
    assert_eq!(h["updates"][1]["result"], "failed");
    let e = api.get(&format!("{stack}/export")).await.json();
    assert_eq!(e["deployment"]["resources"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn verbatim_checkpoints_honour_sequence_numbers() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    api.create_stack("proj", "dev").await.ok();
    let (id, tok, _) = api.begin(&stack, "update", false).await;
    let lease = api.lease(&tok);
    let verbatim = |n: usize, seq: i64| json!({"version": 3, "untypedDeployment": deployment(n, "s"), "sequenceNumber": seq});
    let path = format!("{stack}/update/{id}/checkpointverbatim");
    lease.patch_gz(&path, verbatim(1, 1)).await.ok();
    lease.patch_gz(&path, verbatim(3, 3)).await.ok();
    // A retry of the same sequence overwrites (the CLI's fallback after a failed delta).
    lease.patch_gz(&path, verbatim(4, 3)).await.ok();
    // An older sequence is stale.
    lease.patch_gz(&path, verbatim(2, 2)).await.error(409);
    lease
        .post(
            &format!("{stack}/update/{id}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    assert_eq!(
        api.get(&format!("{stack}/export")).await.json(),
        deployment(4, "s")
    );
}
