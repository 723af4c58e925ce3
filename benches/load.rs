//! Load driver: many concurrent journaled updates against a `pbackend serve` process (the
//! release binary), the way the CLI sends them — one batch at a time per update, 100 entries
//! per batch, gzip bodies — without the CLI. Prints entries/s, batch latency percentiles,
//! server CPU, idle and peak RSS as a Markdown table.
//!
//!     cargo bench --bench load [-- UPDATES RESOURCES_PER_UPDATE PAD_BYTES]
//!
//! Defaults: 50 concurrent updates on 50 stacks, 1,000 resources each, 400-byte padding.

#[path = "common.rs"]
mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "pul-bench-token-000000000000000000000000";

fn proc_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// User + system CPU seconds of a process.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn gz(v: &Value) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&serde_json::to_vec(v).unwrap()).unwrap();
    e.finish().unwrap()
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    auth: &str,
    body: Option<(Vec<u8>, bool)>,
) -> Value {
    let mut r = http
        .request(method, url.clone())
        .header("Authorization", auth)
        .header("Content-Type", "application/json")
        .header("Accept-Encoding", "gzip");
    if let Some((b, gzipped)) = body {
        if gzipped {
            r = r.header("Content-Encoding", "gzip");
        }
        r = r.body(b);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "{url}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let updates = *args.first().unwrap_or(&50);
    let per_update = *args.get(1).unwrap_or(&1000);
    let pad = *args.get(2).unwrap_or(&400);

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pbackend"))
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--single-tenant-token",
            TOKEN,
            "--log-level",
            "warn",
        ])
        .arg("--db")
        .arg(dir.path().join("load.db"))
        .arg("--master-key")
        .arg("00".repeat(32))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("pbackend starts");
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http
            .get(format!("{base}/api/capabilities"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = proc_field(pid, "VmRSS:");
    let auth = format!("token {TOKEN}");

    // Payload: the same journal for every update (URNs are per stack anyway).
    let mut seq = 1;
    let mut entries = vec![
        json!({"version":1,"kind":6,"sequenceID":1,"operationID":0,"removeOld":null,"removeNew":null,
        "secretsProvider":{"type":"service","state":{"url":base,"owner":"organization","project":"proj","stack":"s"}}}),
    ];
    entries.extend(create_entries(0, per_update, pad, &mut seq));
    let batches: Vec<Vec<u8>> = entries
        .chunks(100)
        .map(|c| gz(&json!({ "entries": c })))
        .collect();
    let raw_state: usize = serde_json::to_vec(&entries).unwrap().len() / 2;
    let events = gz(
        &json!({"events": [{"sequence": 0, "timestamp": 1, "stdoutEvent": {"message": "x", "color": "raw"}}]}),
    );

    for i in 0..updates {
        call(
            &http,
            reqwest::Method::POST,
            format!("{base}/api/stacks/organization/proj"),
            &auth,
            Some((
                json!({"stackName": format!("s{i}")})
                    .to_string()
                    .into_bytes(),
                false,
            )),
        )
        .await;
    }

    let cpu0 = cpu_secs(pid);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..updates {
        let http = http.clone();
        let base = base.clone();
        let auth = auth.clone();
        let batches = batches.clone();
        let events = events.clone();
        tasks.push(tokio::spawn(async move {
            let stack = format!("{base}/api/stacks/organization/proj/s{i}");
            let id = call(
                &http,
                reqwest::Method::POST,
                format!("{stack}/update"),
                &auth,
                Some((
                    json!({"options": {"dryRun": false}})
                        .to_string()
                        .into_bytes(),
                    false,
                )),
            )
            .await["updateID"]
                .as_str()
                .unwrap()
                .to_owned();
            let token = call(
                &http,
                reqwest::Method::POST,
                format!("{stack}/update/{id}"),
                &auth,
                Some((json!({"journalVersion": 1}).to_string().into_bytes(), false)),
            )
            .await["token"]
                .as_str()
                .unwrap()
                .to_owned();
            let lease = format!("update-token {token}");
            let mut lat = Vec::with_capacity(batches.len());
            for (n, b) in batches.iter().enumerate() {
                let t = Instant::now();
                call(
                    &http,
                    reqwest::Method::PATCH,
                    format!("{stack}/update/{id}/journalentries"),
                    &lease,
                    Some((b.clone(), true)),
                )
                .await;
                lat.push(t.elapsed());
                if n % 10 == 0 {
                    call(
                        &http,
                        reqwest::Method::POST,
                        format!("{stack}/update/{id}/events/batch"),
                        &lease,
                        Some((events.clone(), true)),
                    )
                    .await;
                }
            }
            let t = Instant::now();
            call(
                &http,
                reqwest::Method::POST,
                format!("{stack}/update/{id}/complete"),
                &lease,
                Some((br#"{"status":"succeeded"}"#.to_vec(), false)),
            )
            .await;
            (lat, t.elapsed())
        }));
    }
    let mut lat = Vec::new();
    let mut completes = Vec::new();
    for t in tasks {
        let (l, c) = t.await.unwrap();
        lat.extend(l);
        completes.push(c);
    }
    let wall = t0.elapsed();
    let cpu = cpu_secs(pid) - cpu0;
    let peak_rss = proc_field(pid, "VmHWM:");
    let total_entries = (entries.len() * updates) as f64;
    let s = Stats::new(lat);
    let c = Stats::new(completes);
    let _ = child.kill();
    let _ = child.wait();

    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!(
        "| concurrent updates × entries each | {updates} × {} ({} resources, ~{} B padding) | 50 updates |",
        entries.len(),
        per_update,
        pad
    );
    println!("| wall time | {:.2} s | |", wall.as_secs_f64());
    println!(
        "| sustained journal entries/s | {:.0} | ≥ 5,000 |",
        total_entries / wall.as_secs_f64()
    );
    println!(
        "| batch latency p50 / p99 / max | {} / {} / {} ms | p99 ≤ 25 ms |",
        Stats::ms(s.pct(0.5)),
        Stats::ms(s.pct(0.99)),
        Stats::ms(s.pct(1.0))
    );
    println!(
        "| complete latency p50 / p99 | {} / {} ms | |",
        Stats::ms(c.pct(0.5)),
        Stats::ms(c.pct(0.99))
    );
    println!(
        "| server CPU | {cpu:.2} s ({:.0} µs per entry) | |",
        cpu * 1e6 / total_entries
    );
    println!(
        "| server RSS idle | {:.1} MB | ≤ 15 MB |",
        idle_rss as f64 / 1024.0
    );
    println!(
        "| server RSS peak | {:.1} MB | ≤ 2 × in-flight state + 32 MB |",
        peak_rss as f64 / 1024.0
    );
    println!(
        "| state per update / all in flight | {:.1} MB / {:.1} MB | |",
        raw_state as f64 / 1e6,
        raw_state as f64 * updates as f64 / 1e6
    );
}
