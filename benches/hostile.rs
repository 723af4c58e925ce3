//! Adversarial benchmark: attacks against a `pbackend serve` process (the release binary),
//! each on a fresh server, while a well-behaved client calls `GET /api/user` every 20 ms.
//! Prints, per attack, the server's peak RSS above idle, its CPU seconds, the latency of
//! those calls, and whether the server was still up afterwards, as a Markdown table.
//!
//!     cargo bench --bench hostile [-- SECONDS_PER_ATTACK]      (default 8)
//!
//! Targets (reference/reliability.md): unauthenticated attacks ≤ 64 MB above idle;
//! authenticated ones ≤ 2 × the body limit (128 MiB here); `GET /api/user` p99 ≤ 50 ms.

#[path = "common.rs"]
mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const TOKEN: &str = "pul-bench-token-000000000000000000000000";
const LIMIT: usize = 128 << 20;

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// About 1 MB of gzip that inflates to about 1 GB of zeros.
fn bomb() -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        e.write_all(&zeros).unwrap();
    }
    e.finish().unwrap()
}

struct Server {
    child: std::process::Child,
    pid: u32,
    base: String,
    _dir: tempfile::TempDir,
    idle_kb: u64,
    idle_cpu: f64,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_pbackend"))
            .args([
                "serve",
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--log-level",
                "error",
            ])
            .args(["--max-state-bytes", &LIMIT.to_string()])
            // The probe calls `GET /api/user` 50 times a second as the same identity; the
            // per-identity rate limit would answer it 429 and hide what the attack costs.
            .args(["--rate-limit", "off"])
            .arg("--db")
            .arg(dir.path().join("hostile.db"))
            .env("PULUMI_BACKEND_SINGLE_TENANT_TOKEN", TOKEN)
            .env("PULUMI_BACKEND_MASTER_KEY", "00".repeat(32))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pbackend starts");
        let pid = child.id();
        let base = format!("http://127.0.0.1:{port}");
        wait_until_up(&reqwest::Client::new(), &base).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        Server {
            idle_kb: proc_field(pid, "VmRSS:"),
            idle_cpu: proc_cpu_secs(pid),
            child,
            pid,
            base,
            _dir: dir,
        }
    }

    fn up(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(
    http: &reqwest::Client,
    method: &str,
    url: String,
    auth: &str,
    body: Option<(Vec<u8>, bool)>,
) -> (u16, Value) {
    let mut r = http
        .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
        .header("Authorization", auth)
        .header("Content-Type", "application/json");
    if let Some((b, gzipped)) = body {
        if gzipped {
            r = r.header("Content-Encoding", "gzip");
        }
        r = r.body(b);
    }
    match r.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.unwrap_or_default();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        }
        Err(_) => (0, Value::Null),
    }
}

/// A stack `name` with a running update; returns (stack path, update id, lease).
async fn running_update(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    journal: bool,
) -> (String, String, String) {
    let auth = format!("token {TOKEN}");
    call(
        http,
        "POST",
        format!("{base}/api/stacks/organization/proj"),
        &auth,
        Some((json!({"stackName": name}).to_string().into_bytes(), false)),
    )
    .await;
    start_update(http, base, name, journal).await
}

async fn start_update(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    journal: bool,
) -> (String, String, String) {
    let auth = format!("token {TOKEN}");
    let stack = format!("{base}/api/stacks/organization/proj/{name}");
    let (_, v) = call(
        http,
        "POST",
        format!("{stack}/update"),
        &auth,
        Some((
            json!({"options": {"dryRun": false}})
                .to_string()
                .into_bytes(),
            false,
        )),
    )
    .await;
    let id = v["updateID"].as_str().unwrap().to_owned();
    let start = if journal {
        json!({"journalVersion": 2})
    } else {
        json!({})
    };
    let (_, v) = call(
        http,
        "POST",
        format!("{stack}/update/{id}"),
        &auth,
        Some((start.to_string().into_bytes(), false)),
    )
    .await;
    (stack, id, v["token"].as_str().unwrap().to_owned())
}

struct Row {
    attack: &'static str,
    requests: u64,
    statuses: String,
    peak_mb: f64,
    cpu: f64,
    p50: Duration,
    p99: Duration,
    up: bool,
    target_mb: f64,
}

