//! The integration API through the real `pulumi` CLI: `pulumi org audit-log list|export`
//! show the events of a real `pulumi up`, `destroy`, `stack rm` and of a refused request
//! (v3.259 calls `…/auditlogs`, v3.277 `…/auditlogs/v2`); `pulumi org|stack webhook …` with
//! a real receiver; a rate-limited `pulumi up`; the webhook outbox across SIGKILL.

mod common;

use common::cli::*;
use common::ops::{pb_ok, user_token};
use common::receiver::{Receiver, signature_ok};
use serde_json::Value;

#[tokio::test]
async fn audit_log_list_and_export_show_a_real_update_a_removal_and_a_refusal() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&[]).await;
    let db = srv.db();
    pb_ok(&db, false, &["orgs", "create", "acme"]).await;
    pb_ok(
        &db,
        false,
        &["orgs", "set-member", "acme", "carol", "--role", "admin"],
    )
    .await;
    pb_ok(&db, false, &["orgs", "set-member", "acme", "alice"]).await;
    let carol = user_token(&db, "carol").await;
    let alice = user_token(&db, "alice").await;
    let p = Project::logged_in_as(&tc, &srv.url, "proj", &carol, "acme").await;
    // The audit-log commands as written here (`--org`, `--event-type`, export) are v3.259's.
    if !version_at_least(&tc.version, 3, 259)
        || p.run(&["org", "audit-log", "list", "--help"]).await.code != 0
    {
        eprintln!(
            "SKIPPED: pulumi {} has no org audit-log commands",
            tc.version
        );
        return;
    }

    p.ok(&["stack", "init", "acme/proj/dev"]).await;
    p.ok(&["up", "--yes", "--skip-preview"]).await;
    p.ok(&["destroy", "--yes", "--skip-preview"]).await;
    p.ok(&["stack", "rm", "--yes", "acme/proj/dev"]).await;
    // A member may not read the log: refused, and the refusal is recorded.
    let a = Project::logged_in_as(&tc, &srv.url, "proj", &alice, "acme").await;
    let out = a
        .fails(&["org", "audit-log", "list", "--org", "acme"])
        .await;
    assert!(out.all().contains("audit_log:read"), "{}", out.all());

    let table = p
        .ok(&["org", "audit-log", "list", "--org", "acme"])
        .await
        .stdout;
    for kind in [
        "stack-created",
        "update-started",
        "update-succeeded",
        "stack-deleted",
        "auth-failure",
        "member-added",
    ] {
        assert!(table.contains(kind), "{kind} missing:\n{table}");
    }
    assert!(
        table.contains("carol") && table.contains("127.0.0.1"),
        "{table}"
    );

    let json = p
        .ok(&[
            "org",
            "audit-log",
            "list",
            "--org",
            "acme",
            "--all",
            "--output",
            "json",
        ])
        .await
        .stdout;
    let v: Value = serde_json::from_str(&json).expect("audit JSON");
    let events = v["events"].as_array().expect("events");
    assert_eq!(v["count"].as_u64(), Some(events.len() as u64));
    // up and destroy: two updates (their previews were skipped), each started and finished.
    let count = |k: &str| events.iter().filter(|e| e["event"] == k).count();
    assert_eq!(count("update-started"), 2, "{v:#}");
    assert_eq!(count("update-succeeded"), 2, "{v:#}");
    assert_eq!(count("stack-deleted"), 1, "{v:#}");
    let refused = events
        .iter()
        .find(|e| e["event"] == "auth-failure")
        .expect("the refusal");
    assert_eq!(refused["user"]["githubLogin"], "alice");

    let only = p
        .ok(&[
            "org",
            "audit-log",
            "list",
            "--org",
            "acme",
            "--event-type",
            "stack-deleted",
            "--output",
            "json",
        ])
        .await
        .stdout;
    let v: Value = serde_json::from_str(&only).unwrap();
    assert_eq!(v["count"], 1, "{v:#}");

    let csv = p
        .ok(&["org", "audit-log", "export", "--org", "acme"])
        .await
        .stdout;
    assert!(csv.starts_with("Timestamp,Event,Description"), "{csv}");
    assert!(
        csv.contains("stack-deleted") && csv.contains("acme/proj/dev"),
        "{csv}"
    );
    let cef = p
        .ok(&[
            "org",
            "audit-log",
            "export",
            "--org",
            "acme",
            "--format",
            "cef",
        ])
        .await
        .stdout;
    assert!(cef.lines().count() >= events.len(), "{cef}");
    assert!(
        cef.lines().all(|l| l.starts_with("CEF:0|pbackend|")),
        "{cef}"
    );
}

