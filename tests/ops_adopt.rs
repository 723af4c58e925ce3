//! `pbackend adopt` on a DIY backend the real CLI made: several projects and stacks, a
//! passphrase, secret config and outputs, tags, several updates. Every stack, every update
//! and every secret arrives; the CLI then carries on with an adopted stack through pbackend
//! with nothing to change.

mod common;

use common::cli::*;
use common::ops::pb_env;
use serde_json::Value;

const PASSPHRASE: &str = "correct horse battery staple";

/// A project logged in to the DIY backend at `url`, with the passphrase in its environment.
async fn diy_project(tc: &Toolchain, url: &str, name: &str) -> Project {
    let mut p = Project::bare(tc, url, name);
    p.set_env("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE);
    p.ok(&["login", url]).await;
    p
}

/// Copies every file of the DIY backend at `root` into `bucket` under `prefix`.
async fn upload(s3: &common::s3::S3Server, root: &std::path::Path, bucket: &str, prefix: &str) {
    use object_store::ObjectStoreExt;
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(&s3.endpoint)
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_region("us-east-1")
        .build()
        .expect("S3 client");
    let mut dirs = vec![root.join(".pulumi")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let key = object_store::path::Path::from(format!("{prefix}/{rel}"));
            let bytes = std::fs::read(&path).unwrap();
            store
                .put(&key, object_store::PutPayload::from(bytes))
                .await
                .expect("upload");
        }
    }
}

fn secret_outputs() -> &'static str {
    "  s: ${r0.secret}\n  plain: ${r0.result}\n"
}