/// Runs `attack` for `secs` while probing `GET /api/user`; measures the server.
async fn measure<F, Fut>(
    name: &'static str,
    target_mb: f64,
    srv: &mut Server,
    secs: u64,
    attack: F,
) -> Row
where
    F: FnOnce(String, Arc<AtomicBool>, Arc<AtomicU64>) -> Fut,
    Fut: std::future::Future<Output = String> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let probe = {
        let (base, stop) = (srv.base.clone(), stop.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut lat = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                let (status, _) = call(
                    &http,
                    "GET",
                    format!("{base}/api/user"),
                    &format!("token {TOKEN}"),
                    None,
                )
                .await;
                lat.push(if status == 200 {
                    t.elapsed()
                } else {
                    Duration::from_secs(60)
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            lat
        })
    };
    let attack = tokio::spawn(attack(srv.base.clone(), stop.clone(), count.clone()));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::SeqCst);
    let statuses = attack.await.unwrap_or_default();
    let lat = Stats::new(probe.await.unwrap());
    let up = srv.up()
        && call(
            &reqwest::Client::new(),
            "GET",
            format!("{}/api/user", srv.base),
            &format!("token {TOKEN}"),
            None,
        )
        .await
        .0 == 200;
    Row {
        attack: name,
        requests: count.load(Ordering::SeqCst),
        statuses,
        peak_mb: (proc_field(srv.pid, "VmHWM:").saturating_sub(srv.idle_kb)) as f64 / 1024.0,
        cpu: proc_cpu_secs(srv.pid) - srv.idle_cpu,
        p50: lat.pct(0.5),
        p99: lat.pct(0.99),
        up,
        target_mb,
    }
}

