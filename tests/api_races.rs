//! Check-then-write races: each pair of racing requests ends in one consistent state,
//! whichever wins, because each check runs in the same store transaction as its write.

mod common;

use common::*;
use serde_json::json;

const ROUNDS: usize = 25;

async fn create_update(api: &Api, stack: &str) -> String {
    let r = api
        .post(
            &format!("{stack}/update"),
            json!({"options": {"dryRun": false}}),
        )
        .await;
    r.ok();
    r.json()["updateID"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_delete_racing_an_update_start_leaves_one_outcome() {
    let srv = TestServer::start().await;
    let api = srv.api();
    for i in 0..ROUNDS {
        let name = format!("d{i}");
        let stack = stack_path("proj", &name);
        api.create_stack("proj", &name).await.ok();
        let id = create_update(&api, &stack).await;
        let start_path = format!("{stack}/update/{id}");
        let start = api.post(&start_path, json!({"journalVersion": 1}));
        let delete = api.delete(&stack);
        let (start, delete) = tokio::join!(start, delete);
        let exists = api.get(&stack).await.status == 200;
        match (start.status, delete.status) {
            // The delete came first: the start found no stack (or no update).
            (404, 204) => assert!(!exists),
            // The start came first: the stack is held and the delete refused.
            (200, 409) => {
                assert!(exists);
                let s = api.get(&stack).await.json();
                assert_eq!(s["activeUpdate"], json!(id));
            }
            other => panic!("round {i}: inconsistent outcome {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_rename_racing_an_update_start_leaves_one_outcome() {
    let srv = TestServer::start().await;
    let api = srv.api();
    for i in 0..ROUNDS {
        let name = format!("r{i}");
        let stack = stack_path("proj", &name);
        let renamed = stack_path("proj", &format!("{name}-new"));
        api.create_stack("proj", &name).await.ok();
        let id = create_update(&api, &stack).await;
        let start_path = format!("{stack}/update/{id}");
        let rename_path = format!("{stack}/rename");
        let start = api.post(&start_path, json!({"journalVersion": 1}));
        let rename = api.post(&rename_path, json!({"newName": format!("{name}-new")}));
        let (start, rename) = tokio::join!(start, rename);
        match (start.status, rename.status) {
            // Renamed first: the update (created under the old name) may still start, since
            // an update belongs to its stack whatever its name; then it runs under the new name.
            (200, 204) | (404, 204) => {
                assert_eq!(api.get(&stack).await.status, 404);
                assert_eq!(api.get(&renamed).await.status, 200);
            }
            // Started first: the rename is refused and the name stays.
            (200, 409) => {
                assert_eq!(api.get(&stack).await.status, 200);
                assert_eq!(api.get(&renamed).await.status, 404);
            }
            other => panic!("round {i}: inconsistent outcome {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_cancel_racing_a_complete_leaves_one_outcome() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    api.create_stack("proj", "dev").await.ok();
    for i in 0..ROUNDS {
        let (id, lease, version) = api.begin(&stack, "update", false).await;
        let ckpt =
            json!({"version": 3, "deployment": deployment(1, &format!("v{i}"))["deployment"]});
        api.lease(&lease)
            .patch_gz(&format!("{stack}/update/{id}/checkpoint"), ckpt)
            .await
            .ok();
        let lease_api = api.lease(&lease);
        let (complete_path, cancel_path) = (
            format!("{stack}/update/{id}/complete"),
            format!("{stack}/update/{id}/cancel"),
        );
        let complete = lease_api.post(&complete_path, json!({"status": "succeeded"}));
        let cancel = api.post(&cancel_path, json!({}));
        let (complete, cancel) = tokio::join!(complete, cancel);
        let history = api.get(&format!("{stack}/updates/{version}")).await.json();
        let result = history["info"]["result"].as_str().unwrap().to_owned();
        match (complete.status, cancel.status) {
            (204, 409) => assert_eq!(result, "succeeded", "round {i}"),
            (409, 204) => assert_eq!(result, "failed", "round {i}"),
            other => panic!("round {i}: inconsistent outcome {other:?}"),
        }
        // Either way the stack is free and holds the state the update reached.
        let export = api.get(&format!("{stack}/export")).await.json();
        assert_eq!(
            export["deployment"]["resources"][0]["outputs"]["label"],
            json!(format!("v{i}"))
        );
    }
}

#[tokio::test]
async fn two_imports_at_once_both_land_in_order() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    api.create_stack("proj", "dev").await.ok();
    for i in 0..ROUNDS {
        let import = format!("{stack}/import");
        let a = api.post_gz(&import, deployment(1, &format!("a{i}")));
        let b = api.post_gz(&import, deployment(2, &format!("b{i}")));
        let (a, b) = tokio::join!(a, b);
        a.ok();
        b.ok();
        let history = api
            .get(&format!("{stack}/updates?pageSize=2&page=1"))
            .await
            .json();
        let updates = history["updates"].as_array().unwrap();
        assert_eq!(updates.len(), 2);
        let newest = updates[0]["version"].as_i64().unwrap();
        assert_eq!(updates[1]["version"].as_i64().unwrap(), newest - 1);
        // The state is whole: one of the two deployments, exactly.
        let export = api.get(&format!("{stack}/export")).await.json();
        let label = export["deployment"]["resources"][0]["outputs"]["label"]
            .as_str()
            .unwrap()
            .to_owned();
        let n = export["deployment"]["resources"].as_array().unwrap().len();
        assert!(
            (label == format!("a{i}") && n == 2) || (label == format!("b{i}") && n == 3),
            "round {i}: {label} with {n} resources"
        );
        // And it is the one that landed last.
        let v = api.get(&format!("{stack}/export/{newest}")).await.json();
        assert_eq!(v, export);
    }
}
