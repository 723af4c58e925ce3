//! `pbackend export --all` / `import --all`: a whole instance, reproduced exactly.

mod common;

use std::sync::Arc;

use common::cli::{MASTER_KEY, ServerProcess};
use common::ops::*;
use common::*;
use pbackend::engine::Engine;
use pbackend::engine::clock::SystemClock;
use pbackend::engine::crypto::MasterKey;
use pbackend::store::backup::Record;
use pbackend::store::open::{Location, open};
use serde_json::json;

async fn records(db: &std::path::Path) -> Vec<Record> {
    let store = open(&Location::parse(db), Default::default(), Default::default())
        .await
        .unwrap();
    let engine = Engine::open_offline(
        store.store.clone(),
        Some(MasterKey::from_hex(MASTER_KEY).unwrap()),
        Default::default(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let r = engine.dump_records().await.unwrap();
    drop(engine);
    store.close();
    r
}

/// An instance with a bit of everything: versions, a journaled update, events, a renamed
/// stack, a running update, tokens.
async fn populate(srv: &ServerProcess) {
    let api = srv.api();
    let db = srv.db();
    api.create_stack("proj", "dev").await.ok();
    api.post_gz(
        &format!("{}/import", stack_path("proj", "dev")),
        deployment(3, "a"),
    )
    .await
    .ok();
    journal_update(&api, "proj", "dev", &["j1", "j2"]).await;
    let dev = stack_path("proj", "dev");
    let (id, tok, _) = api.begin(&dev, "update", false).await;
    api.lease(&tok)
        .post_gz(
            &format!("{dev}/update/{id}/events/batch"),
            json!({"events": [{"sequence": 0, "timestamp": 1, "stdoutEvent": {"message": "hi", "color": "raw"}}]}),
        )
        .await
        .ok();
    api.lease(&tok)
        .post(
            &format!("{dev}/update/{id}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    api.create_stack("proj", "old").await.ok();
    api.post(
        &format!("{}/rename", stack_path("proj", "old")),
        json!({"newName": "renamed", "newProject": "other"}),
    )
    .await
    .ok();
    api.create_stack("proj", "busy").await.ok();
    let busy = stack_path("proj", "busy");
    let (bid, btok, _) = api.begin(&busy, "update", false).await;
    api.lease(&btok)
        .patch_gz(
            &format!("{busy}/update/{bid}/checkpointverbatim"),
            json!({"version": 3, "untypedDeployment": deployment(1, "b"), "sequenceNumber": 1}),
        )
        .await
        .ok();
    pb_ok(&db, false, &["tokens", "create", "--user", "alice"]).await;
}

#[tokio::test]
async fn export_all_while_serving_then_import_all_reproduces_the_database() {
    let mut srv = ServerProcess::start(&[]).await;
    populate(&srv).await;
    let db = srv.db();
    let archive = srv.dir.path().join("backup.pbk");
    // Exported while the server runs.
    let out = pb_ok(
        &db,
        false,
        &["export", "--all", "-o", archive.to_str().unwrap()],
    )
    .await;
    assert!(out.stderr.contains("Exported 3 stacks"), "{}", out.all());
    let (format, version) = pbackend::engine::backup::read_header(&archive).unwrap();
    assert_eq!((format.as_str(), version), ("pbackend-backup", 1));
    srv.stop().await;
    let original = records(&db).await;

    // Into a new database: logically identical.
    let restored_dir = tempfile::tempdir().unwrap();
    let restored = restored_dir.path().join("restored.db");
    pb_ok(
        &restored,
        true,
        &["import", "--all", archive.to_str().unwrap()],
    )
    .await;
    let copy = records(&restored).await;
    assert_eq!(copy.len(), original.len());
    assert_eq!(copy, original);

    // A non-empty target is refused unless told how to merge; nothing changes.
    let out = pb(
        &restored,
        true,
        &["import", "--all", archive.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--merge"), "{}", out.all());
    assert_eq!(records(&restored).await, original);
    // A wrong master key is refused.
    let other = restored_dir.path().join("other.db");
    let out = {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pbackend"));
        cmd.args([
            "import",
            "--all",
            archive.to_str().unwrap(),
            "--db",
            other.to_str().unwrap(),
            "--master-key",
            &"11".repeat(32),
        ]);
        cmd.output().await.unwrap()
    };
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("different master key"));
}

#[tokio::test]
async fn import_all_merges_only_when_asked() {
    let srv = ServerProcess::start(&[]).await;
    populate(&srv).await;
    let db = srv.db();
    let archive = srv.dir.path().join("backup.pbk");
    pb_ok(
        &db,
        false,
        &["export", "--all", "-o", archive.to_str().unwrap()],
    )
    .await;

    // A second instance (same master key) that already has a stack of the same name.
    let mut target = ServerProcess::start(&[]).await;
    target.api().create_stack("proj", "dev").await.ok();
    target.api().create_stack("proj", "mine").await.ok();
    let tdb = target.db();
    // import needs the database to itself.
    let out = pb(
        &tdb,
        true,
        &[
            "import",
            "--all",
            archive.to_str().unwrap(),
            "--merge",
            "skip-existing",
        ],
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("in use"), "{}", out.all());
    target.stop().await;
    let out = pb_ok(
        &tdb,
        true,
        &[
            "import",
            "--all",
            archive.to_str().unwrap(),
            "--merge",
            "skip-existing",
        ],
    )
    .await;
    assert!(out.stderr.contains("Skipped 1 stacks"), "{}", out.all());
    assert!(target.try_start().await);
    let api = target.api();
    // Ours kept, theirs added with history and state.
    assert_eq!(
        api.get(&format!("{}/updates", stack_path("proj", "dev")))
            .await
            .json()["updates"],
        json!([])
    );
    api.get(&stack_path("proj", "mine")).await.ok();
    let h = api
        .get(&format!("{}/updates", stack_path("other", "renamed")))
        .await
        .json();
    assert_eq!(h["updates"], json!([]));
    api.get(&stack_path("other", "renamed")).await.ok();
    let busy = api
        .get(&format!("{}/export", stack_path("proj", "busy")))
        .await;
    busy.ok();
}
