//! The real `pulumi` CLI: concurrent updates, cancel, and a server that dies mid-update.

mod common;

use std::time::{Duration, Instant};

use common::cli::*;
use common::*;

/// `n` items that each take `ms` to create or update.
fn slow_items(n: usize, prefix: &str, ms: u64) -> String {
    let mut s = items(n, prefix, 0);
    s = s.replace(
        "    properties:\n",
        &format!("    properties:\n      sleepMs: {ms}\n"),
    );
    s
}

#[tokio::test]
async fn two_concurrent_ups_exactly_one_proceeds() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&[]).await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    let p = Project::new(&tc, &srv, "proj").await;
    p.ok(&["stack", "init", "dev"]).await;
    p.write_program(&slow_items(6, "a", 500), "");

    let first = p
        .command(&["up", "--yes", "--skip-preview", "--parallel", "1"])
        .spawn()
        .expect("pulumi up");
    wait_running(&api, &stack).await;
    let second = p.run(&["up", "--yes", "--skip-preview"]).await;
    assert_ne!(second.code, 0, "{}", second.all());
    assert!(
        second
            .all()
            .contains("[409] Conflict: Another update is currently in progress."),
        "{}",
        second.all()
    );
    let first = first.wait_with_output().await.unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let h = api.get(&format!("{stack}/updates")).await.json();
    let updates = h["updates"].as_array().unwrap();
    assert_eq!(updates.len(), 1, "{h}");
    assert_eq!(updates[0]["result"], "succeeded");
    p.ok(&["preview", "--expect-no-changes"]).await;
}

#[tokio::test]
async fn cancel_stops_a_running_update() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&[]).await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    let p = Project::new(&tc, &srv, "proj").await;
    p.ok(&["stack", "init", "dev"]).await;
    p.write_program(&slow_items(20, "a", 400), "");
    let running = p
        .command(&["up", "--yes", "--skip-preview", "--parallel", "1"])
        .spawn()
        .expect("pulumi up");
    wait_running(&api, &stack).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = p.ok(&["cancel", "--yes"]).await;
    assert!(out.all().contains("cancel"), "{}", out.all());
    let up = running.wait_with_output().await.unwrap();
    assert!(!up.status.success(), "the cancelled update must fail");

    let h = api.get(&format!("{stack}/updates")).await.json();
    assert_eq!(h["updates"][0]["result"], "failed");
    assert!(
        api.get(&stack)
            .await
            .json()
            .get("currentOperation")
            .is_none()
    );
    // The stack is free and the state is consistent: the next update converges.
    p.write_program(&items(20, "a", 0), "");
    p.ok(&["up", "--yes", "--skip-preview", "--refresh"]).await;
    p.ok(&["preview", "--expect-no-changes"]).await;
}

#[tokio::test]
async fn server_restart_mid_update_is_survived() {
    let tc = require_cli!();
    let mut srv = ServerProcess::start(&[]).await;
    let stack = stack_path("proj", "dev");
    let p = Project::new(&tc, &srv, "proj").await;
    p.ok(&["stack", "init", "dev"]).await;
    p.write_program(&slow_items(12, "a", 300), "");
    let running = p
        .command(&["up", "--yes", "--skip-preview", "--parallel", "1"])
        .spawn()
        .expect("pulumi up");
    wait_running(&srv.api(), &stack).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // A hard crash, back within the CLI's retry window.
    srv.restart().await;
    let up = running.wait_with_output().await.unwrap();
    assert!(
        up.status.success(),
        "the CLI should ride out a quick restart:\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let e = srv.api().get(&format!("{stack}/export")).await.json();
    let n = e["deployment"]["resources"].as_array().unwrap().len();
    assert_eq!(n, 14, "{e}");
    p.ok(&["preview", "--expect-no-changes"]).await;
}

#[tokio::test]
async fn server_down_longer_than_retries_then_lease_expiry_frees_the_stack() {
    let tc = require_cli!();
    // The CLI spends ~40 s retrying before it gives up; the lease must outlive that so the
    // test can see the stack still locked afterwards.
    let mut srv = ServerProcess::start(&["--lease-duration", "60s"]).await;
    let stack = stack_path("proj", "dev");
    let p = Project::new(&tc, &srv, "proj").await;
    p.ok(&["stack", "init", "dev"]).await;
    p.write_program(&slow_items(10, "a", 300), "");
    let running = p
        .command(&["up", "--yes", "--skip-preview", "--parallel", "1"])
        .spawn()
        .expect("pulumi up");
    wait_running(&srv.api(), &stack).await;
    let lease_start = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    srv.kill().await;
    let up = running.wait_with_output().await.unwrap();
    assert!(
        !up.status.success(),
        "the CLI cannot finish without the server"
    );
    srv.restart().await;
    // Not corrupted: the state parses and holds what was acknowledged.
    let e = srv.api().get(&format!("{stack}/export")).await;
    e.ok();
    let _ = e.json();
    // Still locked until the lease runs out...
    let out = p.run(&["up", "--yes", "--skip-preview"]).await;
    if lease_start.elapsed() < Duration::from_secs(55) {
        assert!(
            out.all()
                .contains("Another update is currently in progress"),
            "{}",
            out.all()
        );
    }
    // ...then a new update takes over and converges.
    tokio::time::sleep(Duration::from_secs(62).saturating_sub(lease_start.elapsed())).await;
    p.write_program(&items(10, "a", 0), "");
    p.ok(&["up", "--yes", "--skip-preview", "--refresh"]).await;
    p.ok(&["preview", "--expect-no-changes"]).await;
    let h = srv.api().get(&format!("{stack}/updates")).await.json();
    let updates = h["updates"].as_array().unwrap();
    assert_eq!(updates.last().unwrap()["result"], "failed", "{h}");
    assert_eq!(updates.last().unwrap()["version"], 1, "{h}");
    assert_eq!(updates[0]["result"], "succeeded", "{h}");
}
