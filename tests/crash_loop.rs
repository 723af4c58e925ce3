//! Crash loop: concurrent journaled and delta-mode updates while the server is killed with
//! SIGKILL at random moments and restarted on the same database. After every restart:
//! every acknowledged batch and checkpoint is in the state, and `pbackend verify` is clean;
//! at the end every update completes whole, no stack stays locked, and every succeeded
//! update has exactly one audit event (written in the transaction of its `complete`).
//!
//! Rounds and workers come from the environment so that CI runs a short version and
//! `scripts/crash-loop.sh` the full one (figures in reference/reliability.md):
//! `PBACKEND_CRASH_ROUNDS` (default 4), `PBACKEND_CRASH_WORKERS` (default 8).

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cli::{CLI_TOKEN, ServerProcess};
use common::ops::pb;
use pbackend::engine::crypto::sha256_hex;
use serde_json::{Value, json};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn urn(stack: &str, name: &str) -> String {
    format!("urn:pulumi:{stack}::proj::pbtest:index:Item::{name}")
}

fn res(stack: &str, name: &str) -> Value {
    json!({"urn": urn(stack, name), "custom": true, "id": format!("{name}-id"),
           "type": "pbtest:index:Item", "outputs": {"pad": "x".repeat(300)}})
}

/// An HTTP client that keeps trying through restarts, like the CLI's retries: an answer of
/// any status is returned; connection failures and 5xx are retried for up to a minute.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        method: &str,
        path: &str,
        auth: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut req = self
                .http
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    format!("{}{path}", self.base),
                )
                .header("Authorization", auth)
                .header("Content-Type", "application/json")
                .timeout(Duration::from_secs(20));
            if let Some(b) = &body {
                req = req.body(serde_json::to_vec(b).unwrap());
            }
            match req.send().await {
                Ok(r) if r.status().as_u16() < 500 => {
                    let status = r.status().as_u16();
                    let bytes = r.bytes().await.unwrap_or_default();
                    return (
                        status,
                        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    );
                }
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(r) => panic!("{method} {path}: {}", r.status()),
                Err(e) => panic!("{method} {path}: {e}"),
            }
        }
    }

    async fn ok(&self, method: &str, path: &str, auth: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, auth, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }
}

/// What a worker has had acknowledged, for the checks after each restart.
#[derive(Default, Clone)]
struct Ledger {
    /// Resources whose journal entries were acknowledged in the running update.
    acked: BTreeSet<String>,
    /// Hash of the last acknowledged checkpoint text (delta mode) and of one in flight.
    acked_hash: Option<String>,
    in_flight_hash: Option<String>,
    /// Resources the stack holds after its last completed update.
    completed: BTreeSet<String>,
    updates_completed: usize,
}

const TOKEN_AUTH: &str = "token";

fn api_auth() -> String {
    format!("{TOKEN_AUTH} {CLI_TOKEN}")
}

