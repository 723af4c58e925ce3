//! Engine benchmarks on a real SQLite file (no HTTP): delta checkpoints on a 10 MB state,
//! journal materialisation, offline journal replay. Prints a Markdown table.
//!
//!     cargo bench --bench engine

#[path = "common.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use pbackend::engine::clock::SystemClock;
use pbackend::engine::crypto::{MasterKey, sha256_hex};
use pbackend::engine::state::journal::{Base, Replayer, parse_entries};
use pbackend::engine::{
    CreateStack, CreateUpdate, Engine, EngineConfig, Identity, Lease, LeaseToken, LeaseUse,
    StartUpdateOptions, UpdateKind,
};
use pbackend::store::StackKey;
use pbackend::store::sqlite::SqliteStore;
use serde_json::json;

fn key(stack: &str) -> StackKey {
    StackKey {
        org: "organization".into(),
        project: "proj".into(),
        stack: stack.into(),
    }
}

async fn start(engine: &Engine, stack: &str, journal: bool) -> (String, Lease) {
    let caller = Identity::instance_admin("admin");
    engine
        .create_stack(
            &caller,
            "organization",
            "proj",
            CreateStack {
                name: stack.into(),
                tags: Default::default(),
                teams: vec![],
                initial_state: None,
            },
        )
        .await
        .unwrap();
    let id = engine
        .create_update(
            &caller,
            &key(stack),
            CreateUpdate {
                coherence_window: None,
                kind: UpdateKind::Update,
                dry_run: false,
                message: String::new(),
                environment: r#"{"pulumi.version":"v3.259.0"}"#.into(),
                config: "{}".into(),
            },
        )
        .await
        .unwrap();
    let s = engine
        .start_update(
            &caller,
            &key(stack),
            &id,
            StartUpdateOptions {
                tags: None,
                journal_version: journal.then_some(1),
            },
        )
        .await
        .unwrap();
    let lease = engine
        .verify_lease(&key(stack), &id, &LeaseToken(s.token), LeaseUse::OrFinished)
        .await
        .unwrap();
    (id, lease)
}

