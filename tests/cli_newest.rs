//! The real CLI's newest protocol features, each shown to be used (from the server's request
//! log) and to give what the older path gives: journal v2 with begin-update, stack outputs
//! without an export, and coherence windows. CLIs older than v3.277 skip (they never ask).

mod common;

use std::time::{Duration, Instant};

use common::cli::*;
use common::*;
use serde_json::Value;

fn newest(tc: &Toolchain) -> bool {
    if version_at_least(&tc.version, 3, 277) {
        return true;
    }
    eprintln!(
        "SKIPPED: pulumi {} predates begin-update and stack outputs",
        tc.version
    );
    false
}

/// Lines of the server log for requests with this method whose path ends in `suffix`.
fn requests(log: &str, method: &str, suffix: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(&format!("method={method}")))
        .filter(|l| {
            l.split("path=")
                .nth(1)
                .map(|p| p.split(['}', ' ']).next().unwrap_or(""))
                .is_some_and(|p| p.ends_with(suffix))
        })
        .map(str::to_owned)
        .collect()
}

/// Secrets are encrypted with a fresh nonce each time: compare their presence, not bytes.
fn without_ciphertexts(v: &Value) -> Value {
    match v {
        Value::Object(m) if m.contains_key("4dabf18193072939515e22adb298388d") => {
            Value::String("[secret]".into())
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), without_ciphertexts(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_ciphertexts).collect()),
        other => other.clone(),
    }
}

/// The parts of an exported state that do not depend on when or where it ran (resources
/// finish in parallel, so in no fixed order).
fn essence(export: &Value) -> Vec<String> {
    let mut out: Vec<String> = export["deployment"]["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|r| {
            !r["type"]
                .as_str()
                .unwrap_or("")
                .starts_with("pulumi:providers:")
        })
        .map(|r| {
            format!(
                "{} {} {}",
                r["urn"].as_str().unwrap(),
                without_ciphertexts(&r["inputs"]),
                without_ciphertexts(&r["outputs"])
            )
        })
        .collect();
    out.sort();
    out
}

async fn scenario(p: &Project) {
    p.ok(&["stack", "init", "dev"]).await;
    p.write_program(&items(20, "a", 100), "  first: ${r0.result}\n");
    p.ok(&["up", "--yes"]).await;
    p.write_program(&items(25, "b", 100), "  first: ${r0.result}\n");
    p.ok(&["up", "--yes", "--skip-preview"]).await;
    p.ok(&["refresh", "--yes", "--skip-preview"]).await;
    p.ok(&["preview", "--expect-no-changes"]).await;
}

