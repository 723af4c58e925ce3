//! Webhooks over HTTP, delivered to a real receiver: what may be registered, that every
//! change's event reaches the hooks that want it (signed, in order), retries with growing
//! gaps, pings, redeliveries, and that a receiver that does not answer holds up no request.

mod common;

use std::time::Duration;

use common::ops::user_token;
use common::receiver::{Receiver, signature_ok};
use common::*;
use serde_json::{Value, json};

fn loopback_options() -> Options {
    let mut o = Options::default();
    o.config.webhooks.allow_loopback = true;
    o.config.webhooks.first_retry_secs = 1;
    o
}

fn hook(url: &str) -> Value {
    json!({"organizationName": ORG, "displayName": "ci", "payloadUrl": url, "active": true})
}

#[tokio::test]
async fn hooks_are_validated_and_replaced_whole() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let hooks = format!("/api/orgs/{ORG}/hooks");
    // Loopback, link-local and metadata addresses are refused unless loopback is allowed.
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",
        "http://169.254.169.254/latest",
        "http://[fe80::1]/x",
        "ftp://example.com/x",
        "not a url",
    ] {
        let m = api.post(&hooks, hook(url)).await.error(400);
        assert!(m.contains("payload URL"), "{url}: {m}");
    }
    let url = "https://hooks.example.com/pulumi";
    let mut bad = hook(url);
    bad["groups"] = json!(["stacks"]);
    bad["filters"] = json!(["update_failed"]);
    let m = api.post(&hooks, bad).await.error(400);
    assert!(m.contains("already included by group \"stacks\""), "{m}");
    let mut bad = hook(url);
    bad["format"] = json!("pulumi_deployments");
    api.post(&hooks, bad).await.error(400);
    let mut bad = hook(url);
    bad["organizationName"] = json!("other");
    api.post(&hooks, bad).await.error(400);

    let mut h = hook(url);
    h["secret"] = json!("s3cret");
    h["filters"] = json!(["stack_created"]);
    h["name"] = json!("");
    let r = api.post(&hooks, h).await;
    assert_eq!(r.status, 201);
    let created = r.json();
    let name = created["name"].as_str().unwrap().to_owned();
    assert_eq!(name.len(), 8, "a generated name: {created}");
    assert_eq!(created["hasSecret"], true);
    assert!(
        created.get("secret").is_none(),
        "the secret never comes back"
    );
    assert_eq!(created["format"], "raw");
    let mut dup = hook(url);
    dup["name"] = json!(name);
    api.post(&hooks, dup).await.error(409);

    // A stack's hook may not take organization-only events.
    api.create_stack("p", "dev").await.ok();
    let stack_hooks = format!("{}/hooks", stack_path("p", "dev"));
    let mut sh = hook(url);
    sh["filters"] = json!(["stack_deleted"]);
    api.post(&stack_hooks, sh).await.error(400);
    let mut sh = hook(url);
    sh["filters"] = json!(["update_failed", "preview_failed"]);
    assert_eq!(api.post(&stack_hooks, sh).await.status, 201);
    assert_eq!(
        api.get(&stack_hooks).await.json().as_array().unwrap().len(),
        1
    );

    // PATCH replaces the whole object: no secret keeps it, absent lists are empty,
    // "__remove-secret" clears it.
    let one = format!("{hooks}/{name}");
    let mut edit = api.get(&one).await.json();
    edit["displayName"] = json!("renamed");
    edit.as_object_mut().unwrap().remove("filters");
    let v = api.patch(&one, edit.clone()).await.json();
    assert_eq!(v["displayName"], "renamed");
    assert_eq!(v["hasSecret"], true);
    assert_eq!(v["filters"], json!([]));
    edit["secret"] = json!("__remove-secret");
    assert_eq!(api.patch(&one, edit).await.json()["hasSecret"], false);

    // Members may not manage organization hooks.
    let dev = Api::new(&srv.url, &user_token(&srv.db_path(), "dev").await);
    assert_eq!(dev.get(&hooks).await.status, 403);

    assert_eq!(api.delete(&one).await.status, 204);
    api.get(&one).await.error(404);
    api.delete(&one).await.error(404);
    // Changes to hooks are audited.
    let log = api
        .get(&format!(
            "/api/orgs/{ORG}/auditlogs?eventType=webhook-created"
        ))
        .await
        .json();
    assert_eq!(log["auditLogEvents"].as_array().unwrap().len(), 2, "{log}");
}

