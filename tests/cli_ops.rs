//! The operator commands next to the real `pulumi` CLI: exports identical to the CLI's, and a
//! disaster recovery after which the CLI carries on as if nothing happened.

mod common;

use std::time::Duration;

use common::cli::*;
use common::ops::*;
use common::*;
use serde_json::Value;

#[tokio::test]
async fn stack_export_is_what_pulumi_stack_export_prints() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&[]).await;
    let db = srv.db();
    let p = Project::new(&tc, &srv, "proj").await;
    p.write_program(&items(5, "a", 50), "  s: ${r0.secret}\n  html: \"<a&b>\"\n");
    p.ok(&["stack", "init", "dev"]).await;
    p.ok(&["config", "set", "--secret", "pw", "hunter2"]).await;
    p.ok(&["up", "--yes"]).await;
    p.write_program(&items(6, "b", 50), "  s: ${r0.secret}\n  html: \"<a&b>\"\n");
    p.ok(&["up", "--yes"]).await;

    let theirs = p.ok(&["stack", "export"]).await.stdout;
    let ours = pb_ok(&db, false, &["stack", "export", "organization/proj/dev"])
        .await
        .stdout;
    assert_eq!(ours, theirs, "pbackend and pulumi exports differ");
    let theirs = p.ok(&["stack", "export", "--version", "1"]).await.stdout;
    let ours = pb_ok(
        &db,
        false,
        &["stack", "export", "organization/proj/dev", "--version", "1"],
    )
    .await
    .stdout;
    assert_eq!(ours, theirs);

    // With secrets shown the CLI re-encodes the whole deployment; the content is the same.
    let theirs: Value = p.ok(&["stack", "export", "--show-secrets"]).await.json();
    let ours: Value = serde_json::from_str(
        &pb_ok(
            &db,
            true,
            &["stack", "export", "organization/proj/dev", "--show-secrets"],
        )
        .await
        .stdout,
    )
    .unwrap();
    assert_eq!(
        ours["deployment"]["resources"],
        theirs["deployment"]["resources"]
    );
    assert!(ours.to_string().contains("secret-b-0"));

    // And an export with secrets shown imports back (into a new stack) and reads the same.
    let file = srv.dir.path().join("shown.json");
    std::fs::write(&file, ours.to_string()).unwrap();
    pb_ok(
        &db,
        true,
        &[
            "stack",
            "import",
            "organization/proj/copy",
            file.to_str().unwrap(),
            "--create",
        ],
    )
    .await;
    p.ok(&["stack", "select", "copy"]).await;
    let o = p
        .ok(&["stack", "output", "--json", "--show-secrets"])
        .await
        .json();
    assert_eq!(o["s"], "secret-b-0");
}

#[tokio::test]
async fn disaster_recovery_and_commands_during_a_running_update() {
    let tc = require_cli!();
    let mut srv = ServerProcess::start(&[]).await;
    let db = srv.db();
    let p = Project::new(&tc, &srv, "proj").await;
    p.write_program(&items(8, "a", 100), "  s: ${r0.secret}\n");
    p.ok(&["stack", "init", "dev"]).await;
    p.ok(&["up", "--yes"]).await;

    // Maintenance commands while an update runs on the live server.
    let slow =
        items(4, "slow", 0).replace("    properties:\n", "    properties:\n      sleepMs: 700\n");
    let mut prog = items(8, "a", 100);
    prog.push_str(&slow.replace("  r", "  slow"));
    p.write_program(&prog, "  s: ${r0.secret}\n");
    let running = p
        .command(&["up", "--yes", "--skip-preview", "--parallel", "1"])
        .spawn()
        .unwrap();
    let mut locked = false;
    for _ in 0..100 {
        let ls: Value = serde_json::from_str(
            &pb_ok(&db, false, &["stack", "ls", "--output", "json"])
                .await
                .stdout,
        )
        .unwrap();
        if !ls[0]["lock"].is_null() {
            locked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(locked, "stack ls never showed the running update");
    let mid = srv.dir.path().join("mid.pbk");
    pb_ok(
        &db,
        false,
        &["export", "--all", "-o", mid.to_str().unwrap()],
    )
    .await;
    pb_ok(&db, true, &["verify"]).await;
    let up = running.wait_with_output().await.unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );

    // Disaster: back up, lose the database, restore, carry on.
    let archive = srv.dir.path().join("backup.pbk");
    pb_ok(
        &db,
        false,
        &["export", "--all", "-o", archive.to_str().unwrap()],
    )
    .await;
    let before = srv
        .api()
        .get(&format!("{}/export", stack_path("proj", "dev")))
        .await
        .json();
    srv.stop().await;
    wipe_database(&db);
    pb_ok(&db, true, &["import", "--all", archive.to_str().unwrap()]).await;
    assert!(srv.try_start().await);
    assert_eq!(
        srv.api()
            .get(&format!("{}/export", stack_path("proj", "dev")))
            .await
            .json(),
        before
    );
    p.ok(&["preview", "--expect-no-changes"]).await;
    let o = p
        .ok(&["stack", "output", "--json", "--show-secrets"])
        .await
        .json();
    assert_eq!(o["s"], "secret-a-0");
    p.write_program(&items(9, "a", 100), "  s: ${r0.secret}\n");
    let out = p.ok(&["up", "--yes"]).await;
    assert!(
        out.stdout.contains("1 created") && out.stdout.contains("4 deleted"),
        "{}",
        out.all()
    );
    let h = p.ok(&["stack", "history", "--json"]).await.json();
    assert_eq!(h.as_array().unwrap().len(), 3);
}
