//! An integration written as a third party writes one, from the service's public REST
//! documentation only: it checks its token, walks an organization's stacks page by page,
//! reads each stack's details, recent updates and state, pages through the audit log, and
//! backs off by `Retry-After` when a burst runs into the rate limit. Plus the REST surface
//! such integrations read: `GET /api/stacks/{org}`, `…/config`, update paging.

mod common;

use std::time::{Duration, Instant};

use common::*;
use pbackend::server::ratelimit::RateLimits;
use serde_json::{Value, json};

/// GET that honours 429 as a polite client does: wait `Retry-After`, try again.
async fn polite_get(api: &Api, path: &str, waited: &mut Duration) -> Value {
    loop {
        let r = api.get(path).await;
        if r.status == 429 {
            let secs: u64 = r.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .expect("Retry-After is whole seconds");
            assert!((1..=60).contains(&secs), "{secs}");
            let v = r.json();
            assert_eq!(v["code"], 429, "Pulumi error shape: {v}");
            let pause = Duration::from_secs(secs);
            *waited += pause;
            tokio::time::sleep(pause).await;
            continue;
        }
        r.ok();
        return r.json();
    }
}

#[tokio::test]
async fn a_third_party_integration_reads_everything_and_backs_off_when_limited() {
    let mut opts = Options::default();
    opts.server.rate_limits = RateLimits::parse("20/2s").unwrap();
    let srv = TestServer::start_with(opts).await;
    let api = srv.api();
    // Something to read: 7 stacks, one with two updates.
    for i in 0..7 {
        api.create_stack("web", &format!("s{i}")).await.ok();
    }
    let s0 = stack_path("web", "s0");
    for label in ["one", "two"] {
        let (id, lease, _) = api.begin(&s0, "update", false).await;
        api.lease(&lease)
            .patch_gz(
                &format!("{s0}/update/{id}/checkpoint"),
                json!({"isInvalid": false, "version": 3, "deployment": deployment(1, label)["deployment"]}),
            )
            .await
            .ok();
        api.lease(&lease)
            .post(
                &format!("{s0}/update/{id}/complete"),
                json!({"status": "succeeded"}),
            )
            .await
            .ok();
    }

    let mut waited = Duration::ZERO;
    let started = Instant::now();
    // 1. Token check.
    let me = polite_get(&api, "/api/user", &mut waited).await;
    let org = me["organizations"][0]["githubLogin"]
        .as_str()
        .expect("an organization")
        .to_owned();
    // 2. The organization's stacks, through the continuation.
    let mut stacks = vec![];
    let mut path = format!("/api/stacks/{org}");
    loop {
        let page = polite_get(&api, &path, &mut waited).await;
        stacks.extend(page["stacks"].as_array().unwrap().clone());
        match page["continuationToken"].as_str() {
            Some(c) => path = format!("/api/stacks/{org}?continuationToken={c}"),
            None => break,
        }
    }
    assert_eq!(stacks.len(), 7);
    // 3. Per stack: details, the last ten updates, the state; config is not kept here (404).
    for s in &stacks {
        let base = format!(
            "/api/stacks/{}/{}/{}",
            s["orgName"].as_str().unwrap(),
            s["projectName"].as_str().unwrap(),
            s["stackName"].as_str().unwrap()
        );
        let detail = polite_get(&api, &base, &mut waited).await;
        assert_eq!(detail["stackName"], s["stackName"]);
        let updates = polite_get(
            &api,
            &format!("{base}/updates?pageSize=10&page=1"),
            &mut waited,
        )
        .await;
        let export = polite_get(&api, &format!("{base}/export"), &mut waited).await;
        assert!(export["version"].is_number(), "{export}");
        if s["stackName"] == "s0" {
            assert_eq!(updates["updates"].as_array().unwrap().len(), 2, "{updates}");
            assert_eq!(
                export["deployment"]["resources"][0]["outputs"]["label"],
                "two"
            );
        }
        let r = api.get(&format!("{base}/config")).await;
        if r.status != 429 {
            assert!(r.error(404).contains("no service-managed configuration"));
        }
    }
    // 4. The audit log, page by page.
    let mut events = 0;
    let mut path = format!("/api/orgs/{org}/auditlogs/v2?pageSize=4");
    loop {
        let page = polite_get(&api, &path, &mut waited).await;
        events += page["auditLogEvents"].as_array().unwrap().len();
        match page["continuationToken"].as_str() {
            Some(c) => {
                path = format!("/api/orgs/{org}/auditlogs/v2?pageSize=4&continuationToken={c}")
            }
            None => break,
        }
    }
    assert_eq!(
        events,
        7 + 4,
        "7 stacks created, 2 updates started and finished"
    );
    // 5. A burst past the limit: refused with 429, the polite client waited, nothing failed.
    let mut limited = 0;
    for _ in 0..40 {
        if api.get("/api/user").await.status == 429 {
            limited += 1;
        }
    }
    assert!(limited > 0, "a burst of 40 against 20/2s meets the limit");
    assert!(
        waited > Duration::ZERO || limited > 0,
        "the walk above ({:?}) waited {waited:?}",
        started.elapsed()
    );
    // Writes are never limited: even now, creating a stack works.
    api.create_stack("web", "after-burst").await.ok();
}

#[tokio::test]
async fn org_stacks_config_and_update_paging() {
    let srv = TestServer::start().await;
    let api = srv.api();
    for i in 0..3 {
        api.create_stack("p", &format!("s{i}")).await.ok();
    }
    let s = stack_path("p", "s0");
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
    let list = api.get(&format!("/api/stacks/{ORG}")).await.json();
    assert_eq!(list["stacks"].as_array().unwrap().len(), 3, "{list}");
    // The instance's admin sees every organization (here: an empty one); a user only theirs.
    let none = api.get("/api/stacks/elsewhere").await.json();
    assert_eq!(none["stacks"], json!([]));
    let bob = Api::new(
        &srv.url,
        &common::ops::user_token(&srv.db_path(), "bob").await,
    );
    assert_eq!(
        bob.get(&format!("/api/stacks/{ORG}")).await.json()["stacks"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    bob.get("/api/stacks/elsewhere").await.error(404);
    let m = api.get(&format!("{s}/config")).await.error(404);
    assert!(m.contains("no service-managed configuration"), "{m}");
    api.get(&stack_path("p", "missing")).await.error(404);
    // page=0 (or no pageSize): everything; pageSize with page: that page, newest first.
    let all = api.get(&format!("{s}/updates?page=0")).await.json();
    assert_eq!(all["updates"].as_array().unwrap().len(), 3);
    let first = api
        .get(&format!("{s}/updates?pageSize=1&page=1"))
        .await
        .json();
    assert_eq!(first["updates"].as_array().unwrap().len(), 1);
    assert_eq!(first["updates"][0]["version"], 3, "{first}");
    let third = api
        .get(&format!("{s}/updates?pageSize=2&page=2"))
        .await
        .json();
    assert_eq!(third["updates"][0]["version"], 1, "{third}");
    let past = api
        .get(&format!("{s}/updates?pageSize=2&page=9"))
        .await
        .json();
    assert_eq!(past["updates"].as_array().unwrap().len(), 0);
}