#[tokio::test]
async fn changes_reach_the_hooks_that_want_them_signed_and_in_order() {
    let rx = Receiver::start().await;
    let srv = TestServer::start_with(loopback_options()).await;
    let api = srv.api();
    let mut all = hook(&rx.url);
    all["secret"] = json!("org-secret");
    let org_hook = api
        .post(&format!("/api/orgs/{ORG}/hooks"), all)
        .await
        .json();
    api.create_stack("web", "dev").await.ok();
    let dev = stack_path("web", "dev");
    let mut only = hook(&rx.url);
    only["filters"] = json!(["update_succeeded"]);
    only["secret"] = json!("stack-secret");
    let stack_hook = api.post(&format!("{dev}/hooks"), only).await.json();

    // A preview and an update of the stack, then its removal.
    for dry_run in [true, false] {
        let (id, lease, _) = api.begin(&dev, "update", dry_run).await;
        api.lease(&lease)
            .post(
                &format!("{dev}/update/{id}/complete"),
                json!({"status": "succeeded"}),
            )
            .await
            .ok();
    }
    // A stack's hooks go with it, pending deliveries included: let its delivery land first.
    rx.wait_for("the stack hook's delivery", |g| {
        g.iter().any(|r| signature_ok(r, "stack-secret"))
    })
    .await;
    api.delete(&format!("{dev}?force=true")).await.ok();

    rx.wait_for("five deliveries", |g| g.len() >= 5).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = rx.got();
    assert_eq!(
        got.len(),
        5,
        "{:#?}",
        got.iter().map(|r| r.kind()).collect::<Vec<_>>()
    );
    let mut ids = std::collections::HashSet::new();
    for r in &got {
        assert_eq!(r.header("content-type"), "application/json");
        assert!(
            ids.insert(r.header("pulumi-webhook-id")),
            "one id per delivery"
        );
        let secret = if r.json()["updateUrl"].is_string()
            && r.kind() == "stack_update"
            && signature_ok(r, "stack-secret")
        {
            "stack-secret"
        } else {
            "org-secret"
        };
        assert!(signature_ok(r, secret), "signature of {}", r.kind());
        assert!(!signature_ok(r, "wrong"));
    }
    let org_kinds: Vec<(String, Value)> = got
        .iter()
        .filter(|r| signature_ok(r, "org-secret"))
        .map(|r| (r.kind(), r.json()))
        .collect();
    let kinds: Vec<&str> = org_kinds.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["stack", "stack_preview", "stack_update", "stack"],
        "in order"
    );
    let (_, created) = &org_kinds[0];
    assert_eq!(created["action"], "created");
    assert_eq!(created["projectName"], "web");
    assert_eq!(created["stackName"], "dev");
    assert_eq!(created["organization"]["githubLogin"], ORG);
    let (_, preview) = &org_kinds[1];
    assert_eq!(preview["isPreview"], true);
    assert_eq!(preview["result"], "succeeded");
    let (_, update) = &org_kinds[2];
    assert_eq!(update["kind"], "update");
    assert!(
        update["updateUrl"]
            .as_str()
            .unwrap()
            .ends_with("/web/dev/updates/1"),
        "{update}"
    );
    assert_eq!(org_kinds[3].1["action"], "deleted");
    let stack_only: Vec<&common::receiver::Received> = got
        .iter()
        .filter(|r| signature_ok(r, "stack-secret"))
        .collect();
    assert_eq!(
        stack_only.len(),
        1,
        "the stack's hook wants update_succeeded only"
    );
    assert_eq!(stack_only[0].kind(), "stack_update");
    assert!(stack_hook["name"].is_string());

    // The record of deliveries, a ping and a redelivery.
    let base = format!(
        "/api/orgs/{ORG}/hooks/{}",
        org_hook["name"].as_str().unwrap()
    );
    let deliveries = api.get(&format!("{base}/deliveries")).await.json();
    let list = deliveries.as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert!(list.iter().all(|d| d["responseCode"] == 200));
    assert_eq!(list[0]["kind"], "stack", "newest first");
    let ping = api.post(&format!("{base}/ping"), json!({})).await.json();
    assert_eq!(ping["kind"], "ping");
    assert_eq!(ping["responseCode"], 200);
    assert!(
        ping["requestHeaders"]
            .as_str()
            .unwrap()
            .contains("Pulumi-Webhook-Kind: ping")
    );
    let earlier = list[1]["id"].as_str().unwrap();
    let again = api
        .post(&format!("{base}/deliveries/{earlier}/redeliver"), json!({}))
        .await
        .json();
    assert_eq!(again["payload"], list[1]["payload"]);
    assert_ne!(again["id"], list[1]["id"]);
    api.post(&format!("{base}/deliveries/whd-nope/redeliver"), json!({}))
        .await
        .error(404);
    let last = rx.wait_for("the redelivery", |g| g.len() >= 7).await;
    assert_eq!(last[6].body, last[6].body);
}

