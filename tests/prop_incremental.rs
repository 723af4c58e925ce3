//! Property tests of the incremental state paths, through the engine and a real SQLite file:
//!
//! * journal: random valid journals, sent in random batches with random retries, give the
//!   same state live (export during the update), after a restart (offline replay from the
//!   stored batches, at complete), and in a direct model of what each step does to the state
//!   (the state a full checkpoint would carry);
//! * deltas: random edit sequences give the same text live, after a restart (rebuilt from the
//!   stored checkpoint and deltas), and when applied directly.

use std::sync::Arc;

use pbackend::engine::clock::SystemClock;
use pbackend::engine::crypto::{MasterKey, sha256_hex};
use pbackend::engine::{
    CreateStack, CreateUpdate, Engine, EngineConfig, Identity, Lease, LeaseToken, LeaseUse,
    StartUpdateOptions, UpdateKind,
};
use pbackend::store::StackKey;
use pbackend::store::sqlite::SqliteStore;
use pbackend::testkit::journal_model::{Step, base_deployment, simulate};
use proptest::prelude::*;
use serde_json::{Value, json};

fn caller() -> Identity {
    Identity::instance_admin("admin")
}

fn key() -> StackKey {
    StackKey {
        org: "organization".into(),
        project: "proj".into(),
        stack: "dev".into(),
    }
}

async fn open(dir: &std::path::Path, master: &MasterKey) -> (Engine, SqliteStore) {
    let store = SqliteStore::open(&dir.join("db.sqlite")).unwrap();
    let (engine, _) = Engine::open(
        Arc::new(store.clone()),
        master.clone(),
        Some("token".into()),
        EngineConfig::default(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    (engine, store)
}

async fn export(engine: &Engine) -> Value {
    let e = engine.export(&caller(), &key(), None).await.unwrap();
    let bytes = match (e.gz, e.plain) {
        (Some(gz), _) => pbackend::engine::state::deployment::gunzip_stored(&gz).unwrap(),
        (None, Some(p)) => p.to_vec(),
        _ => panic!("empty export"),
    };
    serde_json::from_slice(&bytes).unwrap()
}

/// Creates the stack, imports `base`, and starts an update; returns its id and lease token.
async fn begin(engine: &Engine, base: Option<Value>, journal: bool) -> (String, Lease) {
    engine
        .create_stack(
            &caller(),
            "organization",
            "proj",
            CreateStack {
                name: "dev".into(),
                tags: Default::default(),
                teams: vec![],
                initial_state: None,
            },
        )
        .await
        .unwrap();
    if let Some(b) = base {
        engine
            .import(&caller(), &key(), serde_json::to_vec(&b).unwrap(), None)
            .await
            .unwrap();
    }
    let id = engine
        .create_update(
            &caller(),
            &key(),
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
    let started = engine
        .start_update(
            &caller(),
            &key(),
            &id,
            StartUpdateOptions {
                tags: None,
                journal_version: journal.then_some(2),
            },
        )
        .await
        .unwrap();
    let lease = engine
        .verify_lease(
            &key(),
            &id,
            &LeaseToken(started.token),
            LeaseUse::OrFinished,
        )
        .await
        .unwrap();
    (id, lease)
}

// ---------------------------------------------------------------- journal

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Create),
        3 => (0..64usize).prop_map(Step::Update),
        2 => (0..64usize).prop_map(Step::Delete),
        2 => (0..64usize, any::<bool>()).prop_map(|(i, d)| Step::Replace(i, d)),
        1 => (0..64usize).prop_map(Step::Fail),
        1 => (0..64usize, any::<bool>()).prop_map(|(i, g)| Step::Refresh(i, g)),
        1 => (0..64usize).prop_map(Step::Outputs),
        1 => Just(Step::Pending),
        1 => (0..64usize).prop_map(Step::Migrate),
    ]
}