#[tokio::test]
async fn begin_update_and_journal_v2_are_used_and_agree_with_the_older_path() {
    let tc = require_cli!();
    if !newest(&tc) {
        return;
    }
    let new = ServerProcess::start(&[]).await;
    let p = Project::new(&tc, &new, "proj").await;
    scenario(&p).await;
    let log = new.log(1);
    let begins = requests(&log, "POST", "/begin-update");
    assert!(begins.len() >= 4, "begin-update was not used:\n{log}");
    assert!(
        log.lines().any(|l| l.contains("update started")
            && l.contains("journal_version=2")
            && l.contains("begin=true")),
        "no update was started with journal v2 through begin-update"
    );
    assert!(
        !requests(&log, "PATCH", "/journalentries").is_empty(),
        "no journal entries"
    );
    assert!(requests(&log, "PATCH", "/checkpoint").is_empty());
    // begin-update replaces create, start, export and the stack read of each update (one
    // command of the scenario still exports once on its own).
    let exports = requests(&log, "GET", "/export");
    assert!(exports.len() <= 1, "exports were still made: {exports:#?}");

    // The same program the old way: create + start, and checkpoints instead of a journal.
    let old = ServerProcess::start(&[]).await;
    let mut q = Project::new(&tc, &old, "proj").await;
    q.set_env("PULUMI_DISABLE_BEGIN_UPDATE", "true");
    q.set_env("PULUMI_DISABLE_JOURNALING", "true");
    scenario(&q).await;
    let old_log = old.log(1);
    assert!(requests(&old_log, "POST", "/begin-update").is_empty());
    let stack = stack_path("proj", "dev");
    let (a, b) = (
        new.api().get(&format!("{stack}/export")).await.json(),
        old.api().get(&format!("{stack}/export")).await.json(),
    );
    let (ea, eb) = (essence(&a), essence(&b));
    assert_eq!(ea.len(), eb.len(), "the two paths reached different states");
    for (x, y) in ea.iter().zip(&eb) {
        assert_eq!(x, y, "the two paths reached different states");
    }
    let out_a = p.ok(&["stack", "output", "--json"]).await.json();
    let out_b = q.ok(&["stack", "output", "--json"]).await.json();
    assert_eq!(out_a, out_b);
    let results = |h: Value| -> Vec<(String, String)> {
        h["updates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| {
                (
                    u["kind"].as_str().unwrap().to_owned(),
                    u["result"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let ha = new.api().get(&format!("{stack}/updates")).await.json();
    let hb = old.api().get(&format!("{stack}/updates")).await.json();
    assert_eq!(results(ha), results(hb), "histories differ");
}

#[tokio::test]
async fn stack_references_and_stack_output_read_outputs_without_an_export() {
    let tc = require_cli!();
    if !newest(&tc) {
        return;
    }
    let srv = ServerProcess::start(&[]).await;
    let p = Project::new(&tc, &srv, "producer").await;
    p.write_program(
        &items(30, "p", 2000),
        "  plain: ${r0.result}\n  hidden: ${r0.secret}\n",
    );
    p.ok(&["stack", "init", "dev"]).await;
    p.ok(&["up", "--yes", "--skip-preview"]).await;
    let c = p.sibling("consumer");
    c.write_program(
        "  ref:\n    type: pulumi:pulumi:StackReference\n    properties:\n      name: organization/producer/dev\n",
        "  got: ${ref.outputs[\"plain\"]}\n  gotSecret: ${ref.outputs[\"hidden\"]}\n",
    );
    c.ok(&["stack", "init", "dev"]).await;
    c.ok(&["up", "--yes", "--skip-preview"]).await;
    let o = c
        .ok(&["stack", "output", "--json", "--show-secrets"])
        .await
        .json();
    assert_eq!(o["got"], "ok-p-0");
    assert_eq!(o["gotSecret"], "secret-p-0");
    let o = p
        .ok(&["stack", "output", "--json", "--show-secrets"])
        .await
        .json();
    assert_eq!(o["plain"], "ok-p-0");
    let log = srv.log(1);
    assert!(
        !requests(&log, "GET", "producer/dev/outputs").is_empty(),
        "the reference did not read /outputs"
    );
    assert!(
        requests(&log, "GET", "/export").is_empty(),
        "outputs were still read through an export"
    );
}

#[tokio::test]
async fn a_reader_in_a_coherence_window_waits_for_the_producer_to_finish() {
    let tc = require_cli!();
    if !newest(&tc) {
        return;
    }
    let srv = ServerProcess::start(&[]).await;
    let p = Project::new(&tc, &srv, "producer").await;
    p.write_program(&items(1, "old", 0), "  v: ${r0.result}\n");
    p.ok(&["stack", "init", "dev"]).await;
    p.ok(&["up", "--yes", "--skip-preview"]).await;
    let c = p.sibling("consumer");
    c.write_program(
        "  ref:\n    type: pulumi:pulumi:StackReference\n    properties:\n      name: organization/producer/dev\n",
        "  got: ${ref.outputs[\"v\"]}\n",
    );
    c.ok(&["stack", "init", "dev"]).await;

    // The producer's update in window W is slow; the consumer's update in W reads it.
    let slow = items(4, "new", 0).replace(
        "    properties:\n",
        "    properties:\n      sleepMs: 1500\n",
    );
    p.write_program(&slow, "  v: ${r0.result}\n");
    let producer = p
        .command(&[
            "up",
            "--yes",
            "--skip-preview",
            "--parallel",
            "1",
            "--coherence-window",
            "W1",
        ])
        .spawn()
        .expect("pulumi up");
    let started = Instant::now();
    loop {
        let s = srv.api().get(&stack_path("producer", "dev")).await.json();
        if s.get("currentOperation").is_some() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.ok(&["up", "--yes", "--skip-preview", "--coherence-window", "W1"])
        .await;
    let out = producer.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The consumer read the producer's new state, never its old or a half-applied one.
    let o = c.ok(&["stack", "output", "--json"]).await.json();
    assert_eq!(o["got"], "ok-new-0");
    let log = srv.log(1);
    assert!(
        log.contains("coherence window: outputs pending"),
        "the reader never waited"
    );
    // Without a window the same read does not wait.
    c.ok(&["up", "--yes", "--skip-preview"]).await;
}