#[tokio::test]
async fn a_failing_receiver_gets_retries_with_growing_gaps() {
    let rx = Receiver::start().await;
    rx.answer(&[500, 500, 500]);
    let srv = TestServer::start_with(loopback_options()).await;
    let api = srv.api();
    api.post(&format!("/api/orgs/{ORG}/hooks"), hook(&rx.url))
        .await;
    api.create_stack("p", "s").await.ok();
    let got = rx.wait_for("four attempts", |g| g.len() >= 4).await;
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    // Backoff 1 s, 2 s, 4 s (plus up to a quarter of jitter, minus the poll's granularity).
    assert!(gaps[1] > gaps[0] && gaps[2] > gaps[1], "{gaps:?}");
    let hooks = api.get(&format!("/api/orgs/{ORG}/hooks")).await.json();
    let name = hooks[0]["name"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let list = api
        .get(&format!("/api/orgs/{ORG}/hooks/{name}/deliveries"))
        .await
        .json();
    let codes: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["responseCode"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [200, 500, 500, 500], "newest first");
    // Same event, one new id per attempt.
    let ids: std::collections::HashSet<String> =
        got.iter().map(|r| r.header("pulumi-webhook-id")).collect();
    assert_eq!(ids.len(), 4);
    assert!(got.iter().all(|r| r.body == got[0].body));
}

#[tokio::test]
async fn a_receiver_that_does_not_answer_holds_up_no_request() {
    let rx = Receiver::start().await;
    rx.hold(true);
    let srv = TestServer::start_with(loopback_options()).await;
    let api = srv.api();
    api.post(&format!("/api/orgs/{ORG}/hooks"), hook(&rx.url))
        .await;
    api.create_stack("p", "a").await.ok();
    rx.wait_for("the first delivery", |g| !g.is_empty()).await;
    // The receiver is sitting on that delivery: the API carries on regardless.
    let s = stack_path("p", "a");
    for _ in 0..3 {
        let (id, lease, _) = api.begin(&s, "update", false).await;
        api.lease(&lease)
            .post(
                &format!("{s}/update/{id}/complete"),
                json!({"status": "succeeded"}),
            )
            .await
            .ok();
    }
    api.create_stack("p", "b").await.ok();
    assert_eq!(rx.got().len(), 1, "still only the held delivery");
    rx.release();
    rx.wait_for("everything once released", |g| g.len() >= 5)
        .await;
}
