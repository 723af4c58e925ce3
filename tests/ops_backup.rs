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

/// The `.pbk` backups in `dir` (names), sorted.
fn backups_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".pbk"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn backup_sets_rotate_are_checksummed_and_restore_only_when_intact() {
    let mut srv = ServerProcess::start(&[]).await;
    populate(&srv).await;
    let db = srv.db();
    let sets = srv.dir.path().join("backups");
    let to = sets.to_str().unwrap();
    // Three backups while the server runs (several in one second get -2, -3), keeping two.
    let mut taken = Vec::new();
    for _ in 0..3 {
        let out = pb_ok(
            &db,
            false,
            &["backup", "--to", to, "--keep", "2", "--output", "json"],
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
        assert_eq!(v["stacks"], 3, "{v}");
        taken.push(v["backup"]["name"].as_str().unwrap().to_owned());
    }
    let left = backups_in(&sets);
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        !left.contains(&taken[0]) && left.contains(&taken[2]),
        "{taken:?} {left:?}"
    );
    // Each has a checksum file in sha256sum's format.
    for name in &left {
        let sum = std::fs::read_to_string(sets.join(format!("{name}.sha256"))).unwrap();
        assert!(sum.ends_with(&format!("  {name}\n")) && sum.len() == 64 + 2 + name.len() + 1);
    }
    srv.stop().await;
    let original = records(&db).await;

    // The directory restores its newest backup, identical to the source.
    let target_dir = tempfile::tempdir().unwrap();
    let restored = target_dir.path().join("restored.db");
    let out = pb_ok(&restored, true, &["restore", to]).await;
    assert!(out.stdout.contains(&taken[2]), "{}", out.all());
    assert_eq!(records(&restored).await, original);
    // Not into a database that has stacks.
    let out = pb(&restored, true, &["restore", to]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("empty database"), "{}", out.all());
    assert_eq!(records(&restored).await, original);

    // A damaged copy is refused before any database is created.
    let damaged = target_dir.path().join(&taken[2]);
    let mut bytes = std::fs::read(sets.join(&taken[2])).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&damaged, &bytes).unwrap();
    std::fs::copy(
        sets.join(format!("{}.sha256", taken[2])),
        target_dir.path().join(format!("{}.sha256", taken[2])),
    )
    .unwrap();
    let fresh = target_dir.path().join("fresh.db");
    let out = pb(&fresh, true, &["restore", damaged.to_str().unwrap()]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("is damaged"), "{}", out.all());
    assert!(
        !fresh.exists(),
        "a database was created for a damaged backup"
    );
    // Without its checksum file: incomplete.
    std::fs::remove_file(target_dir.path().join(format!("{}.sha256", taken[2]))).unwrap();
    let out = pb(&fresh, true, &["restore", damaged.to_str().unwrap()]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no checksum file"), "{}", out.all());
    // With another master key: refused, nothing created.
    let out = {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_pbackend"));
        cmd.args(["restore", to, "--db", fresh.to_str().unwrap()])
            .args(["--master-key", &"11".repeat(32)]);
        cmd.output().await.unwrap()
    };
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("different master key"));
    assert!(!fresh.exists());
}

#[tokio::test]
async fn serve_takes_scheduled_backups_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let sets = dir.path().join("sets");
    let to = sets.to_str().unwrap().to_owned();
    let srv = ServerProcess::start(&[
        "--backup-to",
        &to,
        "--backup-schedule",
        "1s",
        "--backup-keep",
        "2",
    ])
    .await;
    srv.api().create_stack("proj", "dev").await.ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while srv.log(1).matches("scheduled backup taken").count() < 4 {
        assert!(std::time::Instant::now() < deadline, "{}", srv.log(1));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let left = backups_in(&sets);
    assert_eq!(left.len(), 2, "{left:?}");
    for name in &left {
        assert!(sets.join(format!("{name}.sha256")).exists());
    }
}

