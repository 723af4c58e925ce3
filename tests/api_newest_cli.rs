//! What CLI v3.277 added, over real HTTP: journal version negotiation, `begin-update`,
//! `stack-outputs`, coherence windows, API version negotiation.

mod common;

use common::*;
use serde_json::{Value, json};

fn program(dry_run: bool, window: Option<&str>) -> Value {
    let mut p = json!({
        "name": "proj", "runtime": "yaml", "main": "", "description": "",
        "options": {"dryRun": dry_run, "parallel": 8, "color": "raw"},
        "config": {}, "metadata": {"message": "m", "environment": {"exec.kind": "cli"}}
    });
    if let Some(w) = window {
        p["coherenceWindow"] = json!(w);
    }
    p
}

async fn begin(api: &Api, stack: &str, kind: &str, dry_run: bool, window: Option<&str>) -> Resp {
    api.post(
        &format!("{stack}/begin-update"),
        json!({"updateKind": kind, "program": program(dry_run, window),
               "tags": {"pulumi:project": "proj", "team": "a"}, "journalVersion": 2}),
    )
    .await
}

async fn update_rows(srv: &TestServer) -> usize {
    db_snapshot(&srv.db_path())
        .await
        .lines()
        .filter(|l| l.contains(r#""table":"update""#))
        .count()
}

#[tokio::test]
async fn journal_versions_are_negotiated_down_to_what_both_speak() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    api.create_stack("proj", "dev").await.ok();
    for (asked, answer) in [
        (json!(1), json!(1)),
        (json!(2), json!(2)),
        (json!(3), json!(2)),
        (Value::Null, Value::Null),
        (json!(0), Value::Null),
    ] {
        let r = api
            .post(
                &format!("{stack}/preview"),
                json!({"options": {"dryRun": true}}),
            )
            .await;
        let id = r.json()["updateID"].as_str().unwrap().to_owned();
        let mut body = json!({});
        if !asked.is_null() {
            body["journalVersion"] = asked.clone();
        }
        let v = api.post(&format!("{stack}/update/{id}"), body).await.json();
        assert_eq!(
            v.get("journalVersion").cloned().unwrap_or(Value::Null),
            answer,
            "asked {asked}"
        );
    }
}

#[tokio::test]
async fn begin_update_creates_starts_and_returns_base_and_tags_in_one_call() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    api.create_stack("proj", "dev").await.ok();
    api.post_gz(&format!("{stack}/import"), deployment(3, "base"))
        .await
        .ok();
    let export = api.get(&format!("{stack}/export")).await.body;

    let r = begin(&api, &stack, "update", false, None).await;
    r.ok();
    let v = r.json();
    assert_eq!(v["version"], 2);
    assert_eq!(v["journalVersion"], 2);
    assert_eq!(v["stack"]["tags"]["team"], "a");
    assert_eq!(v["aiSettings"]["copilotIsEnabled"], false);
    assert!(v["token"].as_str().is_some_and(|t| !t.is_empty()));
    // The base is exactly what export sends.
    let base: Value = serde_json::from_slice(&export).unwrap();
    assert_eq!(v["deployment"], base);
    let id = v["updateID"].as_str().unwrap().to_owned();

    // The stack is held: a second begin is the CLI's conflict, and creates nothing.
    let before = update_rows(&srv).await;
    let r = begin(&api, &stack, "update", false, None).await;
    assert_eq!(
        r.error(409),
        "Conflict: Another update is currently in progress."
    );
    assert_eq!(update_rows(&srv).await, before);
    // A preview does not wait.
    begin(&api, &stack, "preview", true, None).await.ok();

    // The lease works like a started update's.
    let lease = api.lease(v["token"].as_str().unwrap());
    let ckpt = json!({"version": 3, "deployment": deployment(4, "new")["deployment"]});
    lease
        .patch_gz(&format!("{stack}/update/{id}/checkpoint"), ckpt)
        .await
        .ok();
    lease
        .post(
            &format!("{stack}/update/{id}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    let h = api.get(&format!("{stack}/updates/2")).await.json();
    assert_eq!(h["info"]["result"], "succeeded");
    assert_eq!(h["info"]["kind"], "update");
    // An import through begin-update is an update; a stack with no state gets the empty one.
    api.create_stack("proj", "empty").await.ok();
    let r = begin(
        &api,
        &stack_path("proj", "empty"),
        "resource-import",
        false,
        None,
    )
    .await;
    r.ok();
    assert_eq!(r.json()["deployment"]["version"], 3);
    begin(&api, &stack_path("proj", "nope"), "update", false, None)
        .await
        .error(404);
    begin(&api, &stack, "bogus", false, None).await.error(400);
}

#[tokio::test]
async fn stack_outputs_are_the_root_stack_outputs_verbatim() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    api.create_stack("proj", "dev").await.ok();
    let v = api.get(&format!("{stack}/outputs")).await.json();
    assert_eq!(v, json!({}), "no state, no outputs");
    api.post_gz(&format!("{stack}/import"), deployment(2, "lbl"))
        .await
        .ok();
    let r = api.get(&format!("{stack}/outputs")).await;
    let v = r.json();
    assert_eq!(v["outputs"], json!({"label": "lbl"}));
    assert_eq!(v["secretsProviders"]["type"], "service");
    assert!(v.get("state").is_none() && v.get("unknown").is_none());
}

/// Starts an update of `stack` in `window` (through begin-update); returns (id, lease).
async fn in_window(api: &Api, stack: &str, dry_run: bool, window: &str) -> (String, String) {
    let kind = if dry_run { "preview" } else { "update" };
    let r = begin(api, stack, kind, dry_run, Some(window)).await;
    r.ok();
    let v = r.json();
    (
        v["updateID"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn coherence_windows_make_readers_wait_and_see_previewed_outputs() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let (a, b, c) = (
        stack_path("proj", "a"),
        stack_path("proj", "b"),
        stack_path("proj", "c"),
    );
    for (s, path) in [("a", &a), ("b", &b), ("c", &c)] {
        api.create_stack("proj", s).await.ok();
        api.post_gz(
            &format!("{path}/import"),
            deployment(1, &format!("{s}-old")),
        )
        .await
        .ok();
    }
    // b's update reads a and c inside window W.
    let (reader, _) = in_window(&api, &b, false, "W").await;
    let outputs = |stack: &str| format!("{stack}/outputs?readingUpdateID={reader}");

    // a is being updated in W: the reader waits ...
    let (ua, la) = in_window(&api, &a, false, "W").await;
    let v = api.get(&outputs(&a)).await.json();
    assert_eq!(v, json!({"state": "pending"}));
    // ... while a reader outside the window sees a as it is.
    let v = api.get(&format!("{a}/outputs")).await.json();
    assert_eq!(v["outputs"]["label"], "a-old");
    // Once a's update completes, the reader sees what it wrote.
    let lease = api.lease(&la);
    let ckpt = json!({"version": 3, "deployment": deployment(1, "a-new")["deployment"]});
    lease
        .patch_gz(&format!("{a}/update/{ua}/checkpoint"), ckpt)
        .await
        .ok();
    lease
        .post(
            &format!("{a}/update/{ua}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    let v = api.get(&outputs(&a)).await.json();
    assert_eq!(v["outputs"]["label"], "a-new");
    assert!(v.get("state").is_none());

    // c was previewed in W: the reader sees the outputs that preview recorded.
    let (pc, lc) = in_window(&api, &c, true, "W").await;
    api.lease(&lc)
        .post(
            &format!("{c}/update/{pc}/complete"),
            json!({"status": "succeeded", "outputs": {"label": "c-projected"},
                   "secretsProviders": {"type": "service", "state": {}}}),
        )
        .await
        .ok();
    let v = api.get(&outputs(&c)).await.json();
    assert_eq!(v["outputs"], json!({"label": "c-projected"}));
    assert_eq!(v["secretsProviders"]["type"], "service");
    // A preview in W that failed before reporting outputs: the names stay, values unknown.
    let (pc2, lc2) = in_window(&api, &c, true, "W").await;
    api.lease(&lc2)
        .post(
            &format!("{c}/update/{pc2}/complete"),
            json!({"status": "failed"}),
        )
        .await
        .ok();
    let v = api.get(&outputs(&c)).await.json();
    assert_eq!(v["unknown"], true);
    assert_eq!(v["outputs"]["label"], "c-old");
    // Outside the window nothing of this shows.
    let v = api.get(&format!("{c}/outputs")).await.json();
    assert_eq!(v["outputs"]["label"], "c-old");
    assert!(v.get("unknown").is_none());
    // A malformed window is refused.
    begin(&api, &a, "update", false, Some("bad window"))
        .await
        .error(400);
}

#[tokio::test]
async fn api_versions_are_negotiated_from_accept() {
    let srv = TestServer::start().await;
    let api = srv.api();
    for i in 0..120 {
        api.create_stack("proj", &format!("s{i:03}")).await.ok();
    }
    let list = |accept: &'static str| {
        let api = api.clone();
        async move {
            api.send(
                "GET",
                "/api/user/stacks",
                None,
                false,
                &[("Accept", accept)],
            )
            .await
        }
    };
    // 9 (today's CLI) and 8 page; 7 gets everything at once.
    let v = list("application/vnd.pulumi+9").await.json();
    assert_eq!(v["stacks"].as_array().unwrap().len(), 100);
    assert!(v["continuationToken"].is_string());
    let v = list("application/vnd.pulumi+7").await.json();
    assert_eq!(v["stacks"].as_array().unwrap().len(), 120);
    assert!(v.get("continuationToken").is_none_or(Value::is_null));
    // Versions this server does not speak are refused in the Pulumi shape.
    list("application/vnd.pulumi+10").await.error(406);
    list("application/vnd.pulumi+x").await.error(406);
    // No version: the default.
    let v = list("application/json").await.json();
    assert_eq!(v["stacks"].as_array().unwrap().len(), 100);
    let caps = api.get("/api/capabilities").await.json();
    let av = caps["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["capability"] == "api-version")
        .unwrap()
        .clone();
    assert_eq!(
        av["configuration"],
        json!({"minVersion": 1, "maxVersion": 9, "defaultVersion": 9})
    );
}
