//! The whole state protocol the way the CLI drives it, over real HTTP.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn full_cli_shaped_lifecycle() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");

    api.create_stack("proj", "dev").await.ok();
    let s = api.get(&stack).await;
    s.ok();
    assert_eq!(s.json()["stackName"], "dev");
    assert_eq!(s.json()["activeUpdate"], "");

    // A never-updated stack exports a valid, empty deployment.
    let e = api.get(&format!("{stack}/export")).await.json();
    assert_eq!(e["version"], 3);
    assert_eq!(e["deployment"]["manifest"]["magic"], "");

    let (id, token, version) = api.begin(&stack, "update", false).await;
    assert_eq!(version, 1);
    let lease = api.lease(&token);

    // While the update runs, the stack shows it.
    let s = api.get(&stack).await.json();
    assert_eq!(s["activeUpdate"], json!(id));
    assert_eq!(s["currentOperation"]["kind"], "update");

    // Three checkpoints: full, then verbatim twice (sequence numbers 1 and 2).
    for (i, n) in [1usize, 2, 3].iter().enumerate() {
        let d = deployment(*n, "v1");
        let r = if i == 0 {
            lease
                .patch_gz(
                    &format!("{stack}/update/{id}/checkpoint"),
                    json!({"isInvalid": false, "version": 3, "deployment": d["deployment"]}),
                )
                .await
        } else {
            lease
                .patch_gz(
                    &format!("{stack}/update/{id}/checkpointverbatim"),
                    json!({"version": 3, "untypedDeployment": d, "sequenceNumber": i}),
                )
                .await
        };
        assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    }
    let last = deployment(3, "v1");

    let events = json!({"events": [
        {"sequence": 0, "timestamp": 1, "stdoutEvent": {"message": "hello", "color": "raw"}},
        {"sequence": 1, "timestamp": 2, "summaryEvent": {"maybeCorrupt": false, "durationSeconds": 1,
            "resourceChanges": {"create": 4}, "PolicyPacks": {}, "isPreview": false, "result": "succeeded"}}
    ]});
    lease
        .post_gz(&format!("{stack}/update/{id}/events/batch"), events.clone())
        .await
        .ok();
    // A retried batch is harmless.
    lease
        .post_gz(&format!("{stack}/update/{id}/events/batch"), events)
        .await
        .ok();
    // A later batch without a summary (stored without being parsed whole) ...
    let more = json!({"events": [
        {"sequence": 2, "timestamp": 3, "stdoutEvent": {"message": "a", "color": "raw"}},
        {"sequence": 3, "timestamp": 4, "stdoutEvent": {"message": "b", "color": "raw"}}
    ]});
    lease
        .post_gz(&format!("{stack}/update/{id}/events/batch"), more)
        .await
        .ok();
    // ... a body that is not gzip at all is refused ...
    let r = lease
        .send(
            "POST",
            &format!("{stack}/update/{id}/events/batch"),
            Some(b"\x1f\x8b not really gzip".to_vec()),
            false,
            &[("Content-Encoding", "gzip")],
        )
        .await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    // ... and a cut-off batch is kept but cannot spoil the log when it is read.
    let r = lease
        .send(
            "POST",
            &format!("{stack}/update/{id}/events/batch"),
            Some(br#"{"events":[{"sequence":9,"timestamp":"#.to_vec()),
            true,
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let r = lease
        .post(
            &format!("{stack}/update/{id}/complete"),
            json!({"status": "succeeded"}),
        )
        .await;
    assert_eq!(r.status, 204);
    // A retried complete succeeds too.
    lease
        .post(
            &format!("{stack}/update/{id}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();

    // Export equals the last checkpoint, byte for byte in meaning.
    let exported = api.get(&format!("{stack}/export")).await;
    assert_eq!(exported.headers["content-encoding"], "gzip");
    assert_eq!(exported.json(), last);
    let v1 = api.get(&format!("{stack}/export/1")).await.json();
    assert_eq!(v1, last);

    // History shows it, with the summary's resource changes.
    let h = api
        .get(&format!("{stack}/updates?pageSize=10&page=1"))
        .await
        .json();
    let u = &h["updates"][0];
    assert_eq!(h["updates"].as_array().unwrap().len(), 1);
    assert_eq!(u["version"], 1);
    assert_eq!(u["result"], "succeeded");
    assert_eq!(u["kind"], "update");
    assert_eq!(u["message"], "test update");
    assert_eq!(u["resourceChanges"], json!({"create": 4}));
    assert_eq!(u["resourceCount"], 4);
    assert_eq!(u["config"]["proj:greeting"]["string"], "hi");
    let latest = api.get(&format!("{stack}/updates/latest")).await.json();
    assert_eq!(latest["info"]["version"], 1);
    assert_eq!(latest["updateID"], json!(id));

    // Events come back in order without the repeat.
    let ev = api.get(&format!("{stack}/update/{id}/events")).await.json();
    let seqs: Vec<i64> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![0, 1, 2, 3]);

    // Import a modified deployment; the CLI then polls the returned update.
    let modified = deployment(5, "imported");
    let r = api
        .post_gz(&format!("{stack}/import"), modified.clone())
        .await;
    r.ok();
    let import_id = r.json()["updateId"].as_str().unwrap().to_owned();
    let status = api.get(&format!("{stack}/update/{import_id}")).await.json();
    assert_eq!(status["status"], "succeeded");
    assert!(status.get("continuationToken").is_none());
    assert_eq!(api.get(&format!("{stack}/export")).await.json(), modified);
    let h = api.get(&format!("{stack}/updates")).await.json();
    assert_eq!(h["updates"][0]["kind"], "import");
    assert_eq!(h["updates"][0]["version"], 2);

    // Delete is refused while resources remain, with the exact text the CLI matches.
    let r = api.delete(&stack).await;
    assert_eq!(r.error(400), "Bad Request: Stack still contains resources.");
    assert_eq!(api.get(&format!("{stack}/export")).await.json(), modified);
    let r = api.delete(&format!("{stack}?force=true")).await;
    assert_eq!(r.status, 204);
    api.get(&stack).await.error(404);
}

#[tokio::test]
async fn preview_does_not_lock_or_change_state() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    api.create_stack("proj", "dev").await.ok();

    let (upd, upd_token, v) = api.begin(&stack, "update", false).await;
    assert_eq!(v, 1);
    // A preview runs while the update holds the stack.
    let (pid, ptoken, pv) = api.begin(&stack, "preview", true).await;
    assert_eq!(pv, 0);
    api.lease(&ptoken)
        .post(
            &format!("{stack}/update/{pid}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    api.lease(&upd_token)
        .patch_gz(
            &format!("{stack}/update/{upd}/checkpoint"),
            json!({"isInvalid": false, "version": 3, "deployment": deployment(1, "a")["deployment"]}),
        )
        .await
        .ok();
    api.lease(&upd_token)
        .post(
            &format!("{stack}/update/{upd}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    let h = api.get(&format!("{stack}/updates")).await.json();
    assert_eq!(h["updates"].as_array().unwrap().len(), 1, "{h}");
    assert_eq!(api.get(&stack).await.json()["version"], 1);
}

#[tokio::test]
async fn stack_listing_tags_rename_and_paging() {
    let srv = TestServer::start().await;
    let api = srv.api();
    for i in 0..105 {
        api.create_stack(if i % 2 == 0 { "even" } else { "odd" }, &format!("s{i}"))
            .await
            .ok();
    }
    // Page through all stacks.
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!("/api/user/stacks?continuationToken={t}"),
            None => "/api/user/stacks".into(),
        };
        let v = api.get(&path).await.json();
        for s in v["stacks"].as_array().unwrap() {
            names.push(s["stackName"].as_str().unwrap().to_owned());
            assert!(!s["projectName"].as_str().unwrap().is_empty());
        }
        match v.get("continuationToken").and_then(Value::as_str) {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(names.len(), 105);

    let v = api.get("/api/user/stacks?project=odd").await.json();
    assert_eq!(v["stacks"].as_array().unwrap().len(), 52);

    // Tags: replace, filter by name and value.
    let s0 = stack_path("even", "s0");
    api.patch(
        &format!("{s0}/tags"),
        json!({"team": "blue", "pulumi:project": "even"}),
    )
    .await
    .ok();
    assert_eq!(api.get(&s0).await.json()["tags"]["team"], "blue");
    let v = api
        .get("/api/user/stacks?tagName=team&tagValue=blue")
        .await
        .json();
    assert_eq!(v["stacks"].as_array().unwrap().len(), 1);
    let v = api
        .get("/api/user/stacks?tagName=team&tagValue=red")
        .await
        .json();
    assert_eq!(v["stacks"].as_array().unwrap().len(), 0);
    api.patch(&format!("{s0}/tags"), json!({"bad tag": "x"}))
        .await
        .error(400);

    // Project existence.
    let r = api
        .send("HEAD", &format!("/api/stacks/{ORG}/even"), None, false, &[])
        .await;
    assert_eq!(r.status, 200);
    let r = api
        .send(
            "HEAD",
            &format!("/api/stacks/{ORG}/nothing"),
            None,
            false,
            &[],
        )
        .await;
    assert_eq!(r.status, 404);

    // Duplicate create.
    let msg = api.create_stack("even", "s0").await.error(409);
    assert!(msg.contains("already exists"), "{msg}");

    // Rename across projects keeps history.
    let (id, tok, _) = api.begin(&s0, "update", false).await;
    api.lease(&tok)
        .post(
            &format!("{s0}/update/{id}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    api.post(
        &format!("{s0}/rename"),
        json!({"newName": "moved", "newProject": "other"}),
    )
    .await
    .ok();
    api.get(&s0).await.error(404);
    let moved = stack_path("other", "moved");
    let h = api.get(&format!("{moved}/updates")).await.json();
    assert_eq!(h["updates"].as_array().unwrap().len(), 1);
    // Renaming onto an existing stack is refused.
    let msg = api
        .post(
            &format!("{moved}/rename"),
            json!({"newName": "s2", "newProject": "even"}),
        )
        .await
        .error(409);
    assert!(msg.contains("already exists"));
    // The old name is free again.
    api.create_stack("even", "s0").await.ok();
}