/// Creates and starts an update. A start whose answer was lost to a kill cannot be
/// retried (its lease token is gone, as for the CLI, which fails then); the orphaned update
/// holds the stack until its lease expires, after which a new one starts.
async fn begin(c: &Client, stack: &str, journal: bool) -> (String, String) {
    let path = format!("/api/stacks/organization/proj/{stack}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = c
            .ok(
                "POST",
                &format!("{path}/update"),
                &api_auth(),
                Some(json!({"options": {"dryRun": false}})),
            )
            .await;
        let id = v["updateID"].as_str().unwrap().to_owned();
        let body = if journal {
            json!({"journalVersion": 2})
        } else {
            json!({})
        };
        let (status, v) = c
            .call(
                "POST",
                &format!("{path}/update/{id}"),
                &api_auth(),
                Some(body),
            )
            .await;
        if status == 200 {
            return (id, v["token"].as_str().unwrap().to_owned());
        }
        assert_eq!(status, 409, "start: {v}");
        assert!(Instant::now() < deadline, "{stack} stayed locked: {v}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Renews a lease every few seconds, as the CLI does (every half of its lease).
struct Renewer {
    path: String,
    auth: String,
    last: Instant,
}

impl Renewer {
    fn new(stack: &str, id: &str, lease: &str) -> Self {
        Renewer {
            path: format!("/api/stacks/organization/proj/{stack}/update/{id}/renew_lease"),
            auth: format!("update-token {lease}"),
            last: Instant::now(),
        }
    }

    async fn tick(&mut self, c: &Client) {
        if self.last.elapsed() > Duration::from_secs(5) {
            c.ok(
                "POST",
                &self.path,
                &self.auth,
                Some(json!({"duration": 30})),
            )
            .await;
            self.last = Instant::now();
        }
    }
}

/// One journaled update of `n` new resources, in batches, recording acknowledgements.
/// Held (shared) by a worker across each request and its ledger entry; the checker takes it
/// exclusively, so that it compares the server with a ledger that has no request in flight.
type Gate = tokio::sync::RwLock<()>;

async fn journal_update(
    c: &Client,
    stack: &str,
    n: usize,
    round: usize,
    ledger: &Mutex<Ledger>,
    gate: &Gate,
) {
    let path = format!("/api/stacks/organization/proj/{stack}");
    let (id, lease) = begin(c, stack, true).await;
    let auth = format!("update-token {lease}");
    let mut renew = Renewer::new(stack, &id, &lease);
    let mut seq = 0;
    let names: Vec<String> = (0..n).map(|i| format!("u{round}-{i}")).collect();
    for chunk in names.chunks(5) {
        let mut entries = Vec::new();
        for name in chunk {
            seq += 1;
            entries.push(
                json!({"version":1,"kind":0,"sequenceID":seq,"operationID":seq,"removeOld":null,
                "removeNew":null,"operation":{"resource":res(stack, name),"type":"creating"}}),
            );
            let op = seq;
            seq += 1;
            entries.push(
                json!({"version":1,"kind":1,"sequenceID":seq,"operationID":op,"removeOld":null,
                "removeNew":null,"state":res(stack, name)}),
            );
        }
        let _g = gate.read().await;
        renew.tick(c).await;
        c.ok(
            "PATCH",
            &format!("{path}/update/{id}/journalentries"),
            &auth,
            Some(json!({"entries": entries})),
        )
        .await;
        let mut l = ledger.lock().unwrap();
        for name in chunk {
            l.acked.insert(urn(stack, name));
        }
    }
    let _g = gate.read().await;
    renew.tick(c).await;
    c.ok(
        "POST",
        &format!("{path}/update/{id}/complete"),
        &auth,
        Some(json!({"status": "succeeded"})),
    )
    .await;
    let mut l = ledger.lock().unwrap();
    let acked = std::mem::take(&mut l.acked);
    l.completed.extend(acked);
    l.updates_completed += 1;
}

fn text_of(stack: &str, names: &[String]) -> String {
    let resources: Vec<Value> = names.iter().map(|n| res(stack, n)).collect();
    serde_json::to_string(&json!({"version": 3, "deployment": {
        "manifest": {"time": "t", "magic": "", "version": ""}, "resources": resources}}))
    .unwrap()
}

/// One delta-mode update adding `n` resources, one delta each, recording acknowledgements.
async fn delta_update(
    c: &Client,
    stack: &str,
    n: usize,
    round: usize,
    ledger: &Mutex<Ledger>,
    gate: &Gate,
) {
    let path = format!("/api/stacks/organization/proj/{stack}");
    let (id, lease) = begin(c, stack, false).await;
    let auth = format!("update-token {lease}");
    let mut renew = Renewer::new(stack, &id, &lease);
    let mut names: Vec<String> = ledger
        .lock()
        .unwrap()
        .completed
        .iter()
        .map(|u| u.rsplit("::").next().unwrap().to_owned())
        .collect();
    let mut text = text_of(stack, &names);
    // The verbatim body carries the text byte for byte.
    let body_text = format!(r#"{{"version":3,"untypedDeployment":{text},"sequenceNumber":1}}"#);
    let hash = sha256_hex(text.as_bytes());
    {
        let _g = gate.read().await;
        renew.tick(c).await;
        ledger.lock().unwrap().in_flight_hash = Some(hash.clone());
        c.ok(
            "PATCH",
            &format!("{path}/update/{id}/checkpointverbatim"),
            &auth,
            Some(serde_json::from_str(&body_text).unwrap()),
        )
        .await;
        ledger.lock().unwrap().acked_hash = Some(hash);
    }
    for i in 0..n {
        let name = format!("u{round}-{i}");
        names.push(name);
        let next = text_of(stack, &names);
        // One edit: everything from the first differing byte to the end.
        let p = text
            .bytes()
            .zip(next.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        let hash = sha256_hex(next.as_bytes());
        let body = json!({"version": 3, "checkpointHash": hash, "sequenceNumber": i as i64 + 2,
            "deploymentDelta": [{"Span": {"uri":"", "start":{"line":1,"column":1,"offset":p},
              "end":{"line":1,"column":1,"offset":text.len()}}, "NewText": &next[p..]}]});
        {
            let _g = gate.read().await;
            renew.tick(c).await;
            ledger.lock().unwrap().in_flight_hash = Some(hash.clone());
            c.ok(
                "PATCH",
                &format!("{path}/update/{id}/checkpointdelta"),
                &auth,
                Some(body),
            )
            .await;
            ledger.lock().unwrap().acked_hash = Some(hash);
        }
        text = next;
    }
    let _g = gate.read().await;
    renew.tick(c).await;
    c.ok(
        "POST",
        &format!("{path}/update/{id}/complete"),
        &auth,
        Some(json!({"status": "succeeded"})),
    )
    .await;
    let mut l = ledger.lock().unwrap();
    l.completed = names.iter().map(|n| urn(stack, n)).collect();
    l.acked_hash = None;
    l.in_flight_hash = None;
    l.updates_completed += 1;
}

async fn export_urns(c: &Client, stack: &str) -> (BTreeSet<String>, String) {
    let path = format!("/api/stacks/organization/proj/{stack}/export");
    let resp = c
        .http
        .get(format!("{}{path}", c.base))
        .header("Authorization", api_auth())
        .send()
        .await
        .expect("export");
    let text = resp.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let urns = v["deployment"]["resources"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["urn"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (urns, sha256_hex(text.as_bytes()))
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let rounds = env_usize("PBACKEND_CRASH_ROUNDS", 4);
    let workers = env_usize("PBACKEND_CRASH_WORKERS", 8);
    let mut srv = ServerProcess::start(&["--lease-duration", "30s"]).await;
    let client = Client {
        http: reqwest::Client::new(),
        base: srv.url.clone(),
    };
    let stacks: Vec<String> = (0..workers).map(|i| format!("s{i}")).collect();
    for s in &stacks {
        client
            .ok(
                "POST",
                "/api/stacks/organization/proj",
                &api_auth(),
                Some(json!({"stackName": s})),
            )
            .await;
    }
    let ledgers: Vec<Arc<Mutex<Ledger>>> = stacks
        .iter()
        .map(|_| Arc::new(Mutex::new(Ledger::default())))
        .collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = Arc::new(Gate::new(()));
    let mut tasks = Vec::new();
    for (i, s) in stacks.iter().enumerate() {
        let (c, s, l, stop, gate) = (
            client.clone(),
            s.clone(),
            ledgers[i].clone(),
            stop.clone(),
            gate.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut round = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                round += 1;
                if i % 2 == 0 {
                    journal_update(&c, &s, 20, round, &l, &gate).await;
                } else {
                    delta_update(&c, &s, 10, round, &l, &gate).await;
                }
            }
        }));
    }
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut kills = 0;
    let start = Instant::now();
    for round in 0..rounds {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait = 300 + rng % 1700;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        srv.kill().await;
        kills += 1;
        srv.restart().await;
        // The requests cut off by the kill are retried and land; then, with nothing in
        // flight, every acknowledged write is in the state of each stack (the live state of
        // a running update, rebuilt from the store after the restart).
        let exclusive = gate.write().await;
        for (i, s) in stacks.iter().enumerate() {
            let snapshot = ledgers[i].lock().unwrap().clone();
            let (urns, hash) = export_urns(&client, s).await;
            if i % 2 == 0 {
                let expected: BTreeSet<String> =
                    snapshot.completed.union(&snapshot.acked).cloned().collect();
                assert_eq!(
                    urns, expected,
                    "round {round}, {s}: the state is not what was acknowledged"
                );
            } else if let Some(acked) = &snapshot.acked_hash {
                assert_eq!(
                    &hash, acked,
                    "round {round}, {s}: the state is not the last acknowledged checkpoint"
                );
            } else {
                assert_eq!(urns, snapshot.completed, "round {round}, {s}");
            }
        }
        drop(exclusive);
        // The whole database checks out too. Run while the updates go on: `verify` reads a
        // consistent snapshot, and it grows slower with the database, longer than a lease
        // lasts by the last rounds of a long run (paused workers would lose their leases).
        let verify = pb(&srv.db(), true, &["verify"]).await;
        assert_eq!(verify.code, 0, "round {round}: verify: {}", verify.all());
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in tasks {
        t.await.expect("worker");
    }
    // Every update completed whole: the state is exactly what the worker completed.
    let mut updates = 0;
    for (i, s) in stacks.iter().enumerate() {
        let l = ledgers[i].lock().unwrap().clone();
        updates += l.updates_completed;
        let (urns, _) = export_urns(&client, s).await;
        assert_eq!(
            urns, l.completed,
            "{s}: the state is not the last completed update"
        );
        // Not locked: a new update starts at once.
        let (id, lease) = begin(&client, s, true).await;
        client
            .ok(
                "POST",
                &format!("/api/stacks/organization/proj/{s}/update/{id}/complete"),
                &format!("update-token {lease}"),
                Some(json!({"status": "succeeded"})),
            )
            .await;
    }
    let verify = pb(&srv.db(), true, &["verify"]).await;
    assert_eq!(verify.code, 0, "verify: {}", verify.all());
    // Audit events were written in the transactions of their changes: through every kill,
    // each stack has exactly one `update-succeeded` event per succeeded update.
    let out = pb(
        &srv.db(),
        false,
        &[
            "audit",
            "ls",
            "--event",
            "update-succeeded",
            "--limit",
            "1000000",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.all());
    let events: Vec<Value> = serde_json::from_str(&out.stdout).expect("audit JSON");
    let mut total = 0;
    for s in &stacks {
        let history = client
            .ok(
                "GET",
                &format!("/api/stacks/organization/proj/{s}/updates?page=0"),
                &api_auth(),
                None,
            )
            .await;
        let succeeded = history["updates"]
            .as_array()
            .expect("updates")
            .iter()
            .filter(|u| u["result"] == "succeeded")
            .count();
        let needle = format!("on stack organization/proj/{s} succeeded");
        let noted = events
            .iter()
            .filter(|e| {
                e["description"]
                    .as_str()
                    .is_some_and(|d| d.ends_with(&needle))
            })
            .count();
        assert_eq!(
            noted, succeeded,
            "{s}: {succeeded} updates succeeded but {noted} update-succeeded events"
        );
        total += succeeded;
    }
    assert!(total > 0, "the check above compared something");
    println!(
        "crash loop: {kills} kills in {:.0} s, {workers} workers, {updates} updates completed",
        start.elapsed().as_secs_f64()
    );
}
