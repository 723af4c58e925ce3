//! The real `pulumi` CLI in each state-upload mode: journaling (the default of CLIs from
//! 3.225 on), journaling switched off (verbatim checkpoints), and deltas forced by a tiny
//! cutoff. Each run checks the routes the CLI used (server log) and that the state the server
//! built is the one the CLI expects.

mod common;

use common::cli::*;
use common::*;

/// Requests to routes ending in `suffix`, by status, from the server's debug log.
fn route_statuses(log: &str, suffix: &str) -> Vec<String> {
    log.lines()
        .filter(|l| logged_path(l).is_some_and(|p| p.ends_with(suffix)) && l.contains("status="))
        .filter_map(|l| l.split("status=").nth(1))
        .map(|s| s.split_whitespace().next().unwrap_or("").to_owned())
        .collect()
}

fn count_ok(log: &str, suffix: &str) -> usize {
    route_statuses(log, suffix)
        .iter()
        .filter(|s| s.starts_with('2'))
        .count()
}

fn refused(log: &str, suffix: &str) -> Vec<String> {
    route_statuses(log, suffix)
        .into_iter()
        .filter(|s| !s.starts_with('2'))
        .collect()
}

/// Creates, changes (in place, replace, add, delete), refreshes and partly destroys a stack,
/// checking after each step that the server's state is what the CLI expects.
async fn exercise(p: &Project, srv: &ServerProcess) {
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    p.ok(&["stack", "init", "dev"]).await;
    let outputs = "  s: ${r0.secret}\n";
    p.write_program(&items(30, "a", 2000), outputs);
    p.ok(&["up", "--yes"]).await;
    p.ok(&["preview", "--expect-no-changes"]).await;

    let mut prog = items(32, "a", 2000);
    prog = prog.replace("value: a-1\n", "value: changed-1\n");
    prog = prog.replace("value: a-2\n", "value: a-2\n      key: k2\n");
    let prog = prog.replace(
        "  r5:\n    type: pbtest:index:Item\n    properties:\n      value: a-5\n      padBytes: 2000\n",
        "",
    );
    p.write_program(&prog, outputs);
    p.ok(&["up", "--yes"]).await;
    p.ok(&["preview", "--expect-no-changes"]).await;
    p.ok(&["up", "--yes", "--refresh"]).await;
    p.ok(&["refresh", "--yes"]).await;
    p.ok(&["preview", "--expect-no-changes"]).await;

    // The CLI verifies the integrity of every state it reads (the previews above would fail
    // on a bad one); here the server's state also has exactly the resources expected.
    let server = api.get(&format!("{stack}/export")).await.json();
    let n = server["deployment"]["resources"].as_array().unwrap().len();
    assert_eq!(n, 33, "31 items, the stack and the provider");
    let o = p
        .ok(&["stack", "output", "--json", "--show-secrets"])
        .await
        .json();
    assert_eq!(o["s"], "secret-a-0");

    p.write_program(&items(3, "a", 2000), outputs);
    p.ok(&["up", "--yes", "--skip-preview"]).await;
    p.ok(&["preview", "--expect-no-changes"]).await;
    p.ok(&["destroy", "--yes"]).await;
    let server = api.get(&format!("{stack}/export")).await.json();
    assert!(server["deployment"].get("resources").is_none(), "{server}");
}

#[tokio::test]
async fn journaling_on() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&[]).await;
    let p = Project::new(&tc, &srv, "proj").await;
    exercise(&p, &srv).await;
    let log = srv.log(1);
    if version_at_least(&tc.version, 3, 225) {
        assert!(
            count_ok(&log, "/journalentries") > 0,
            "journaling was not used"
        );
        assert_eq!(count_ok(&log, "/checkpoint"), 0);
        assert_eq!(count_ok(&log, "/checkpointverbatim"), 0);
    }
    assert!(refused(&log, "/journalentries").is_empty());
}

#[tokio::test]
async fn journaling_off_uses_checkpoints() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&[]).await;
    let mut p = Project::new(&tc, &srv, "proj").await;
    p.set_env("PULUMI_DISABLE_JOURNALING", "true");
    exercise(&p, &srv).await;
    let log = srv.log(1);
    assert_eq!(count_ok(&log, "/journalentries"), 0);
    assert!(
        count_ok(&log, "/checkpointverbatim") + count_ok(&log, "/checkpoint") > 0,
        "no checkpoints were sent"
    );
}

#[tokio::test]
async fn deltas_forced_by_a_small_cutoff() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&["--delta-cutoff-bytes", "1024"]).await;
    let mut p = Project::new(&tc, &srv, "proj").await;
    p.set_env("PULUMI_DISABLE_JOURNALING", "true");
    exercise(&p, &srv).await;
    let log = srv.log(1);
    if version_at_least(&tc.version, 3, 180) {
        assert!(
            count_ok(&log, "/checkpointdelta") > 10,
            "deltas were not used"
        );
    }
    assert!(
        refused(&log, "/checkpointdelta").is_empty(),
        "a delta was refused (the CLI fell back to a full checkpoint)"
    );
}