fn check_state(d: &Value, resources: &[Value], pending: &[Value]) -> Result<(), TestCaseError> {
    let got = d["deployment"]["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    prop_assert_eq!(&got, &resources.to_vec());
    let got_pending = d["deployment"]["pending_operations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    prop_assert_eq!(&got_pending, &pending.to_vec());
    let m = &d["deployment"]["manifest"];
    prop_assert_eq!(
        m["magic"].as_str().unwrap(),
        sha256_hex(m["version"].as_str().unwrap().as_bytes())
    );
    Ok(())
}

fn run_journal_case(
    n: usize,
    steps: Vec<Step>,
    cuts: Vec<usize>,
    retries: Vec<bool>,
) -> Result<(), TestCaseError> {
    let (entries, expected, pending) = simulate(n, &steps);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate();
        let (engine, store) = open(dir.path(), &master).await;
        let (_id, token) = begin(&engine, Some(base_deployment(n)), true).await;
        // Random batches; some sent twice (a retry after a lost answer).
        let mut batches: Vec<Vec<Value>> = Vec::new();
        let mut rest = entries.as_slice();
        let mut c = cuts.iter().cycle();
        while !rest.is_empty() {
            let size = (*c.next().unwrap_or(&1)).clamp(1, rest.len());
            batches.push(rest[..size].to_vec());
            rest = &rest[size..];
        }
        for (i, b) in batches.iter().enumerate() {
            let body = serde_json::to_vec(&json!({ "entries": b })).unwrap();
            engine
                .journal_entries(&token, body.clone(), None)
                .await
                .unwrap();
            if retries.get(i).copied().unwrap_or(false) {
                engine.journal_entries(&token, body, None).await.unwrap();
            }
        }
        // Live: export while the update runs.
        let live = export(&engine).await;
        check_state(&live, &expected, &pending)?;
        // Offline: a new engine on the same file replays the stored batches at complete.
        drop(engine);
        store.close();
        let (engine, _store) = open(dir.path(), &master).await;
        engine
            .complete_update(&token, "succeeded", None)
            .await
            .unwrap();
        let stored = export(&engine).await;
        check_state(&stored, &expected, &pending)?;
        prop_assert_eq!(
            &live["deployment"]["resources"],
            &stored["deployment"]["resources"]
        );
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn journal_live_offline_and_model_agree(
        n in 0usize..12,
        steps in proptest::collection::vec(step(), 0..40),
        cuts in proptest::collection::vec(1usize..20, 1..8),
        retries in proptest::collection::vec(any::<bool>(), 0..16),
    ) {
        run_journal_case(n, steps, cuts, retries)?;
    }
}

// ---------------------------------------------------------------- deltas

const HEAD: &str = r#"{"version":3,"deployment":{"manifest":{"time":"t","magic":"","version":""},"metadata":{},"resources":[{"urn":"urn:pulumi:dev::proj::pbtest:index:Item::a","custom":true,"type":"pbtest:index:Item","outputs":{"pad":""#;
const TAIL: &str = r#""}}]}}"#;

/// An edit inside the padding string: (start, length, replacement), positions relative to the
/// padding and clamped to its current length.
type Edit = (usize, usize, String);

fn apply_edits(pad: &str, edits: &[Edit]) -> (String, Vec<Value>) {
    // Sort and clip to non-overlapping spans, as the CLI sends them.
    let mut spans: Vec<(usize, usize, &str)> = Vec::new();
    let mut last = 0;
    let mut sorted: Vec<&Edit> = edits.iter().collect();
    sorted.sort_by_key(|e| e.0);
    for (s, l, t) in sorted {
        let s = (*s).min(pad.len()).max(last);
        let e = (s + l).min(pad.len());
        spans.push((s, e, t));
        last = e;
    }
    let mut out = String::new();
    let mut pos = 0;
    let mut wire = Vec::new();
    for (s, e, t) in &spans {
        out.push_str(&pad[pos..*s]);
        out.push_str(t);
        pos = *e;
        wire.push(
            json!({"Span": {"uri": "", "start": {"line":1,"column":1,"offset": HEAD.len() + s},
            "end": {"line":1,"column":1,"offset": HEAD.len() + e}}, "NewText": t}),
        );
    }
    out.push_str(&pad[pos..]);
    (out, wire)
}

fn edit() -> impl Strategy<Value = Edit> {
    (0usize..300, 0usize..40, "[a-z]{0,30}")
}

fn run_delta_case(pad: String, rounds: Vec<Vec<Edit>>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::generate();
        let (engine, store) = open(dir.path(), &master).await;
        let (_id, token) = begin(&engine, None, false).await;
        let text = format!("{HEAD}{pad}{TAIL}");
        let body = format!(r#"{{"version":3,"untypedDeployment":{text},"sequenceNumber":1}}"#);
        engine
            .save_verbatim_checkpoint(&token, body.into_bytes())
            .await
            .unwrap();
        let mut pad = pad;
        for (i, edits) in rounds.iter().enumerate() {
            let (next, wire) = apply_edits(&pad, edits);
            let full = format!("{HEAD}{next}{TAIL}");
            let body = json!({"version": 3, "checkpointHash": sha256_hex(full.as_bytes()),
                "sequenceNumber": i as i64 + 2, "deploymentDelta": wire});
            let bytes = serde_json::to_vec(&body).unwrap();
            engine
                .save_delta_checkpoint(&token, bytes.clone())
                .await
                .unwrap();
            if i % 3 == 0 {
                // A retried delta is acknowledged and changes nothing.
                engine
                    .save_delta_checkpoint(&token, bytes)
                    .await
                    .unwrap();
            }
            pad = next;
        }
        let expected: Value = serde_json::from_str(&format!("{HEAD}{pad}{TAIL}")).unwrap();
        if !rounds.is_empty() {
            prop_assert_eq!(&export(&engine).await, &expected);
        }
        // A wrong hash is refused and changes nothing.
        let bad = json!({"version": 3, "checkpointHash": "0".repeat(64), "sequenceNumber": 999,
            "deploymentDelta": [{"Span": {"uri":"","start":{"line":1,"column":1,"offset":HEAD.len()},
            "end":{"line":1,"column":1,"offset":HEAD.len()}},"NewText":"zzz"}]});
        prop_assert!(engine
            .save_delta_checkpoint(&token, serde_json::to_vec(&bad).unwrap())
            .await
            .is_err());
        drop(engine);
        store.close();
        let (engine, _store) = open(dir.path(), &master).await;
        engine.complete_update(&token, "succeeded", None).await.unwrap();
        prop_assert_eq!(&export(&engine).await, &expected);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn deltas_live_offline_and_direct_agree(
        pad in "[a-z]{0,400}",
        rounds in proptest::collection::vec(proptest::collection::vec(edit(), 0..5), 0..30),
    ) {
        run_delta_case(pad, rounds)?;
    }
}

#[test]
fn many_deltas_fold_into_checkpoints_and_survive_a_restart() {
    let rounds: Vec<Vec<Edit>> = (0..230)
        .map(|i| vec![((i * 7) % 50, i % 5, format!("r{i}"))])
        .collect();
    run_delta_case("x".repeat(100), rounds).unwrap();
}
