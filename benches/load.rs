//! Load driver: many concurrent journaled updates against a `pbackend serve` process (the
//! release binary), the way the CLI sends them — one batch at a time per update, 100 entries
//! per batch, gzip bodies — without the CLI. Prints entries/s, batch latency percentiles,
//! server CPU, idle and peak RSS as a Markdown table.
//!
//!     cargo bench --bench load [-- UPDATES RESOURCES_PER_UPDATE PAD_BYTES] [--stores LIST]
//!     cargo bench --bench load -- 1 RESOURCES PAD_BYTES --sequence
//!
//!     cargo bench --bench load -- --instructions
//!
//! `--instructions` counts the server's instructions per request kind under callgrind
//! (`load/instructions.rs`). `--sequence` takes one stack through create, export, a no-op update and destroy instead,
//! reporting each step (`load/sequence.rs`).
//!
//! Defaults: 50 concurrent updates on 50 stacks, 1,000 resources each, 400-byte padding.
//! `--stores` (default `sqlite`) runs the same load on each of: `sqlite` (one server, a
//! SQLite file), `sqlite-full` (the same with `--durability full`), `pg` (one server on PostgreSQL), `pg2` (two replicas on one PostgreSQL
//! database, each update's requests to one replica, as hashing on the stack path does) and
//! `pg2rr` (two replicas, alternating request by request: every write finds the other
//! replica's cache stale). PostgreSQL is the distribution's, started in a temp directory.

#[path = "common.rs"]
mod common;
#[path = "load/instructions.rs"]
mod instructions;
#[allow(dead_code)]
#[path = "../tests/common/pg.rs"]
mod pg;
#[path = "load/sequence.rs"]
mod sequence;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "pul-bench-token-000000000000000000000000";

fn gz(v: &Value) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&serde_json::to_vec(v).unwrap()).unwrap();
    e.finish().unwrap()
}

/// Length of a reply's text, inflating it when it came gzip-compressed.
fn gunzip_len(body: &[u8]) -> usize {
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut d = flate2::read::GzDecoder::new(body);
        std::io::copy(&mut d, &mut std::io::sink()).expect("gzip reply") as usize
    } else {
        body.len()
    }
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
        .header("Content-Type", "application/json");
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

struct Outcome {
    wall: Duration,
    entries: f64,
    lat: Stats,
    completes: Stats,
    cpu: f64,
    /// PostgreSQL's own CPU (0 on SQLite, where the database runs inside the server).
    db_cpu: f64,
    idle_rss_kb: u64,
    peak_rss_kb: u64,
    in_flight_mb: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Setup {
    Sqlite,
    /// SQLite with `--durability full` (an fsync per commit).
    SqliteFull,
    Postgres {
        replicas: usize,
        round_robin: bool,
    },
}

impl Setup {
    fn parse(s: &str) -> Setup {
        match s {
            "sqlite" => Setup::Sqlite,
            "sqlite-full" => Setup::SqliteFull,
            "pg" => Setup::Postgres {
                replicas: 1,
                round_robin: false,
            },
            "pg2" => Setup::Postgres {
                replicas: 2,
                round_robin: false,
            },
            "pg2rr" => Setup::Postgres {
                replicas: 2,
                round_robin: true,
            },
            other => panic!("unknown store setup {other:?}: sqlite, sqlite-full, pg, pg2 or pg2rr"),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Setup::Sqlite => "SQLite, 1 server",
            Setup::SqliteFull => "SQLite with --durability full, 1 server",
            Setup::Postgres {
                replicas: 1,
                round_robin: _,
            } => "PostgreSQL, 1 server",
            Setup::Postgres {
                round_robin: false, ..
            } => "PostgreSQL, 2 replicas, update-affine",
            Setup::Postgres {
                round_robin: true, ..
            } => "PostgreSQL, 2 replicas, round-robin",
        }
    }
}

/// The server binary: `PBACKEND_BENCH_BIN` (another build, for before/after comparisons) or
/// this one's release build.
fn server_bin() -> String {
    std::env::var("PBACKEND_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_pbackend").to_owned())
}

