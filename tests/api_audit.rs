//! The audit log over HTTP: what each change and refusal records, that an event exists
//! exactly when its change does, who may read it, both API versions' paging and time
//! bounds, the CSV and CEF exports, and the operator's offline view of the same rows.

mod common;

use std::collections::BTreeMap;

use common::ops::{pb, pb_ok, user_token};
use common::*;
use serde_json::{Value, json};

const ACME: &str = "acme";

/// Organization `acme` with an admin and a plain member.
async fn setup() -> (TestServer, Api, Api) {
    let srv = TestServer::start().await;
    let db = srv.db_path();
    pb_ok(&db, false, &["orgs", "create", ACME]).await;
    pb_ok(
        &db,
        false,
        &["orgs", "set-member", ACME, "boss", "--role", "admin"],
    )
    .await;
    pb_ok(&db, false, &["orgs", "set-member", ACME, "dev"]).await;
    let boss = Api::new(&srv.url, &user_token(&db, "boss").await);
    let dev = Api::new(&srv.url, &user_token(&db, "dev").await);
    (srv, boss, dev)
}

/// Every event of the organization, newest first, by following the continuation.
async fn all_events(api: &Api, path: &str, page_size: usize) -> Vec<Value> {
    let mut out = vec![];
    let mut cont: Option<String> = None;
    loop {
        let mut url = format!("{path}?pageSize={page_size}");
        if let Some(c) = &cont {
            url.push_str(&format!("&continuationToken={c}"));
        }
        let r = api.get(&url).await;
        r.ok();
        let v = r.json();
        let page = v["auditLogEvents"].as_array().expect("events").clone();
        assert!(page.len() <= page_size, "{v}");
        out.extend(page);
        match v["continuationToken"].as_str() {
            Some(c) => cont = Some(c.to_owned()),
            None => break,
        }
    }
    out
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn changes_and_refusals_are_recorded_and_read_back_by_org_admins_only() {
    let (srv, boss, dev) = setup().await;
    let stacks = format!("/api/stacks/{ACME}/proj");
    let dev_stack = format!("{stacks}/dev");

    boss.post(&stacks, json!({"stackName": "dev"})).await.ok();
    boss.patch(&format!("{dev_stack}/tags"), json!({"owner": "platform"}))
        .await
        .ok();
    let (id, lease, _) = boss.begin(&dev_stack, "update", false).await;
    boss.lease(&lease)
        .patch_gz(
            &format!("{dev_stack}/update/{id}/checkpoint"),
            json!({"isInvalid": false, "version": 3, "deployment": deployment(2, "a")["deployment"]}),
        )
        .await
        .ok();
    boss.lease(&lease)
        .post(
            &format!("{dev_stack}/update/{id}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    // A retried complete changes nothing and records nothing.
    boss.lease(&lease)
        .post(
            &format!("{dev_stack}/update/{id}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    // Refused: a delete of a stack with resources (no change), a member without admin on
    // the stack, a credential that matches nobody, a forged lease.
    boss.delete(&format!("{dev_stack}?force=false"))
        .await
        .error(400);
    let r = dev.delete(&format!("{dev_stack}?force=true")).await;
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    boss.with_auth(Some("token pul-nobody".into()))
        .get("/api/user")
        .await
        .error(401);
    boss.lease("lease-forged")
        .post(
            &format!("{dev_stack}/update/{id}/renew_lease"),
            json!({"duration": 60}),
        )
        .await;
    boss.post(&format!("{dev_stack}/rename"), json!({"newName": "prod"}))
        .await
        .ok();
    boss.delete(&format!("{stacks}/prod?force=true")).await.ok();

    // Members may not read the log; admins may, in either API version.
    let r = dev.get(&format!("/api/orgs/{ACME}/auditlogs")).await;
    assert_eq!(r.status, 403);
    let v1 = all_events(&boss, &format!("/api/orgs/{ACME}/auditlogs"), 100).await;
    let v2 = all_events(&boss, &format!("/api/orgs/{ACME}/auditlogs/v2"), 3).await;
    assert_eq!(v1, v2, "paging by 3 reads the same log as one page");

    let mut got = kinds(&v1);
    got.reverse();
    let expected = [
        "member-added", // the operator's set-member (boss)
        "member-added", // dev
        "stack-created",
        "stack-tags-updated",
        "update-started",
        "update-succeeded",
        "auth-failure", // dev's forced delete
        "auth-failure", // the forged lease on acme's stack
        "stack-renamed",
        "stack-deleted",
        "auth-failure", // dev reading the log
    ];
    assert_eq!(got, expected, "{v1:#?}");

    let by_kind: BTreeMap<&str, &Value> = v1
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e))
        .collect();
    let created = by_kind["stack-created"];
    assert_eq!(created["user"]["githubLogin"], "boss");
    assert_eq!(created["sourceIP"], "127.0.0.1");
    assert!(created["timestamp"].as_i64().unwrap() > 1_700_000_000);
    assert!(
        created["description"]
            .as_str()
            .unwrap()
            .contains("acme/proj/dev")
    );
    assert!(created["tokenID"].as_str().unwrap().starts_with("tok-"));
    assert_eq!(by_kind["stack-deleted"]["reqStackAdmin"], true);
    assert_eq!(by_kind["stack-renamed"]["reqStackAdmin"], true);
    assert_eq!(by_kind["member-added"]["reqOrgAdmin"], true);
    // The update's events act for its author.
    assert_eq!(by_kind["update-succeeded"]["user"]["githubLogin"], "boss");
    let refusals: Vec<&Value> = v1.iter().filter(|e| e["event"] == "auth-failure").collect();
    assert!(refusals.iter().all(|e| e["authFailure"] == true));
    assert!(
        refusals.iter().any(|e| e["user"]["githubLogin"] == "dev"
            && e["description"].as_str().unwrap().contains("DELETE")),
        "{refusals:#?}"
    );

    // Filters, with both clients' parameter names.
    for q in ["eventType=stack-created", "eventFilter=stack-created"] {
        let r = boss.get(&format!("/api/orgs/{ACME}/auditlogs?{q}")).await;
        assert_eq!(
            kinds(r.json()["auditLogEvents"].as_array().unwrap()),
            ["stack-created"]
        );
    }
    for q in ["user=dev", "userFilter=dev"] {
        let r = boss
            .get(&format!("/api/orgs/{ACME}/auditlogs/v2?{q}"))
            .await;
        let events = r.json()["auditLogEvents"].as_array().unwrap().clone();
        assert!(!events.is_empty());
        assert!(events.iter().all(|e| e["user"]["githubLogin"] == "dev"));
    }

    // The operator sees the same rows, and the instance's own: the credential that matched
    // nobody belongs to no organization.
    let out = pb_ok(&srv.db_path(), false, &["audit", "ls", "--output", "json"]).await;
    let all: Vec<Value> = serde_json::from_str(&out.stdout).expect("audit JSON");
    let nobody = all
        .iter()
        .find(|e| e["event"] == "auth-failure" && e.get("org").is_none())
        .expect("the refused credential is in the instance's log");
    assert!(
        nobody["description"]
            .as_str()
            .unwrap()
            .contains("/api/user")
    );
    assert!(
        !out.stdout.contains("pul-nobody"),
        "credentials never reach the log"
    );
    let out = pb_ok(
        &srv.db_path(),
        false,
        &[
            "audit",
            "ls",
            "--org",
            ACME,
            "--event",
            "stack-deleted",
            "--output",
            "json",
        ],
    )
    .await;
    let deleted: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(deleted.len(), 1);
}

#[tokio::test]
async fn time_bounds_paging_errors_and_exports() {
    let (srv, boss, _dev) = setup().await;
    let stacks = format!("/api/stacks/{ACME}/proj");
    for s in ["a", "b", "c"] {
        boss.post(&stacks, json!({"stackName": s})).await.ok();
    }
    let base = format!("/api/orgs/{ACME}/auditlogs");
    let now = boss.get(&base).await.json()["auditLogEvents"][0]["timestamp"]
        .as_i64()
        .unwrap();
    // v1: startTime is the upper bound; v2: the lower.
    let r = boss.get(&format!("{base}?startTime={}", now - 3600)).await;
    assert_eq!(r.json()["auditLogEvents"].as_array().unwrap().len(), 0);
    let r = boss
        .get(&format!("{base}/v2?startTime={}", now - 3600))
        .await;
    assert_eq!(r.json()["auditLogEvents"].as_array().unwrap().len(), 5);
    let r = boss
        .get(&format!(
            "{base}/v2?startTime={}&endTime={}",
            now + 10,
            now + 20
        ))
        .await;
    assert_eq!(r.json()["auditLogEvents"].as_array().unwrap().len(), 0);

    // Bad input: the Pulumi error shape, nothing else.
    let m = boss
        .get(&format!("{base}?startTime=yesterday"))
        .await
        .error(400);
    assert!(m.contains("startTime"), "{m}");
    boss.get(&format!("{base}?continuationToken=zzz"))
        .await
        .error(400);
    boss.get(&format!("{base}/v2?startTime=20&endTime=10"))
        .await
        .error(400);
    boss.get(&format!("{base}/export?format=xml"))
        .await
        .error(400);
    boss.get("/api/orgs/nope/auditlogs").await.error(404);

    // Exports: gzip on the wire (the client above inflates it), CSV with a header row, CEF
    // one line per event.
    let r = boss.get(&format!("{base}/export")).await;
    r.ok();
    assert_eq!(r.headers["content-encoding"], "gzip");
    let csv = String::from_utf8(r.body.clone()).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("Timestamp,Event,Description,User"),
        "{csv}"
    );
    assert_eq!(lines.len(), 1 + 5, "{csv}");
    assert!(lines.iter().any(|l| l.contains("stack-created")));
    let r = boss.get(&format!("{base}/v2/export?format=cef")).await;
    r.ok();
    let cef = String::from_utf8(r.body.clone()).unwrap();
    assert_eq!(cef.lines().count(), 5, "{cef}");
    assert!(
        cef.lines()
            .all(|l| l.starts_with("CEF:0|pbackend|pbackend|"))
    );

    // The operator's export and prune.
    let out = pb_ok(
        &srv.db_path(),
        false,
        &["audit", "export", "--format", "cef"],
    )
    .await;
    assert!(out.stdout.lines().count() >= 5);
    let out = pb(
        &srv.db_path(),
        false,
        &["audit", "export", "--format", "pdf"],
    )
    .await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("csv or cef"), "{}", out.stderr);
    pb_ok(
        &srv.db_path(),
        false,
        &["audit", "prune", "--older-than", "1d"],
    )
    .await;
    let r = boss.get(&format!("{base}/v2")).await;
    assert_eq!(r.json()["auditLogEvents"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn a_flood_of_bad_credentials_writes_a_bounded_number_of_events() {
    let srv = TestServer::start().await;
    let bad = srv.api().with_auth(Some("token pul-flood".into()));
    let start = std::time::Instant::now();
    let mut tasks = vec![];
    for _ in 0..400 {
        let bad = bad.clone();
        tasks.push(tokio::spawn(
            async move { bad.get("/api/user").await.status },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    let secs = start.elapsed().as_secs() as usize + 1;
    let rows = db_audit(&srv.db_path()).await;
    let failures = rows.iter().filter(|r| r["event"] == "auth-failure").count();
    assert!(failures >= 1, "refusals are recorded");
    // At most 20 a second (the budget), counted over the seconds the flood lasted (+1 for
    // the second it may straddle).
    assert!(
        failures <= 20 * (secs + 1),
        "{failures} events for 400 refusals in {secs} s"
    );
    assert!(!format!("{rows:?}").contains("pul-flood"));
}

#[tokio::test]
async fn secrets_shown_in_clear_are_recorded() {
    let (_srv, boss, _dev) = setup().await;
    boss.post(
        &format!("/api/stacks/{ACME}/proj"),
        json!({"stackName": "dev"}),
    )
    .await
    .ok();
    let dev = format!("/api/stacks/{ACME}/proj/dev");
    let r = boss
        .post(
            &format!("{dev}/decrypt/log-batch-decryption"),
            json!({"commandName": "pulumi stack export"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let v = boss
        .get(&format!(
            "/api/orgs/{ACME}/auditlogs?eventType=secrets-decrypted"
        ))
        .await
        .json();
    let events = v["auditLogEvents"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{v}");
    let d = events[0]["description"].as_str().unwrap();
    assert!(
        d.contains("acme/proj/dev") && d.contains("pulumi stack export"),
        "{d}"
    );
}

#[tokio::test]
async fn teams_roles_and_stack_permissions_are_recorded() {
    let (srv, boss, _dev) = setup().await;
    boss.post(
        &format!("/api/stacks/{ACME}/proj"),
        json!({"stackName": "dev"}),
    )
    .await
    .ok();
    let db = srv.db_path();
    pb_ok(&db, false, &["teams", "create", "acme/ops"]).await;
    pb_ok(&db, false, &["teams", "add-member", "acme/ops", "dev"]).await;
    pb_ok(
        &db,
        false,
        &["teams", "grant", "acme/ops", "acme/proj/dev", "write"],
    )
    .await;
    let id = pb_ok(
        &db,
        false,
        &["roles", "create", ACME, "auditor", "--scopes", "stack:read"],
    )
    .await
    .stdout
    .trim()
    .to_owned();
    pb_ok(&db, false, &["roles", "assign", "acme/ops", &id]).await;
    pb_ok(&db, false, &["teams", "delete", "acme/ops"]).await;
    pb_ok(&db, false, &["roles", "rm", ACME, &id]).await;
    let out = pb_ok(
        &db,
        false,
        &["audit", "ls", "--org", ACME, "--output", "json"],
    )
    .await;
    let events: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    let mut kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .filter(|k| !["member-added", "stack-created"].contains(k))
        .collect();
    kinds.reverse();
    assert_eq!(
        kinds,
        [
            "team-created",
            "team-updated",
            "stack-permission-changed",
            "role-created",
            "team-updated",
            "team-deleted",
            "role-deleted"
        ],
        "{events:#?}"
    );
    let grant = events
        .iter()
        .find(|e| e["event"] == "stack-permission-changed")
        .unwrap();
    assert_eq!(grant["user"]["githubLogin"], "operator");
    assert_eq!(grant["reqStackAdmin"], true);
    assert!(grant["description"].as_str().unwrap().contains("write"));
}