#[tokio::test]
async fn a_200_resource_up_under_a_tight_rate_limit_is_slowed_never_failed() {
    let tc = require_cli!();
    // Honouring Retry-After on 429 is in the CLI from v3.259 on; older ones give up.
    if !version_at_least(&tc.version, 3, 259) {
        eprintln!("SKIPPED: pulumi {} does not retry 429", tc.version);
        return;
    }
    let srv = ServerProcess::start(&["--rate-limit", "2/4s"]).await;
    let p = Project::new(&tc, &srv, "limited").await;
    p.write_program(&items(200, "a", 0), "");
    p.ok(&["stack", "init", "dev"]).await;
    p.ok(&["up", "--yes"]).await;
    p.write_program(&items(200, "b", 0), "");
    p.ok(&["up", "--yes", "--skip-preview"]).await;
    let out = p.ok(&["stack", "export"]).await.stdout;
    assert!(out.contains("b-199"), "the second update landed");
    let log = srv.log(1);
    assert!(
        log.contains("status=429"),
        "the limit was met (the CLI retried after Retry-After):\n{}",
        log.lines()
            .filter(|l| l.contains("refused"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// `pulumi org webhook …` and `pulumi stack webhook …` against a real receiver, which sees
/// the events of a real `pulumi up` and `destroy`, signed.
#[tokio::test]
async fn org_and_stack_webhook_commands_with_a_real_receiver() {
    let tc = require_cli!();
    let rx = Receiver::start().await;
    let srv = ServerProcess::start(&["--webhooks-allow-loopback"]).await;
    let db = srv.db();
    pb_ok(&db, false, &["orgs", "create", "acme"]).await;
    pb_ok(
        &db,
        false,
        &["orgs", "set-member", "acme", "carol", "--role", "admin"],
    )
    .await;
    let carol = user_token(&db, "carol").await;
    let p = Project::logged_in_as(&tc, &srv.url, "proj", &carol, "acme").await;
    // The webhook commands as written here are those of v3.259 on.
    if !version_at_least(&tc.version, 3, 259)
        || p.run(&["org", "webhook", "--help"]).await.code != 0
    {
        eprintln!("SKIPPED: pulumi {} has no webhook commands", tc.version);
        return;
    }
    let org = |args: &[&str]| {
        let mut v: Vec<String> = vec!["org".into(), "webhook".into()];
        v.extend(args.iter().map(|s| s.to_string()));
        v.extend(["--org".to_string(), "acme".to_string()]);
        v
    };
    let run = |v: Vec<String>| {
        let p = &p;
        async move {
            let args: Vec<&str> = v.iter().map(String::as_str).collect();
            p.ok(&args).await
        }
    };
    run(org(&[
        "new",
        "--name",
        "ci",
        "--url",
        &rx.url,
        "--secret",
        "org-secret",
        "--yes",
    ]))
    .await;
    let list = run(org(&["list", "--output", "json"])).await.json();
    assert_eq!(list["count"], 1, "{list}");
    let id = list["webhooks"][0]["id"].as_str().unwrap().to_owned();
    let table = run(org(&["list"])).await.stdout;
    assert!(table.contains(&id) && table.contains("ci"), "{table}");

    p.ok(&["stack", "init", "acme/proj/dev"]).await;
    p.ok(&["up", "--yes"]).await;
    let got = rx
        .wait_for("stack created, preview and update", |g| {
            g.iter().filter(|r| r.kind() == "stack_update").count() >= 1
        })
        .await;
    assert!(got.iter().all(|r| signature_ok(r, "org-secret")));
    let kinds: Vec<String> = got.iter().map(|r| r.kind()).collect();
    assert_eq!(
        kinds,
        ["stack", "stack_preview", "stack_update"],
        "{kinds:?}"
    );
    let update = got[2].json();
    assert_eq!(update["result"], "succeeded");
    assert_eq!(update["stackName"], "dev");
    assert!(update["updateUrl"].as_str().unwrap().starts_with(&srv.url));

    // Only failed updates from now on, under a new display name.
    run(org(&[
        "edit",
        &id,
        "--display-name",
        "ci-failures",
        "--add-event",
        "update_failed",
    ]))
    .await;
    let v = srv
        .api()
        .get(&format!("/api/orgs/acme/hooks/{id}"))
        .await
        .json();
    assert_eq!(v["displayName"], "ci-failures");
    assert_eq!(v["filters"], serde_json::json!(["update_failed"]));
    assert_eq!(v["hasSecret"], true, "edit without --secret keeps it");
    let ping = run(org(&["ping", &id])).await.stdout;
    assert!(ping.contains("ping") && ping.contains("200"), "{ping}");
    let deliveries = run(org(&["delivery", "list", &id])).await.stdout;
    assert!(
        deliveries.contains("stack_update") && deliveries.contains("ping"),
        "{deliveries}"
    );

    // A stack's own hook: update_succeeded only; `destroy` is not an update.
    p.ok(&[
        "stack",
        "webhook",
        "new",
        "--name",
        "dev-hook",
        "--url",
        &rx.url,
        "--event",
        "update_succeeded",
        "--yes",
    ])
    .await;
    let sl = p
        .ok(&["stack", "webhook", "list", "--output", "json"])
        .await
        .json();
    let sid = sl["webhooks"][0]["id"].as_str().unwrap().to_owned();
    let get = p.ok(&["stack", "webhook", "get", &sid]).await.stdout;
    assert!(get.contains("dev-hook"), "{get}");
    let before = rx.got().len();
    p.write_program(&items(2, "b", 0), "");
    p.ok(&["up", "--yes", "--skip-preview"]).await;
    p.ok(&["destroy", "--yes", "--skip-preview"]).await;
    let got = rx
        .wait_for("the stack hook's update", |g| g.len() > before)
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let new: Vec<String> = rx.got()[before..].iter().map(|r| r.kind()).collect();
    assert_eq!(
        new,
        ["stack_update"],
        "update_succeeded once, nothing for destroy: {new:?}"
    );
    let event = got.last().unwrap().header("pulumi-webhook-id");
    let sd = p
        .ok(&["stack", "webhook", "delivery", "list", &sid])
        .await
        .stdout;
    assert!(sd.contains(&event), "{sd}");
    p.ok(&["stack", "webhook", "delivery", "redeliver", &sid, &event])
        .await;
    p.ok(&["stack", "webhook", "remove", &sid, "--yes"]).await;
    let sl = p
        .ok(&["stack", "webhook", "list", "--output", "json"])
        .await
        .json();
    assert_eq!(sl["count"], 0, "{sl}");
    run(org(&["remove", &id, "--yes"])).await;
    let list = run(org(&["list", "--output", "json"])).await.json();
    assert_eq!(list["count"], 0, "{list}");
}

/// The outbox survives SIGKILL: events raised while the receiver is down are delivered after
/// a restart, each attempt with its own id, none lost.
#[tokio::test]
async fn pending_deliveries_survive_sigkill_and_restart() {
    let rx = Receiver::start().await;
    rx.answer(&[503; 200]);
    let mut srv =
        ServerProcess::start(&["--webhooks-allow-loopback", "--webhook-timeout", "2s"]).await;
    let api = srv.api();
    api.post(
        "/api/orgs/organization/hooks",
        serde_json::json!({"organizationName": "organization", "displayName": "x",
            "payloadUrl": rx.url, "active": true}),
    )
    .await
    .ok();
    for s in ["s0", "s1", "s2"] {
        api.create_stack("p", s).await.ok();
    }
    rx.wait_for("first attempts", |g| g.len() >= 3).await;
    srv.kill().await;
    let at_kill = rx.got().len();
    rx.answer(&[]);
    srv.restart().await;
    let got = rx
        .wait_for("every stack's event after the restart", |g| {
            ["s0", "s1", "s2"]
                .iter()
                .all(|s| g.iter().skip(at_kill).any(|r| r.json()["stackName"] == *s))
        })
        .await;
    let ids: std::collections::HashSet<String> =
        got.iter().map(|r| r.header("pulumi-webhook-id")).collect();
    assert_eq!(ids.len(), got.len(), "every attempt has its own id");
}

/// `pulumi api` reads our OpenAPI document and calls what it lists (v3.259 on): the
/// organization's stacks with `{orgName}` filled from the default organization, a stack with
/// its names given, and the current user by path.
#[tokio::test]
async fn pulumi_api_lists_and_calls_our_operations() {
    let tc = require_cli!();
    if !version_at_least(&tc.version, 3, 259) {
        eprintln!("SKIPPED: pulumi {} has no `pulumi api`", tc.version);
        return;
    }
    let srv = ServerProcess::start(&[]).await;
    let p = Project::new(&tc, &srv, "apiproj").await;
    p.ok(&["stack", "init", "dev"]).await;
    let list = p.ok(&["api", "list", "--output", "json"]).await.json();
    let ops: Vec<&str> = list["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .map(|o| o["operationId"].as_str().unwrap())
        .collect();
    for op in [
        "ListOrgStacks",
        "GetStack",
        "ListAuditLogV2",
        "CreateOrgHook",
    ] {
        assert!(ops.contains(&op), "{op} not listed: {ops:?}");
    }
    let described = p.ok(&["api", "describe", "ListOrgStacks"]).await.stdout;
    assert!(
        described.contains("GET /api/stacks/{orgName}"),
        "{described}"
    );
    let stacks = p.ok(&["api", "ListOrgStacks"]).await.json();
    assert_eq!(stacks["stacks"][0]["stackName"], "dev", "{stacks}");
    let stack = p
        .ok(&[
            "api",
            "GetStack",
            "-F",
            "projectName=apiproj",
            "-F",
            "stackName=dev",
        ])
        .await
        .json();
    assert_eq!(stack["stackName"], "dev", "{stack}");
    let me = p.ok(&["api", "/api/user"]).await.json();
    assert!(me["githubLogin"].is_string(), "{me}");
    let out = p
        .fails(&[
            "api",
            "GetStack",
            "-F",
            "projectName=apiproj",
            "-F",
            "stackName=nope",
        ])
        .await;
    assert!(out.stderr.contains("404"), "{}", out.all());
}
