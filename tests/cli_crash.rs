//! The real CLI against a server killed with SIGKILL in the middle of a 300-resource
//! `pulumi up` and restarted at once, round after round: each update either completes
//! (the CLI's retries ride out the restart) or fails cleanly, and the stack is usable after.
//!
//! `PBACKEND_CLI_CRASH_ROUNDS` sets the rounds (default 2; `scripts/crash-loop.sh` runs 10).

mod common;

use std::time::Duration;

use common::cli::*;
use common::ops::pb;
use common::*;

const RESOURCES: usize = 300;

#[tokio::test]
async fn kill_9_during_pulumi_up_then_the_stack_is_usable() {
    let tc = require_cli!();
    let rounds: usize = std::env::var("PBACKEND_CLI_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mut srv = ServerProcess::start(&[]).await;
    let stack = stack_path("proj", "dev");
    let p = Project::new(&tc, &srv, "proj").await;
    p.ok(&["stack", "init", "dev"]).await;
    let (mut completed, mut failed) = (0, 0);
    let mut rng = 0x2545f4914f6cdd1du64;
    for round in 0..rounds {
        // Every round changes every resource: 300 updates in place.
        p.write_program(&items(RESOURCES, &format!("r{round}"), 200), "");
        let running = p
            .command(&["up", "--yes", "--skip-preview"])
            .spawn()
            .expect("pulumi up");
        wait_running(&srv.api(), &stack).await;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(200 + rng % 2500)).await;
        srv.kill().await;
        srv.restart().await;
        let up = running.wait_with_output().await.unwrap();
        if up.status.success() {
            completed += 1;
        } else {
            // A clean failure: the CLI says why, and the stack can be taken over.
            failed += 1;
            let err = String::from_utf8_lossy(&up.stderr).into_owned();
            assert!(!err.trim().is_empty(), "round {round}: failed silently");
            let out = p.run(&["cancel", "--yes"]).await;
            let _ = out;
        }
        // Usable: the state exports and verifies, and the next update converges.
        srv.api().get(&format!("{stack}/export")).await.ok();
        let verify = pb(&srv.db(), true, &["verify"]).await;
        assert_eq!(verify.code, 0, "round {round}: {}", verify.all());
        p.ok(&["up", "--yes", "--skip-preview", "--refresh"]).await;
        p.ok(&["preview", "--expect-no-changes"]).await;
        let e = srv.api().get(&format!("{stack}/export")).await.json();
        let n = e["deployment"]["resources"].as_array().unwrap().len();
        assert_eq!(n, RESOURCES + 2, "round {round}: {n} resources");
    }
    println!(
        "CLI crash loop: {rounds} rounds, {completed} updates completed across a kill -9, {failed} failed cleanly"
    );
}

/// SIGTERM in the middle of an update: the server finishes what it has in hand, exits by
/// itself within its grace period, and once it is back the CLI's retries carry the same
/// `pulumi up` to the end with nothing lost.
#[tokio::test]
async fn sigterm_during_pulumi_up_then_the_update_completes_after_the_restart() {
    let tc = require_cli!();
    let mut srv = ServerProcess::start(&["--shutdown-grace", "10s"]).await;
    let stack = stack_path("proj", "dev");
    let p = Project::new(&tc, &srv, "proj").await;
    p.ok(&["stack", "init", "dev"]).await;
    p.write_program(&items(RESOURCES, "t", 200), "");
    let running = p
        .command(&["up", "--yes", "--skip-preview"])
        .spawn()
        .expect("pulumi up");
    wait_running(&srv.api(), &stack).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    srv.terminate();
    let code = tokio::time::timeout(Duration::from_secs(30), srv.wait_exit())
        .await
        .expect("the server exits within its grace period");
    assert_eq!(code, Some(0), "{}", srv.log(1));
    assert!(srv.log(1).contains("shutting down"), "{}", srv.log(1));
    srv.restart().await;
    let up = running.wait_with_output().await.unwrap();
    assert!(
        up.status.success(),
        "the update did not survive the restart: {}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let verify = pb(&srv.db(), true, &["verify"]).await;
    assert_eq!(verify.code, 0, "{}", verify.all());
    let e = srv.api().get(&format!("{stack}/export")).await.json();
    let n = e["deployment"]["resources"].as_array().unwrap().len();
    assert_eq!(n, RESOURCES + 2, "{n} resources");
    p.ok(&["preview", "--expect-no-changes"]).await;
    let history = p.ok(&["stack", "history", "--json"]).await.json();
    assert_eq!(history[0]["result"], "succeeded", "{history}");
}