/// `(version, sha256)` of every kept version of `organization/proj/dev` in `db`.
async fn kept_versions(db: &std::path::Path) -> Vec<(i64, String)> {
    let out = pb_ok(
        db,
        true,
        &["stack", "show", "organization/proj/dev", "--output", "json"],
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    v["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|x| {
            (
                x["version"].as_i64().unwrap(),
                x["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_backup_taken_during_pulumi_up_restores_to_a_verified_consistent_instance() {
    use common::cli::{Project, items};
    let tc = require_cli!();
    let srv = ServerProcess::start(&[]).await;
    let db = srv.db();
    let p = Project::new(&tc, &srv, "proj").await;
    p.write_program(&items(20, "a", 50), "");
    p.ok(&["stack", "init", "dev"]).await;
    p.ok(&["up", "--yes"]).await;
    p.write_program(&items(200, "b", 200), "");
    let running = p
        .command(&["up", "--yes", "--skip-preview"])
        .spawn()
        .expect("pulumi up");
    wait_running(&srv.api(), &stack_path("proj", "dev")).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let sets = srv.dir.path().join("sets");
    pb_ok(&db, false, &["backup", "--to", sets.to_str().unwrap()]).await;
    let up = running.wait_with_output().await.unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );

    let target = tempfile::tempdir().unwrap();
    let restored = target.path().join("restored.db");
    pb_ok(&restored, true, &["restore", sets.to_str().unwrap()]).await;
    let verify = pb(&restored, true, &["verify"]).await;
    assert_eq!(verify.code, 0, "{}", verify.all());
    let show = pb_ok(
        &restored,
        true,
        &["stack", "show", "organization/proj/dev", "--output", "json"],
    )
    .await;
    let show: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert!(
        !show["activeUpdate"].is_null(),
        "the backup was meant to catch the update running: {show}"
    );
    // Every version the backup holds is the source's version, byte for byte (by SHA-256):
    // the snapshot is one point of the source's history, not a mix of two.
    let source = kept_versions(&db).await;
    let copy = kept_versions(&restored).await;
    assert!(!copy.is_empty());
    for v in &copy {
        assert!(source.contains(v), "{v:?} is not in the source: {source:?}");
    }
}

#[tokio::test]
async fn backups_to_an_s3_bucket_rotate_and_restore() {
    let Some(s3) = common::s3::S3Server::start().await else {
        return;
    };
    s3.bucket("pbackend-backups").await;
    let env = s3.env();
    let mut srv = ServerProcess::start_with_env(
        &[
            "--backup-to",
            "s3://pbackend-backups/scheduled",
            "--backup-schedule",
            "1s",
            "--backup-keep",
            "2",
        ],
        env.clone(),
    )
    .await;
    populate(&srv).await;
    // Taken after populate: a backup that starts later than this count.
    let before = srv.log(1).matches("scheduled backup taken").count();
    let db = srv.db();
    // By hand, under another prefix, keeping two.
    let mut taken = Vec::new();
    for _ in 0..3 {
        let out = pb_env(
            &db,
            false,
            &[
                "backup",
                "--to",
                "s3://pbackend-backups/manual",
                "--keep",
                "2",
                "--output",
                "json",
            ],
            &env,
        )
        .await;
        assert_eq!(out.code, 0, "{}", out.all());
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
        assert!(
            v["backup"]["location"]
                .as_str()
                .unwrap()
                .starts_with("s3://pbackend-backups/manual/pbackend-")
        );
        taken.push(v["backup"]["name"].as_str().unwrap().to_owned());
        if taken.len() == 3 {
            assert_eq!(v["pruned"], json!([taken[0]]), "{v}");
        }
    }
    // The server's own, on its schedule.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while srv.log(1).matches("scheduled backup taken").count() < before + 2 {
        assert!(std::time::Instant::now() < deadline, "{}", srv.log(1));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    srv.stop().await;
    let original = records(&db).await;

    // The newest of a prefix, and one named backup, each into a new database.
    let target = tempfile::tempdir().unwrap();
    for (i, from) in [
        "s3://pbackend-backups/manual".to_owned(),
        format!("s3://pbackend-backups/manual/{}", taken[1]),
    ]
    .iter()
    .enumerate()
    {
        let restored = target.path().join(format!("r{i}.db"));
        let out = pb_env(&restored, true, &["restore", from], &env).await;
        assert_eq!(out.code, 0, "{from}: {}", out.all());
        assert_eq!(records(&restored).await, original, "{from}");
    }
    // The pruned one is gone.
    let out = pb_env(
        &target.path().join("gone.db"),
        true,
        &[
            "restore",
            &format!("s3://pbackend-backups/manual/{}", taken[0]),
        ],
        &env,
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no backup at"), "{}", out.all());
    // The newest scheduled one restores too, with the same rows.
    let restored = target.path().join("scheduled.db");
    let out = pb_env(
        &restored,
        true,
        &["restore", "s3://pbackend-backups/scheduled"],
        &env,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(records(&restored).await.len(), original.len());
}