fn row(name: &str, target: &str, s: &Stats, note: &str) {
    println!(
        "| {name} | {target} | {} | {} | {} | {} | {note} |",
        s.samples.len(),
        Stats::ms(s.pct(0.5)),
        Stats::ms(s.pct(0.99)),
        Stats::ms(*s.samples.last().unwrap_or(&Duration::ZERO)),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("bench.db")).unwrap();
    let (engine, _) = Engine::open(
        Arc::new(store.clone()),
        MasterKey::generate(),
        Some("t".into()),
        EngineConfig::default(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();

    println!("| benchmark | target | n | p50 ms | p99 ms | max ms | notes |");
    println!("|---|---|---|---|---|---|---|");

    // 1. Delta apply + verify + persist on a ~10 MB state.
    let resources: Vec<_> = (0..600).map(|i| resource(i, "v0", 16_000)).collect();
    let text = serde_json::to_string(&deployment(resources)).unwrap();
    let (_id, token) = start(&engine, "delta", false).await;
    let body = format!(r#"{{"version":3,"untypedDeployment":{text},"sequenceNumber":1}}"#);
    engine
        .save_verbatim_checkpoint(&token, body.into_bytes())
        .await
        .unwrap();
    let mut cur = text.clone();
    let mut samples = Vec::new();
    let mut labels = vec![0usize; 600];
    for round in 0..60 {
        // Change one resource's output, as one step of an update does: one span replaced.
        let i = (round * 37) % 600;
        let old = serde_json::to_string(&resource(i, &format!("v{}", labels[i]), 16_000)).unwrap();
        labels[i] += 1;
        let new = serde_json::to_string(&resource(i, &format!("v{}", labels[i]), 16_000)).unwrap();
        let start_off = cur.find(&old).expect("resource text");
        let next = format!(
            "{}{}{}",
            &cur[..start_off],
            new,
            &cur[start_off + old.len()..]
        );
        let delta = json!({"version": 3, "checkpointHash": sha256_hex(next.as_bytes()), "sequenceNumber": round + 2,
            "deploymentDelta": [{"Span": {"uri": "", "start": {"line": 1, "column": 1, "offset": start_off},
                "end": {"line": 1, "column": 1, "offset": start_off + old.len()}}, "NewText": new}]});
        let bytes = serde_json::to_vec(&delta).unwrap();
        let t = Instant::now();
        engine.save_delta_checkpoint(&token, bytes).await.unwrap();
        samples.push(t.elapsed());
        cur = next;
    }
    row(
        "delta apply + verify + persist, 10 MB state",
        "p50 ≤ 10 ms",
        &Stats::new(samples),
        &format!(
            "{:.1} MB text, one resource span per delta",
            cur.len() as f64 / 1e6
        ),
    );

    // 2. Materialise 10,000 journal entries (5,000 resources of ~1 KB).
    let mut seq = 1;
    let entries = create_entries(0, 5_000, 400, &mut seq);
    let batches: Vec<Vec<u8>> = entries
        .chunks(100)
        .map(|c| serde_json::to_vec(&json!({ "entries": c })).unwrap())
        .collect();
    // Pure replay (CPU only).
    let mut samples = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut r = Replayer::new(Base::default());
        for b in &batches {
            for e in parse_entries(b).unwrap() {
                r.add(e).unwrap();
            }
        }
        let g = r.generate().unwrap();
        let out = g.to_untyped("v3.259.0", "2026-01-01T00:00:00Z");
        assert!(out.len() > 1_000_000);
        samples.push(t.elapsed());
    }
    row(
        "materialise 10,000 journal entries (parse, apply, generate)",
        "≤ 200 ms",
        &Stats::new(samples),
        "5,000 resources, in memory",
    );
    // Through the engine: 100 batches, each stored and applied, then complete.
    let mut samples = Vec::new();
    let mut batch_samples = Vec::new();
    for run in 0..3 {
        let name = format!("journal{run}");
        let (_id, token) = start(&engine, &name, true).await;
        let t = Instant::now();
        for b in &batches {
            let tb = Instant::now();
            engine
                .journal_entries(&token, b.clone(), None)
                .await
                .unwrap();
            batch_samples.push(tb.elapsed());
        }
        engine
            .complete_update(&token, "succeeded", None)
            .await
            .unwrap();
        samples.push(t.elapsed());
    }
    row(
        "10,000 entries through the engine (100 stored batches + complete)",
        "≤ 200 ms",
        &Stats::new(samples),
        "includes gzip and SQLite writes",
    );
    row(
        "one journal batch of 100 entries (store + apply)",
        "p99 ≤ 25 ms",
        &Stats::new(batch_samples),
        "",
    );

    // 3. Offline replay of a 10,000-resource journal.
    let mut seq = 1;
    let entries = create_entries(0, 10_000, 400, &mut seq);
    let (id, token) = start(&engine, "replay", true).await;
    for c in entries.chunks(100) {
        engine
            .journal_entries(
                &token,
                serde_json::to_vec(&json!({ "entries": c })).unwrap(),
                None,
            )
            .await
            .unwrap();
    }
    engine
        .complete_update(&token, "succeeded", None)
        .await
        .unwrap();
    let (off_engine, off_store) = {
        let s = SqliteStore::open(&dir.path().join("bench.db")).unwrap();
        let e = Engine::open_offline(
            Arc::new(s.clone()),
            None,
            EngineConfig::default(),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        (e, s)
    };
    let mut samples = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let r = off_engine
            .replay_journal(&key("replay"), Some(&id), true)
            .await
            .unwrap();
        samples.push(t.elapsed());
        assert!(r.diff.is_empty(), "{:?}", r.diff);
        assert_eq!(r.resources, 10_000);
    }
    row(
        "offline replay of a 10,000-resource journal (load, replay, compare)",
        "≤ 1 s",
        &Stats::new(samples),
        "`pbackend replay-journal --dry-run`",
    );
    drop(off_engine);
    off_store.close();
    drop(engine);
    store.close();
}