/// Starts `pbackend serve` on a free loopback port and waits until it answers.
/// `PBACKEND_BENCH_SERVER_WRAP` (e.g. `heaptrack -o /tmp/h`) runs it under a profiler; the
/// process measured is then the wrapper's.
async fn spawn_server(
    http: &reqwest::Client,
    db: &str,
    durability: &str,
) -> (std::process::Child, String) {
    spawn(http, server_command(server_bin()), db, durability).await
}

/// [`spawn_server`] with the command to run (the binary, perhaps under a wrapper).
async fn spawn(
    http: &reqwest::Client,
    mut command: std::process::Command,
    db: &str,
    durability: &str,
) -> (std::process::Child, String) {
    let port = free_port();
    let child = command
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .args(["--log-level", "warn", "--db", db])
        .env("PULUMI_BACKEND_SINGLE_TENANT_TOKEN", TOKEN)
        .env("PULUMI_BACKEND_MASTER_KEY", "00".repeat(32))
        .env("PULUMI_BACKEND_DURABILITY", durability)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("pbackend starts");
    let base = format!("http://127.0.0.1:{port}");
    wait_until_up(http, &base).await;
    (child, base)
}

/// Creates stack `organization/proj/{name}`.
async fn create_stack(http: &reqwest::Client, base: &str, auth: &str, name: &str) {
    let body = json!({ "stackName": name }).to_string().into_bytes();
    call(
        http,
        reqwest::Method::POST,
        format!("{base}/api/stacks/organization/proj"),
        auth,
        Some((body, false)),
    )
    .await;
}

/// Creates an update of `kind` on `stack` (its URL) and starts it, with journal version 1 or
/// checkpoints: the update's URL and its lease's `Authorization` value.
async fn begin_update(
    http: &reqwest::Client,
    stack: &str,
    auth: &str,
    kind: &str,
    journal: bool,
) -> (String, String) {
    let body = json!({"options": {"dryRun": false}})
        .to_string()
        .into_bytes();
    let id = call(
        http,
        reqwest::Method::POST,
        format!("{stack}/{kind}"),
        auth,
        Some((body, false)),
    )
    .await["updateID"]
        .as_str()
        .expect("update id")
        .to_owned();
    let start = if journal {
        json!({"journalVersion": 1})
    } else {
        json!({})
    };
    let update = format!("{stack}/{kind}/{id}");
    let token = call(
        http,
        reqwest::Method::POST,
        update.clone(),
        auth,
        Some((start.to_string().into_bytes(), false)),
    )
    .await["token"]
        .as_str()
        .expect("lease token")
        .to_owned();
    (update, format!("update-token {token}"))
}

