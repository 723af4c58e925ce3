//! The integration API through the real `pulumi` CLI: `pulumi org audit-log list|export`
//! show the events of a real `pulumi up`, `destroy`, `stack rm` and of a refused request
//! (v3.259 calls `…/auditlogs`, v3.277 `…/auditlogs/v2`).

mod common;

use common::cli::*;
use common::ops::pb_ok;
use serde_json::Value;

async fn user_token(db: &std::path::Path, user: &str) -> String {
    pb_ok(db, false, &["tokens", "create", "--user", user])
        .await
        .stdout
        .trim()
        .to_owned()
}

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
    if p.run(&["org", "audit-log", "list", "--help"]).await.code != 0 {
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
