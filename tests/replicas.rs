//! Stateless replicas: two servers on one PostgreSQL database serve the requests of the same
//! updates in any order, alternating between them, and every answer and the final state are
//! those of one server. Each replica's in-memory view of an update is only a cache, checked
//! against the database and rebuilt when another replica wrote since.
//!
//! Needs PostgreSQL (started by the test); skipped, saying so, without it.

mod common;

use common::*;
use pbackend::engine::crypto::sha256_hex;
use pbackend::testkit::journal_model::{Step, base_deployment, simulate};
use serde_json::{Value, json};

async fn pair() -> Option<(TestServer, TestServer)> {
    let pg = common::pg::server()?;
    let _ = pg;
    // SAFETY of the environment: set before any server reads it, in this test process only.
    unsafe {
        std::env::set_var("PBACKEND_TEST_DB", "postgres");
    }
    let a = TestServer::start().await;
    let b = a.replica().await;
    Some((a, b))
}

fn resources(v: &Value) -> Vec<Value> {
    v["deployment"]["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journaled_update_served_by_alternating_replicas() {
    let Some((a, b)) = pair().await else { return };
    let stack = stack_path("proj", "dev");
    a.api().create_stack("proj", "dev").await.ok();
    a.api()
        .post_gz(&format!("{stack}/import"), base_deployment(12))
        .await
        .ok();
    let steps = Step::from_bytes(&[
        0, 0, 3, 1, 6, 2, 8, 3, 9, 4, 11, 5, 12, 6, 14, 2, 0, 0, 3, 7, 10, 1, 0, 0, 12, 1, 6, 3,
    ]);
    let (entries, expected, pending) = simulate(12, &steps);
    assert!(pending.is_empty());
    let r = a
        .api()
        .post(
            &format!("{stack}/update"),
            json!({"options": {"dryRun": false}}),
        )
        .await;
    let id = r.json()["updateID"].as_str().unwrap().to_owned();
    let started = b
        .api()
        .post(
            &format!("{stack}/update/{id}"),
            json!({"journalVersion": 2}),
        )
        .await
        .json();
    assert_eq!(started["journalVersion"], 2);
    let lease = started["token"].as_str().unwrap().to_owned();
    let servers = [&a, &b];
    for (i, chunk) in entries.chunks(3).enumerate() {
        // Batches alternate, and every third one is retried on the other replica.
        let s = servers[i % 2];
        s.api()
            .lease(&lease)
            .patch_gz(
                &format!("{stack}/update/{id}/journalentries"),
                json!({"entries": chunk}),
            )
            .await
            .ok();
        if i % 3 == 0 {
            servers[(i + 1) % 2]
                .api()
                .lease(&lease)
                .patch_gz(
                    &format!("{stack}/update/{id}/journalentries"),
                    json!({"entries": chunk}),
                )
                .await
                .ok();
        }
        // Either replica shows the state so far.
        let live = servers[(i + 1) % 2]
            .api()
            .get(&format!("{stack}/export"))
            .await
            .json();
        assert!(!resources(&live).is_empty());
    }
    let la = resources(&a.api().get(&format!("{stack}/export")).await.json());
    let lb = resources(&b.api().get(&format!("{stack}/export")).await.json());
    assert_eq!(la, expected, "replica a's live state");
    assert_eq!(lb, expected, "replica b's live state");
    a.api()
        .lease(&lease)
        .post(
            &format!("{stack}/update/{id}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    let done = resources(&b.api().get(&format!("{stack}/export")).await.json());
    assert_eq!(done, expected, "the final state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_update_served_by_alternating_replicas() {
    let Some((a, b)) = pair().await else { return };
    let stack = stack_path("proj", "dev");
    a.api().create_stack("proj", "dev").await.ok();
    let (id, lease, _) = a.api().begin(&stack, "update", false).await;
    let text_of = |n: usize| {
        let mut d = deployment(n, "d");
        d["deployment"]["resources"][0]["outputs"]["n"] = json!(n);
        serde_json::to_string(&d).unwrap()
    };
    let mut text = text_of(1);
    let body = format!(r#"{{"version":3,"untypedDeployment":{text},"sequenceNumber":1}}"#);
    a.api()
        .lease(&lease)
        .send(
            "PATCH",
            &format!("{stack}/update/{id}/checkpointverbatim"),
            Some(body.into_bytes()),
            false,
            &[],
        )
        .await
        .ok();
    let servers = [&a, &b];
    for i in 2..14usize {
        let next = text_of(i);
        let p = text
            .bytes()
            .zip(next.bytes())
            .take_while(|(x, y)| x == y)
            .count();
        let delta = json!({"version": 3, "checkpointHash": sha256_hex(next.as_bytes()),
            "sequenceNumber": i, "deploymentDelta": [{"Span": {"start": {"offset": p},
            "end": {"offset": text.len()}}, "NewText": &next[p..]}]});
        let s = servers[i % 2];
        let r = s
            .api()
            .lease(&lease)
            .patch(
                &format!("{stack}/update/{id}/checkpointdelta"),
                delta.clone(),
            )
            .await;
        r.ok();
        // A retry that lands on the other replica is recognised as a repeat.
        if i % 4 == 0 {
            servers[(i + 1) % 2]
                .api()
                .lease(&lease)
                .patch(&format!("{stack}/update/{id}/checkpointdelta"), delta)
                .await
                .ok();
        }
        text = next;
    }
    let want: Value = serde_json::from_str(&text).unwrap();
    for s in servers {
        let live = s.api().get(&format!("{stack}/export")).await.json();
        assert_eq!(live, want);
    }
    b.api()
        .lease(&lease)
        .post(
            &format!("{stack}/update/{id}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    assert_eq!(a.api().get(&format!("{stack}/export")).await.json(), want);
}
