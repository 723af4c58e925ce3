//! Two `pbackend serve` replicas on one PostgreSQL database behind a real reverse proxy
//! (HAProxy, round-robin: every request may land on either replica), driven by the real CLI:
//! concurrent `pulumi up`s in journal and delta modes end with correct states and complete
//! histories; a replica killed with SIGKILL in the middle of an update leaves the CLI's
//! retries to the other one, the update completes and `pbackend verify` is clean.
//!
//! Needs the CLI toolchain, PostgreSQL and HAProxy; skipped, saying so, without them.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::cli::*;
use common::ops::pb;
use common::proxy::{Haproxy, Routing};
use common::*;

/// Both replicas use deltas for anything over 1 KiB so the non-journaling CLIs send them.
const REPLICA_FLAGS: &[&str] = &["--delta-cutoff-bytes", "1024"];

struct Service {
    db: PathBuf,
    replicas: Vec<ServerProcess>,
    proxy: Haproxy,
}

async fn service(routing: Routing) -> Option<Service> {
    let pg = pg::server()?;
    let bin = proxy::available()?;
    let db = PathBuf::from(pg.fresh_database());
    let a = ServerProcess::start_on(db.clone(), REPLICA_FLAGS).await;
    let b = ServerProcess::start_on(db.clone(), REPLICA_FLAGS).await;
    let proxy = Haproxy::start(&bin, &[a.port, b.port], routing).await;
    Some(Service {
        db,
        replicas: vec![a, b],
        proxy,
    })
}

/// Successful requests to routes ending in `suffix` in a replica's debug log.
fn served(log: &str, suffix: &str) -> usize {
    log.lines()
        .filter(|l| logged_path(l).is_some_and(|p| p.ends_with(suffix)) && l.contains("status=2"))
        .count()
}

fn resource_count(export: &serde_json::Value) -> usize {
    export["deployment"]["resources"]
        .as_array()
        .map(|r| r.len())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ups_through_a_round_robin_proxy() {
    let tc = require_cli!();
    let Some(svc) = service(Routing::RoundRobin).await else {
        return;
    };
    const UPS: usize = 3;
    let mut tasks = tokio::task::JoinSet::new();
    for (name, journal) in [("pj0", true), ("pj1", true), ("pd0", false), ("pd1", false)] {
        let mut p = Project::at(&tc, &svc.proxy.url, name).await;
        if !journal {
            p.set_env("PULUMI_DISABLE_JOURNALING", "true");
        }
        tasks.spawn(async move {
            p.ok(&["stack", "init", "dev"]).await;
            for round in 0..UPS {
                p.write_program(&items(20 + round, &format!("{name}-{round}"), 600), "");
                p.ok(&["up", "--yes", "--skip-preview"]).await;
            }
            p.ok(&["preview", "--expect-no-changes"]).await;
            let history = p.ok(&["stack", "history", "--json"]).await.json();
            assert_eq!(
                history.as_array().map(|h| h.len()),
                Some(UPS),
                "{name}: {history}"
            );
            p
        });
    }
    let mut projects = vec![];
    while let Some(p) = tasks.join_next().await {
        projects.push(p.expect("a project's updates"));
    }
    let api = Api::new(&svc.proxy.url, CLI_TOKEN);
    for p in &projects {
        let e = api
            .get(&format!("{}/export", stack_path(&p.name, "dev")))
            .await
            .json();
        assert_eq!(resource_count(&e), 20 + UPS - 1 + 2, "{}", p.name);
    }
    // Round-robin really spread each kind of write over both replicas.
    for (i, r) in svc.replicas.iter().enumerate() {
        let log = r.log(1);
        assert!(
            served(&log, "/journalentries") > 0,
            "replica {i} served no journal"
        );
        assert!(
            served(&log, "/checkpointdelta") > 0,
            "replica {i} served no delta"
        );
    }
    let verify = pb(&svc.db, true, &["verify"]).await;
    assert_eq!(verify.code, 0, "{}", verify.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_update_leaves_the_update_to_the_other() {
    let tc = require_cli!();
    let Some(mut svc) = service(Routing::RoundRobin).await else {
        return;
    };
    const RESOURCES: usize = 200;
    let api = Api::new(&svc.proxy.url, CLI_TOKEN);
    for (round, journal) in [true, false].into_iter().enumerate() {
        let name = if journal { "kj" } else { "kd" };
        let mut p = Project::at(&tc, &svc.proxy.url, name).await;
        if !journal {
            p.set_env("PULUMI_DISABLE_JOURNALING", "true");
        }
        p.ok(&["stack", "init", "dev"]).await;
        let stack = stack_path(name, "dev");
        p.write_program(&items(RESOURCES, "v1", 300), "");
        let mut running = p
            .command(&["up", "--yes", "--skip-preview"])
            .spawn()
            .expect("pulumi up");
        let started = Instant::now();
        loop {
            let s = api.get(&stack).await;
            if s.status == 200 && s.json().get("currentOperation").is_some() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no update started"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let victim = round % 2;
        svc.replicas[victim].kill().await;
        assert!(
            running.try_wait().expect("pulumi up").is_none(),
            "{name}: the update ended before the kill; give it more resources"
        );
        let up = running.wait_with_output().await.expect("pulumi up ends");
        assert!(
            up.status.success(),
            "{name}: the update did not complete on the surviving replica:\n{}\n{}",
            String::from_utf8_lossy(&up.stdout),
            String::from_utf8_lossy(&up.stderr)
        );
        let verify = pb(&svc.db, true, &["verify"]).await;
        assert_eq!(verify.code, 0, "{}", verify.all());
        p.ok(&["preview", "--expect-no-changes"]).await;
        let e = api.get(&format!("{stack}/export")).await.json();
        assert_eq!(resource_count(&e), RESOURCES + 2, "{name}");
        let history = p.ok(&["stack", "history", "--json"]).await.json();
        assert_eq!(history[0]["result"], "succeeded", "{history}");
        // The killed replica comes back and joins the rotation again.
        svc.replicas[victim].restart().await;
    }
}
