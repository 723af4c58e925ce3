//! Durability across restarts, and version retention.

mod common;

use common::*;
use pbackend::engine::EngineConfig;
use serde_json::json;

#[tokio::test]
async fn restart_mid_update_keeps_update_lease_and_checkpoints() {
    let mut srv = TestServer::start().await;
    let stack = stack_path("proj", "dev");
    let (id, tok) = {
        let api = srv.api();
        api.create_stack("proj", "dev").await.ok();
        let (id, tok, _) = api.begin(&stack, "update", false).await;
        for (seq, n) in [(1, 1usize), (2, 2)] {
            api.lease(&tok)
                .patch_gz(
                    &format!("{stack}/update/{id}/checkpointverbatim"),
                    json!({"version": 3, "untypedDeployment": deployment(n, "r"), "sequenceNumber": seq}),
                )
                .await
                .ok();
        }
        (id, tok)
    };

    srv.restart().await;
    let api = srv.api();

    // The update is still running and still holds the stack.
    let s = api.get(&stack).await.json();
    assert_eq!(s["activeUpdate"], json!(id));
    assert_eq!(s["currentOperation"]["kind"], "update");
    let r = api.post(&format!("{stack}/update"), json!({})).await.json();
    let other = r["updateID"].as_str().unwrap().to_owned();
    api.post(&format!("{stack}/update/{other}"), json!({}))
        .await
        .error(409);
    let st = api.get(&format!("{stack}/update/{id}")).await.json();
    assert_eq!(st["status"], "running");

    // Its lease token still works; the last acknowledged checkpoint is what it completes with.
    let lease = api.lease(&tok);
    lease
        .post(
            &format!("{stack}/update/{id}/renew_lease"),
            json!({"duration": 300}),
        )
        .await
        .ok();
    lease
        .post(
            &format!("{stack}/update/{id}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    assert_eq!(
        api.get(&format!("{stack}/export")).await.json(),
        deployment(2, "r")
    );
}

#[tokio::test]
async fn only_the_last_n_versions_are_kept() {
    let srv = TestServer::start_with(Options {
        clock: None,
        config: EngineConfig {
            max_state_versions: 3,
            ..EngineConfig::default()
        },
        ..Options::default()
    })
    .await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    api.create_stack("proj", "dev").await.ok();
    for i in 0..8usize {
        let (id, tok, v) = api.begin(&stack, "update", false).await;
        assert_eq!(v, i as i64 + 1);
        let lease = api.lease(&tok);
        lease
            .patch_gz(
                &format!("{stack}/update/{id}/checkpoint"),
                json!({"isInvalid": false, "version": 3, "deployment": deployment(i, "v")["deployment"]}),
            )
            .await
            .ok();
        lease
            .post(
                &format!("{stack}/update/{id}/complete"),
                json!({"status": "succeeded"}),
            )
            .await
            .ok();
    }
    for v in 1..=5 {
        let msg = api.get(&format!("{stack}/export/{v}")).await.error(404);
        assert!(msg.contains("no longer kept"), "{msg}");
    }
    for v in 6..=8usize {
        let e = api.get(&format!("{stack}/export/{v}")).await.json();
        assert_eq!(e, deployment(v - 1, "v"));
    }
    assert_eq!(
        api.get(&format!("{stack}/export")).await.json(),
        deployment(7, "v")
    );
    // History keeps every update even when its state was pruned.
    let h = api.get(&format!("{stack}/updates")).await.json();
    assert_eq!(h["updates"].as_array().unwrap().len(), 8);
    let page = api
        .get(&format!("{stack}/updates?pageSize=3&page=3"))
        .await
        .json();
    let versions: Vec<i64> = page["updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![2, 1]);
    // Invalid version numbers.
    api.get(&format!("{stack}/export/0")).await.error(400);
    api.get(&format!("{stack}/export/abc")).await.error(400);
}