#[tokio::test]
async fn a_diy_backend_is_adopted_whole_and_the_cli_carries_on() {
    let tc = require_cli!();
    let state = tempfile::tempdir().unwrap();
    let url = format!("file://{}", state.path().display());

    // proja/dev: two updates, secret config and a secret output, a tag.
    let a = diy_project(&tc, &url, "proja").await;
    a.write_program(&items(3, "a", 10), secret_outputs());
    a.ok(&["stack", "init", "dev", "--secrets-provider", "passphrase"])
        .await;
    a.ok(&["config", "set", "--secret", "dbpass", "hunter2"])
        .await;
    a.ok(&["config", "set", "region", "eu"]).await;
    a.ok(&["up", "--yes"]).await;
    a.write_program(&items(4, "b", 10), secret_outputs());
    a.ok(&["up", "--yes", "-m", "second"]).await;
    if version_at_least(&tc.version, 3, 228) {
        a.ok(&["stack", "tag", "set", "team", "infra"]).await;
    }
    let diy_outputs = a
        .ok(&["stack", "output", "--show-secrets", "--json"])
        .await
        .json();
    // proja/prod: one update. projb/dev: one update, another project.
    a.ok(&["stack", "init", "prod", "--secrets-provider", "passphrase"])
        .await;
    a.ok(&["up", "--yes"]).await;
    let mut b = a.sibling("projb");
    b.set_env("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE);
    b.write_program(&items(2, "c", 10), secret_outputs());
    b.ok(&["stack", "init", "dev", "--secrets-provider", "passphrase"])
        .await;
    b.ok(&["up", "--yes"]).await;

    let srv = ServerProcess::start(&[]).await;
    let db = srv.db();
    let key = vec![(
        "PULUMI_BACKEND_MASTER_KEY".to_owned(),
        MASTER_KEY.to_owned(),
    )];
    let pass = state.path().join("passphrase");
    std::fs::write(&pass, format!("{PASSPHRASE}\n")).unwrap();
    let pass = pass.display().to_string();

    // A wrong passphrase: refused, per stack, with nothing written.
    let wrong = state.path().join("wrong");
    std::fs::write(&wrong, "nope").unwrap();
    let out = pb_env(
        &db,
        false,
        &[
            "adopt",
            &url,
            "--passphrase-file",
            wrong.to_str().unwrap(),
            "--public-url",
            &srv.url,
        ],
        &key,
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.all().contains("passphrase is not the one"),
        "{}",
        out.all()
    );
    assert_eq!(
        srv.api().get("/api/user/stacks").await.json()["stacks"],
        serde_json::json!([])
    );

    // Into the running server's database.
    let out = pb_env(
        &db,
        false,
        &[
            "adopt",
            &url,
            "--passphrase-file",
            &pass,
            "--public-url",
            &srv.url,
            "--output",
            "json",
        ],
        &key,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.all());
    let report: Vec<Value> = serde_json::from_str(&out.stdout).expect("JSON");
    let by: std::collections::HashMap<&str, &Value> = report
        .iter()
        .map(|r| (r["stack"].as_str().unwrap(), r))
        .collect();
    assert_eq!(by.len(), 3, "{report:#?}");
    let dev = by["organization/proja/dev"];
    assert_eq!(
        (dev["updates"].as_i64(), dev["versions"].as_i64()),
        (Some(2), Some(2)),
        "{dev}"
    );
    assert!(dev["secrets"].as_i64().unwrap() >= 2, "{dev}");
    assert_eq!(by["organization/proja/prod"]["updates"], 1);
    assert_eq!(by["organization/projb/dev"]["updates"], 1);
    // Adopting again leaves everything alone and says so.
    let again = pb_env(
        &db,
        false,
        &[
            "adopt",
            &url,
            "--passphrase-file",
            &pass,
            "--public-url",
            &srv.url,
        ],
        &key,
    )
    .await;
    assert_eq!(again.code, 1);
    assert!(again.stdout.contains("already exists"), "{}", again.all());
    let verify = pb_env(&db, false, &["verify"], &key).await;
    assert_eq!(verify.code, 0, "{}", verify.all());

    // The same backend in an S3 bucket (a real S3-compatible server): the same stacks,
    // updates, versions and secrets.
    if let Some(s3) = common::s3::S3Server::start().await {
        s3.bucket("diy-state").await;
        upload(&s3, state.path(), "diy-state", "team").await;
        let bucket_db = state.path().join("from-s3.db");
        let mut env = key.clone();
        env.extend(s3.env());
        let out = pb_env(
            &bucket_db,
            false,
            &[
                "adopt",
                "s3://diy-state/team",
                "--passphrase-file",
                &pass,
                "--public-url",
                &srv.url,
                "--output",
                "json",
            ],
            &env,
        )
        .await;
        assert_eq!(out.code, 0, "{}", out.all());
        let from_s3: Vec<Value> = serde_json::from_str(&out.stdout).expect("JSON");
        assert_eq!(
            from_s3, report,
            "adopting from S3 and from the directory differ"
        );
    }

    // Parity with the CLI's own one-stack move: `pulumi stack migrate` of the same stack into
    // another server holds the same resources, secrets shown.
    let other = ServerProcess::start(&[]).await;
    let mut m = Project::new(&tc, &other, "proja").await;
    m.set_env("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE);
    m.write_program(&items(4, "b", 10), secret_outputs());
    std::fs::copy(
        a.path().join("Pulumi.dev.yaml"),
        m.path().join("Pulumi.dev.yaml"),
    )
    .unwrap();
    m.ok(&["stack", "migrate", &url, "dev", "--yes"]).await;
    let migrated = m
        .ok(&[
            "stack",
            "export",
            "--show-secrets",
            "--stack",
            "organization/proja/dev",
        ])
        .await
        .json();
    let adopted = pb_env(
        &db,
        false,
        &[
            "stack",
            "export",
            "organization/proja/dev",
            "--show-secrets",
        ],
        &key,
    )
    .await;
    let adopted: Value = serde_json::from_str(&adopted.stdout).expect("export JSON");
    assert_eq!(
        adopted["deployment"]["resources"], migrated["deployment"]["resources"],
        "adopt and stack migrate disagree"
    );

    // The CLI, through pbackend.
    let p = Project::new(&tc, &srv, "proja").await;
    p.write_program(&items(4, "b", 10), secret_outputs());
    p.ok(&["stack", "select", "organization/proja/dev"]).await;
    let history = p.ok(&["stack", "history", "--json"]).await.json();
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:#?}");
    assert_eq!(history[0]["message"], "second");
    assert!(history.iter().all(|h| h["result"] == "succeeded"));
    let outputs = p
        .ok(&["stack", "output", "--show-secrets", "--json"])
        .await
        .json();
    assert_eq!(outputs, diy_outputs);
    if version_at_least(&tc.version, 3, 228) {
        let tags = p.ok(&["stack", "tag", "ls", "--json"]).await.json();
        assert_eq!(tags["team"], "infra", "{tags}");
    }
    // The stack's configuration lives beside the program, encrypted for the DIY backend: set
    // it again for the service, as after `pulumi stack migrate`.
    p.ok(&["config", "set", "--secret", "dbpass", "hunter2"])
        .await;
    p.ok(&["config", "set", "region", "eu"]).await;
    p.ok(&["preview", "--expect-no-changes"]).await;
    p.ok(&["up", "--yes", "--skip-preview"]).await;
    let ls = p.ok(&["stack", "ls", "--json"]).await.json();
    assert_eq!(ls.as_array().map(|l| l.len()), Some(2), "{ls}");
}