/// Ends an update as succeeded.
async fn complete(http: &reqwest::Client, update: &str, lease: &str) {
    call(
        http,
        reqwest::Method::POST,
        format!("{update}/complete"),
        lease,
        Some((br#"{"status":"succeeded"}"#.to_vec(), false)),
    )
    .await;
}

/// The journal entry the CLI sends first: the stack's secrets provider.
fn secrets_entry(base: &str, stack: &str) -> Value {
    json!({"version":1,"kind":6,"sequenceID":1,"operationID":0,"removeOld":null,"removeNew":null,
        "secretsProvider":{"type":"service","state":{"url":base,"owner":"organization","project":"proj","stack":stack}}})
}

/// One run on fresh servers. `rate`: total journal entries per second to aim for (each
/// update sends a batch, then waits its turn), or as fast as possible.
async fn run(
    setup: Setup,
    updates: usize,
    per_update: usize,
    pad: usize,
    rate: Option<f64>,
) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let (db, replicas) = match setup {
        Setup::Sqlite | Setup::SqliteFull => (dir.path().join("load.db").display().to_string(), 1),
        Setup::Postgres { replicas, .. } => (
            pg::server()
                .expect("PostgreSQL server binaries (scripts/test-deps.sh)")
                .fresh_database(),
            replicas,
        ),
    };
    let http = reqwest::Client::new();
    let mut children = Vec::new();
    let mut bases = Vec::new();
    let durability = if setup == Setup::SqliteFull {
        "full"
    } else {
        "normal"
    };
    for _ in 0..replicas {
        let (child, base) = spawn_server(&http, &db, durability).await;
        children.push(child);
        bases.push(base);
    }
    let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
    let round_robin = matches!(
        setup,
        Setup::Postgres {
            round_robin: true,
            ..
        }
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss_kb = pids
        .iter()
        .map(|p| proc_field(*p, "VmRSS:"))
        .max()
        .unwrap_or(0);
    let auth = format!("token {TOKEN}");
    let base = bases[0].clone();

    // Payload: the same journal for every update (URNs are per stack anyway).
    let mut seq = 1;
    let mut entries = vec![secrets_entry(&base, "s")];
    entries.extend(create_entries(0, per_update, pad, &mut seq));
    let batches: Vec<(usize, Vec<u8>)> = entries
        .chunks(100)
        .map(|c| (c.len(), gz(&json!({ "entries": c }))))
        .collect();
    let state_bytes: usize = entries
        .iter()
        .filter_map(|e| e.get("state"))
        .map(|s| s.to_string().len())
        .sum();
    let events = gz(
        &json!({"events": [{"sequence": 0, "timestamp": 1, "stdoutEvent": {"message": "x", "color": "raw"}}]}),
    );

    for i in 0..updates {
        create_stack(&http, &base, &auth, &format!("s{i}")).await;
    }

    let cpu0: f64 = pids.iter().map(|p| proc_cpu_secs(*p)).sum();
    let db_cpu0 = postgres_cpu_secs();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..updates {
        let http = http.clone();
        // Update-affine: update i on replica i mod n. Round-robin: request k of update i on
        // replica (i + k) mod n.
        let bases = bases.clone();
        let pick = move |k: usize| {
            let r = if round_robin { i + k } else { i };
            bases[r % bases.len()].clone()
        };
        let auth = auth.clone();
        let batches = batches.clone();
        let events = events.clone();
        tasks.push(tokio::spawn(async move {
            // Spread the updates' starts over one pacing interval.
            let interval = rate.map(|r| Duration::from_secs_f64(100.0 * updates as f64 / r));
            if let Some(iv) = interval {
                tokio::time::sleep(iv.mul_f64(i as f64 / updates as f64)).await;
            }
            let mut k = 0;
            let mut stack = move || {
                k += 1;
                format!("{}/api/stacks/organization/proj/s{i}", pick(k))
            };
            let id = call(
                &http,
                reqwest::Method::POST,
                format!("{}/update", stack()),
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
                format!("{}/update/{id}", stack()),
                &auth,
                Some((json!({"journalVersion": 1}).to_string().into_bytes(), false)),
            )
            .await["token"]
                .as_str()
                .unwrap()
                .to_owned();
            let lease = format!("update-token {token}");
            let mut lat = Vec::with_capacity(batches.len());
            let mut next = Instant::now();
            for (n, (_, b)) in batches.iter().enumerate() {
                if let Some(iv) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += iv;
                }
                let t = Instant::now();
                call(
                    &http,
                    reqwest::Method::PATCH,
                    format!("{}/update/{id}/journalentries", stack()),
                    &lease,
                    Some((b.clone(), true)),
                )
                .await;
                lat.push(t.elapsed());
                if n % 10 == 0 {
                    call(
                        &http,
                        reqwest::Method::POST,
                        format!("{}/update/{id}/events/batch", stack()),
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
                format!("{}/update/{id}/complete", stack()),
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
    let cpu = pids.iter().map(|p| proc_cpu_secs(*p)).sum::<f64>() - cpu0;
    let db_cpu = postgres_cpu_secs() - db_cpu0;
    let peak_rss_kb = pids
        .iter()
        .map(|p| proc_field(*p, "VmHWM:"))
        .max()
        .unwrap_or(0);
    for c in children {
        stop_server(c);
    }
    Outcome {
        wall,
        entries: (entries.len() * updates) as f64,
        lat: Stats::new(lat),
        completes: Stats::new(completes),
        cpu,
        db_cpu,
        idle_rss_kb,
        peak_rss_kb,
        in_flight_mb: state_bytes as f64 * updates as f64 / 1e6,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut stores = vec![Setup::Sqlite];
    let mut nums = Vec::new();
    let mut it = raw.iter();
    let mut life = false;
    while let Some(a) = it.next() {
        if a == "--instructions" {
            instructions::run().await;
            return;
        } else if a == "--sequence" {
            life = true;
        } else if a == "--stores" {
            let list = it.next().expect("--stores LIST");
            stores = list.split(',').map(Setup::parse).collect();
        } else if let Ok(n) = a.parse::<usize>() {
            nums.push(n);
        }
    }
    let updates = *nums.first().unwrap_or(&50);
    let per_update = *nums.get(1).unwrap_or(&1000);
    let pad = *nums.get(2).unwrap_or(&400);
    if life {
        sequence::run(per_update, pad).await;
        return;
    }
    for setup in stores {
        let paced = run(setup, updates, per_update, pad, Some(6000.0)).await;
        let flat_out = run(setup, updates, per_update, pad, None).await;
        report(setup, updates, per_update, pad, &paced, &flat_out);
    }
}

fn report(
    setup: Setup,
    updates: usize,
    per_update: usize,
    pad: usize,
    paced: &Outcome,
    flat_out: &Outcome,
) {
    let mb = |kb: u64| format!("{:.1}", kb as f64 / 1024.0);
    println!("### {}", setup.label());
    println!();
    println!(
        "{updates} concurrent journaled updates on {updates} stacks, {per_update} resources each \
        (~{pad} B padding, {:.1} MB of state each), batches of 100 entries, one at a time per update.",
        paced.in_flight_mb / updates as f64
    );
    println!();
    println!("| measure | paced at 6,000 entries/s | as fast as possible | target |");
    println!("|---|---|---|---|");
    println!(
        "| wall time s | {:.2} | {:.2} | |",
        paced.wall.as_secs_f64(),
        flat_out.wall.as_secs_f64()
    );
    println!(
        "| journal entries/s | {:.0} | {:.0} | ≥ 5,000 |",
        paced.entries / paced.wall.as_secs_f64(),
        flat_out.entries / flat_out.wall.as_secs_f64()
    );
    println!(
        "| batch latency p50 ms | {} | {} | |",
        Stats::ms(paced.lat.pct(0.5)),
        Stats::ms(flat_out.lat.pct(0.5))
    );
    println!(
        "| batch latency p99 ms | {} | {} | ≤ 25 (at 5,000/s) |",
        Stats::ms(paced.lat.pct(0.99)),
        Stats::ms(flat_out.lat.pct(0.99))
    );
    println!(
        "| complete latency p50 / p99 ms | {} / {} | {} / {} | |",
        Stats::ms(paced.completes.pct(0.5)),
        Stats::ms(paced.completes.pct(0.99)),
        Stats::ms(flat_out.completes.pct(0.5)),
        Stats::ms(flat_out.completes.pct(0.99))
    );
    println!(
        "| server CPU s, all replicas (µs per entry) | {:.2} ({:.0}) | {:.2} ({:.0}) | |",
        paced.cpu,
        paced.cpu * 1e6 / paced.entries,
        flat_out.cpu,
        flat_out.cpu * 1e6 / flat_out.entries
    );
    if !matches!(setup, Setup::Sqlite | Setup::SqliteFull) {
        println!(
            "| PostgreSQL CPU s (µs per entry) | {:.2} ({:.0}) | {:.2} ({:.0}) | |",
            paced.db_cpu,
            paced.db_cpu * 1e6 / paced.entries,
            flat_out.db_cpu,
            flat_out.db_cpu * 1e6 / flat_out.entries
        );
    }
    println!(
        "| server RSS idle MB (largest replica) | {} | {} | ≤ 15 |",
        mb(paced.idle_rss_kb),
        mb(flat_out.idle_rss_kb)
    );
    println!(
        "| server RSS peak MB (largest replica) | {} | {} | ≤ 2 × {:.1} + 32 = {:.1} |",
        mb(paced.peak_rss_kb),
        mb(flat_out.peak_rss_kb),
        paced.in_flight_mb,
        2.0 * paced.in_flight_mb + 32.0
    );
    println!();
}