fn tally(statuses: &std::sync::Mutex<std::collections::BTreeMap<u16, u64>>) -> String {
    statuses
        .lock()
        .unwrap()
        .iter()
        .map(|(s, n)| {
            format!(
                "{n}×{}",
                if *s == 0 {
                    "reset".to_string()
                } else {
                    s.to_string()
                }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `workers` tasks each sending `req(i)` in a loop until stopped.
async fn flood<G, GFut>(
    workers: usize,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    req: G,
) -> String
where
    G: Fn(usize) -> GFut + Send + Sync + 'static,
    GFut: std::future::Future<Output = u16> + Send,
{
    let req = Arc::new(req);
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (req, stop, count, statuses) =
            (req.clone(), stop.clone(), count.clone(), statuses.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::SeqCst) {
                let s = req(i).await;
                count.fetch_add(1, Ordering::SeqCst);
                *statuses.lock().unwrap().entry(s).or_insert(0) += 1;
                i += workers;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    tally(&statuses)
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::args()
        .skip_while(|a| a != "--")
        .nth(1)
        .or_else(|| std::env::args().nth(1).filter(|a| a.parse::<u64>().is_ok()))
        .and_then(|a| a.parse().ok())
        .unwrap_or(8);
    let bomb = Arc::new(bomb());
    eprintln!("bomb: {} bytes of gzip", bomb.len());
    let mut rows = Vec::new();

    // 1. Unauthenticated gzip bombs on every update route.
    {
        let mut srv = Server::start().await;
        let b = bomb.clone();
        rows.push(measure("32 unauthenticated 1 MB gzip bombs", 64.0, &mut srv, secs, move |base, stop, count| async move {
            let http = reqwest::Client::new();
            flood(32, stop, count, move |i| {
                let (http, base, b) = (http.clone(), base.clone(), b.clone());
                async move {
                    let route = ["checkpoint", "checkpointverbatim", "checkpointdelta", "journalentries"][i % 4];
                    let url = format!("{base}/api/stacks/organization/proj/dev/update/{i:08x}-dead/{route}");
                    call(&http, "PATCH", url, "update-token bogus", Some(((*b).clone(), true))).await.0
                }
            })
            .await
        }).await);
    }

    // 2. The same bombs with a valid lease.
    {
        let mut srv = Server::start().await;
        let http = reqwest::Client::new();
        let (stack, id, lease) = running_update(&http, &srv.base, "dev", true).await;
        let b = bomb.clone();
        rows.push(
            measure(
                "32 authenticated 1 MB gzip bombs (valid lease)",
                2.0 * (LIMIT >> 20) as f64,
                &mut srv,
                secs,
                move |_, stop, count| async move {
                    flood(32, stop, count, move |i| {
                        let (http, b, stack, id, lease) = (
                            http.clone(),
                            b.clone(),
                            stack.clone(),
                            id.clone(),
                            lease.clone(),
                        );
                        async move {
                            let route = ["checkpoint", "journalentries", "events/batch"][i % 3];
                            let method = if route == "events/batch" {
                                "POST"
                            } else {
                                "PATCH"
                            };
                            call(
                                &http,
                                method,
                                format!("{stack}/update/{id}/{route}"),
                                &format!("update-token {lease}"),
                                Some(((*b).clone(), true)),
                            )
                            .await
                            .0
                        }
                    })
                    .await
                },
            )
            .await,
        );
    }

    // 3. A delta with 1 M one-byte edits on a 10 MB state.
    {
        let mut srv = Server::start().await;
        let http = reqwest::Client::new();
        let (stack, id, lease) = running_update(&http, &srv.base, "dev", false).await;
        let text = serde_json::to_string(&deployment(
            (0..2500).map(|i| resource(i, "a", 3500)).collect(),
        ))
        .unwrap();
        let body = format!(r#"{{"version":3,"untypedDeployment":{text},"sequenceNumber":1}}"#);
        call(
            &http,
            "PATCH",
            format!("{stack}/update/{id}/checkpointverbatim"),
            &format!("update-token {lease}"),
            Some((gz(body.as_bytes()), true)),
        )
        .await;
        // Replace each 'x' of the padding at every 9th byte with 'y', one edit each.
        let bytes = text.as_bytes();
        let mut edits = Vec::new();
        let mut next = bytes.to_vec();
        let mut i = 0;
        while edits.len() < 1_000_000 && i < bytes.len() {
            if bytes[i] == b'x' {
                edits.push(json!({"Span": {"start": {"offset": i}, "end": {"offset": i + 1}}, "NewText": "y"}));
                // (serialised compactly: about 60 bytes an edit)
                next[i] = b'y';
                i += 9;
            } else {
                i += 1;
            }
        }
        let n_edits = edits.len();
        let hash = pbackend::engine::crypto::sha256_hex(&next);
        let delta = gz(&serde_json::to_vec(
            &json!({"checkpointHash": hash, "sequenceNumber": 2, "deploymentDelta": edits}),
        )
        .unwrap());
        eprintln!("delta: {n_edits} edits, {} bytes of gzip", delta.len());
        let delta = Arc::new(delta);
        rows.push(
            measure(
                "a delta of ~1 M one-byte edits on a 10 MB state",
                2.0 * (LIMIT >> 20) as f64,
                &mut srv,
                secs,
                move |_, stop, count| async move {
                    let mut out = Vec::new();
                    while !stop.load(Ordering::SeqCst) && count.load(Ordering::SeqCst) < 3 {
                        let t = Instant::now();
                        let (s, _) = call(
                            &http,
                            "PATCH",
                            format!("{stack}/update/{id}/checkpointdelta"),
                            &format!("update-token {lease}"),
                            Some(((*delta).clone(), true)),
                        )
                        .await;
                        count.fetch_add(1, Ordering::SeqCst);
                        out.push(format!("{s} in {:.2} s", t.elapsed().as_secs_f64()));
                    }
                    out.join(", ")
                },
            )
            .await,
        );
    }

    // 4. 10,000 kind-7 journal entries, each after a begin: folds are capped.
    {
        let mut srv = Server::start().await;
        let http = reqwest::Client::new();
        // A stack with a 10 MB state, then a journaled update on it.
        let auth = format!("token {TOKEN}");
        call(
            &http,
            "POST",
            format!("{}/api/stacks/organization/proj", srv.base),
            &auth,
            Some((json!({"stackName": "big"}).to_string().into_bytes(), false)),
        )
        .await;
        let dep = deployment((0..2500).map(|i| resource(i, "a", 3500)).collect());
        let (s, _) = call(
            &http,
            "POST",
            format!("{}/api/stacks/organization/proj/big/import", srv.base),
            &auth,
            Some((gz(&serde_json::to_vec(&dep).unwrap()), true)),
        )
        .await;
        assert_eq!(s, 200, "import");
        let (stack, id, lease) = start_update(&http, &srv.base, "big", true).await;
        rows.push(measure("10,000 kind-7 journal entries (each after a begin)", 2.0 * (LIMIT >> 20) as f64, &mut srv, secs, move |_, stop, count| async move {
            let mut seq = 0i64;
            let mut out = std::collections::BTreeMap::new();
            for _ in 0..100 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let mut entries = Vec::new();
                for _ in 0..50 {
                    seq += 1;
                    entries.push(json!({"version":1,"kind":0,"sequenceID":seq,"operationID":seq,"removeOld":null,"removeNew":null}));
                    seq += 1;
                    entries.push(json!({"version":1,"kind":7,"sequenceID":seq,"operationID":0,"removeOld":null,"removeNew":null}));
                }
                let (s, _) = call(&http, "PATCH", format!("{stack}/update/{id}/journalentries"), &format!("update-token {lease}"),
                    Some((gz(&serde_json::to_vec(&json!({"entries": entries})).unwrap()), true))).await;
                count.fetch_add(100, Ordering::SeqCst);
                *out.entry(s).or_insert(0) += 1;
            }
            out.iter().map(|(s, n)| format!("{n} batches×{s}")).collect::<Vec<_>>().join(", ")
        }).await);
    }

    // 5. Many large event batches, then GET …/events.
    {
        let mut srv = Server::start().await;
        let http = reqwest::Client::new();
        let (stack, id, lease) = running_update(&http, &srv.base, "dev", true).await;
        for b in 0..200 {
            let events: Vec<Value> = (0..100)
                .map(|i| {
                    json!({"sequence": b * 100 + i, "timestamp": 1,
                "diagnosticEvent": {"message": "m".repeat(10_000)}})
                })
                .collect();
            call(
                &http,
                "POST",
                format!("{stack}/update/{id}/events/batch"),
                &format!("update-token {lease}"),
                Some((
                    gz(&serde_json::to_vec(&json!({"events": events})).unwrap()),
                    true,
                )),
            )
            .await;
        }
        rows.push(
            measure(
                "200 MB of events in 200 batches, then GET …/events",
                64.0,
                &mut srv,
                secs,
                move |_, stop, count| async move {
                    let mut pages = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let mut token: Option<String> = None;
                        loop {
                            let url = match &token {
                                Some(t) => {
                                    format!("{stack}/update/{id}/events?continuationToken={t}")
                                }
                                None => format!("{stack}/update/{id}/events"),
                            };
                            let (_, v) =
                                call(&http, "GET", url, &format!("token {TOKEN}"), None).await;
                            count.fetch_add(1, Ordering::SeqCst);
                            pages += 1;
                            let next = v["continuationToken"].as_str().map(str::to_owned);
                            if next.is_none()
                                || next == token
                                || v["events"].as_array().is_none_or(|a| a.is_empty())
                            {
                                break;
                            }
                            token = next;
                        }
                    }
                    format!("{pages} pages")
                },
            )
            .await,
        );
    }

    // 6. A flood of random update ids with made-up leases.
    {
        let mut srv = Server::start().await;
        rows.push(measure("a flood of random update ids", 64.0, &mut srv, secs, move |base, stop, count| async move {
            let http = reqwest::Client::new();
            flood(32, stop, count, move |i| {
                let (http, base) = (http.clone(), base.clone());
                async move {
                    let url = format!("{base}/api/stacks/organization/proj/dev/update/{:032x}/renew_lease", (i as u128).wrapping_mul(0x9e3779b97f4a7c15));
                    call(&http, "POST", url, &format!("update-token lease-{i}"), Some((b"{}".to_vec(), false))).await.0
                }
            })
            .await
        }).await);
    }

    // 7. 1,000 slow connections: headers a byte at a time.
    {
        let mut srv = Server::start().await;
        rows.push(
            measure(
                "1,000 slow connections (a header byte every 2 s)",
                64.0,
                &mut srv,
                secs,
                move |base, stop, count| async move {
                    let addr = base.trim_start_matches("http://").to_owned();
                    let mut conns = Vec::new();
                    for _ in 0..1000 {
                        if let Ok(c) = tokio::net::TcpStream::connect(&addr).await {
                            conns.push(c);
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    let head = b"GET /api/user HTTP/1.1\r\nHost: x\r\n";
                    let mut k = 0;
                    while !stop.load(Ordering::SeqCst) {
                        for c in conns.iter_mut() {
                            let _ = c.write_all(&head[k % head.len()..k % head.len() + 1]).await;
                        }
                        k += 1;
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                    format!("{} connections opened", conns.len())
                },
            )
            .await,
        );
    }

    println!(
        "| attack | requests | answers | peak RSS above idle | target | server CPU s | GET /api/user p50 / p99 ms | up after |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.1} MB | ≤ {:.0} MB {} | {:.2} | {} / {} {} | {} |",
            r.attack,
            r.requests,
            r.statuses,
            r.peak_mb,
            r.target_mb,
            if r.peak_mb <= r.target_mb {
                "met"
            } else {
                "**missed**"
            },
            r.cpu,
            Stats::ms(r.p50),
            Stats::ms(r.p99),
            if r.p99 <= Duration::from_millis(50) {
                ""
            } else {
                "**(over 50)**"
            },
            if r.up { "yes" } else { "**no**" }
        );
    }
}
