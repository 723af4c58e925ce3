//! What a CLI version asks of the server: one `pulumi up` and one stack reference read,
//! then the server's request log says which protocol the CLI used. Prints a line
//! `PROTOCOL <version> journal=<v> begin-update=<yes|no> outputs=<yes|no> checkpoints=<mode>`
//! that `scripts/cli-compat.sh` puts in reference/cli-compat.md.

mod common;

use common::cli::*;

fn count(log: &str, method: &str, suffix: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(&format!("method={method}")) && l.contains(" request served"))
        .filter(|l| {
            l.split("path=")
                .nth(1)
                .and_then(|p| p.split(['}', ' ']).next())
                .is_some_and(|p| p.ends_with(suffix))
        })
        .count()
}

#[tokio::test]
async fn protocol_probe() {
    let tc = require_cli!();
    let srv = ServerProcess::start(&["--delta-cutoff-bytes", "1024"]).await;
    let p = Project::new(&tc, &srv, "producer").await;
    p.write_program(&items(5, "p", 300), "  v: ${r0.result}\n");
    p.ok(&["stack", "init", "dev"]).await;
    p.ok(&["up", "--yes", "--skip-preview"]).await;
    let c = p.sibling("consumer");
    c.write_program(
        "  ref:\n    type: pulumi:pulumi:StackReference\n    properties:\n      name: organization/producer/dev\n",
        "  got: ${ref.outputs[\"v\"]}\n",
    );
    c.ok(&["stack", "init", "dev"]).await;
    c.ok(&["up", "--yes", "--skip-preview"]).await;
    let o = c.ok(&["stack", "output", "--json"]).await.json();
    assert_eq!(o["got"], "ok-p-0");

    let log = srv.log(1);
    let journal = log
        .lines()
        .filter(|l| l.contains("update started"))
        .filter_map(|l| l.split("journal_version=").nth(1))
        .filter_map(|v| v.split_whitespace().next())
        .max()
        .unwrap_or("0")
        .to_owned();
    let mode = if count(&log, "PATCH", "/journalentries") > 0 {
        "journal"
    } else if count(&log, "PATCH", "/checkpointdelta") > 0 {
        "delta"
    } else if count(&log, "PATCH", "/checkpointverbatim") > 0 {
        "verbatim"
    } else {
        "whole"
    };
    let yes = |n: usize| if n > 0 { "yes" } else { "no" };
    println!(
        "PROTOCOL {} journal={} begin-update={} outputs={} checkpoints={}",
        tc.version,
        journal,
        yes(count(&log, "POST", "/begin-update")),
        yes(count(&log, "GET", "producer/dev/outputs")),
        mode
    );
}
