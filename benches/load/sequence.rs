//! `--sequence`: one stack taken through the life the real CLI gives it — create by journal,
//! export, a no-op update, destroy — with the server's peak RSS and CPU per step, to show
//! that no step costs more than linear time and memory in the size of the state.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::common::{proc_cpu_secs, proc_field, resource, stop_server};
use super::{begin_update, call, complete, create_stack, gz, secrets_entry, spawn_server};

const STACK: &str = "organization/proj/big";

struct Step {
    name: &'static str,
    wall: Duration,
    cpu: f64,
    peak_kb: u64,
    sent_gz_bytes: usize,
}

/// The journal of one update, gzip-compressed in batches of 100 entries as the CLI sends it.
/// `entry(i, op, seq)` yields the entries of resource `i`.
fn batches(
    n: usize,
    base: &str,
    mut entry: impl FnMut(usize, i64, &mut i64) -> Vec<Value>,
) -> Vec<Vec<u8>> {
    let mut seq = 1;
    let mut pending = vec![secrets_entry(base, "big")];
    let mut out = Vec::new();
    for i in 0..n {
        pending.extend(entry(i, i as i64 + 1, &mut seq));
        if pending.len() >= 100 {
            out.push(gz(&json!({ "entries": pending })));
            pending.clear();
        }
    }
    if !pending.is_empty() {
        out.push(gz(&json!({ "entries": pending })));
    }
    out
}

fn next(seq: &mut i64) -> i64 {
    *seq += 1;
    *seq
}

/// Runs one journaled update of `kind` sending `journal`, and returns the bytes sent.
async fn update(
    http: &reqwest::Client,
    base: &str,
    auth: &str,
    kind: &str,
    journal: &[Vec<u8>],
) -> usize {
    let stack = format!("{base}/api/stacks/{STACK}");
    let (update, lease) = begin_update(http, &stack, auth, kind, true).await;
    for b in journal {
        call(
            http,
            reqwest::Method::PATCH,
            format!("{update}/journalentries"),
            &lease,
            Some((b.clone(), true)),
        )
        .await;
    }
    complete(http, &update, &lease).await;
    journal.iter().map(Vec::len).sum()
}

/// Measures `work` on the server `pid`: its peak RSS is reset first (`clear_refs` 5), so each
/// step reports its own peak.
async fn measure<F: std::future::Future<Output = usize>>(
    name: &'static str,
    pid: u32,
    work: F,
) -> Step {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let cpu0 = proc_cpu_secs(pid);
    let t = Instant::now();
    let sent_gz_bytes = work.await;
    let wall = t.elapsed();
    // /proc's CPU figures move in clock ticks; let the last one land.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Step {
        name,
        wall,
        cpu: proc_cpu_secs(pid) - cpu0,
        peak_kb: proc_field(pid, "VmHWM:"),
        sent_gz_bytes,
    }
}

pub async fn run(n: usize, pad: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("big.db").display().to_string();
    let http = reqwest::Client::new();
    let (child, base) = spawn_server(&http, &db, "normal").await;
    let pid = child.id();
    let auth = format!("token {}", super::TOKEN);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_kb = proc_field(pid, "VmRSS:");
    create_stack(&http, &base, &auth, "big").await;

    let mut steps = Vec::new();
    let create = batches(n, &base, |i, op, seq| {
        vec![
            json!({"version":1,"kind":0,"sequenceID":next(seq),"operationID":op,
                "operation":{"resource":resource(i, "a", 0),"type":"creating"}}),
            json!({"version":1,"kind":1,"sequenceID":next(seq),"operationID":op,
                "state":resource(i, "a", pad)}),
        ]
    });
    steps.push(
        measure(
            "create (journal)",
            pid,
            update(&http, &base, &auth, "update", &create),
        )
        .await,
    );
    drop(create);

    let mut state_bytes = 0;
    let export = async {
        let r = http
            .get(format!("{base}/api/stacks/{STACK}/export"))
            .header("Authorization", &auth)
            .header("Accept-Encoding", "gzip")
            .send()
            .await
            .expect("export");
        assert!(r.status().is_success(), "export: {}", r.status());
        let body = r.bytes().await.expect("export body");
        state_bytes = super::gunzip_len(&body);
        0
    };
    steps.push(measure("export", pid, export).await);

    // A same step: a begin without an operation, then the unchanged state replacing the
    // base's resource.
    let noop = batches(n, &base, |i, op, seq| {
        vec![
            json!({"version":1,"kind":0,"sequenceID":next(seq),"operationID":op}),
            json!({"version":1,"kind":1,"sequenceID":next(seq),"operationID":op,
                "removeOld":i,"state":resource(i, "a", pad)}),
        ]
    });
    steps.push(
        measure(
            "no-op update",
            pid,
            update(&http, &base, &auth, "update", &noop),
        )
        .await,
    );
    drop(noop);

    let destroy = batches(n, &base, |i, op, seq| {
        vec![
            json!({"version":1,"kind":0,"sequenceID":next(seq),"operationID":op,
                "operation":{"resource":resource(i, "a", 0),"type":"deleting"}}),
            json!({"version":1,"kind":1,"sequenceID":next(seq),"operationID":op,"removeOld":i}),
        ]
    });
    steps.push(
        measure(
            "destroy",
            pid,
            update(&http, &base, &auth, "destroy", &destroy),
        )
        .await,
    );
    drop(destroy);
    stop_server(child);

    let mb = |b: f64| b / 1e6;
    let state_mb = mb(state_bytes as f64);
    let target = 2.0 * state_mb + 32.0;
    println!("### One stack of {n} resources through its life");
    println!();
    println!(
        "~{pad} B padding per resource: {state_mb:.1} MB of state (the export's text). \
         Journal batches of 100 entries sent one after another, as fast as the server answers. \
         Server RSS at idle {:.1} MB; peak per step measured from a reset high-water mark.",
        idle_kb as f64 / 1024.0
    );
    println!();
    println!(
        "| step | wall s | server CPU s | µs CPU per resource | sent (gzip) MB | server peak RSS MB | target ≤ 2 × state + 32 = {target:.0} MB |"
    );
    println!("|---|---|---|---|---|---|---|");
    for s in &steps {
        let peak = s.peak_kb as f64 / 1024.0;
        println!(
            "| {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {} |",
            s.name,
            s.wall.as_secs_f64(),
            s.cpu,
            s.cpu * 1e6 / n as f64,
            mb(s.sent_gz_bytes as f64),
            peak,
            if peak <= target { "met" } else { "missed" }
        );
    }
    println!();
}
