//! Log streams: the access log and the audit log each routed to a file of their own (or
//! off), in text or JSON, apart from the operational log.

mod common;

use std::time::{Duration, Instant};

use common::cli::*;
use common::ops::serve_until_up;
use serde_json::Value;

async fn wait_for(path: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{needle} not in {}:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn access_and_audit_streams_go_where_they_are_told() {
    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access.log");
    let audit = dir.path().join("audit.jsonl");
    let (a, b) = (access.display().to_string(), audit.display().to_string());
    let srv = ServerProcess::start(&[
        "--access-log",
        &a,
        "--access-log-format",
        "json",
        "--audit-log",
        &b,
        "--audit-log-format",
        "json",
        "--log-level",
        "info",
    ])
    .await;
    let api = srv.api();
    api.create_stack("proj", "dev").await.ok();
    let r = api
        .with_auth(Some("token nope".into()))
        .get("/api/user")
        .await;
    assert_eq!(r.status, 401);

    // Every request, successful ones too whatever --log-level, as JSON lines.
    let text = wait_for(&access, "\"status\":401").await;
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let created = lines
        .iter()
        .find(|l| l["fields"]["method"] == "POST")
        .expect("the stack creation");
    assert_eq!(created["fields"]["status"], 200);
    assert_eq!(created["fields"]["route"], "/api/stacks/{org}/{project}");
    assert_eq!(created["fields"]["peer"], "127.0.0.1");
    assert!(lines.iter().all(|l| l["target"] == "pbackend::access"));

    // Audit events once committed: the creation and the refusal.
    let text = wait_for(&audit, "auth-failure").await;
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| e["fields"]["event"].as_str())
        .collect();
    assert!(
        kinds.contains(&"stack-created") && kinds.contains(&"auth-failure"),
        "{kinds:?}"
    );

    // Neither is in the operational log; no token ever is.
    let main = srv.log(1);
    assert!(
        !main.contains("pbackend::access") && !main.contains("audit event"),
        "{main}"
    );
    assert!(!main.contains("nope") && !text.contains("nope"));
}

#[tokio::test]
async fn the_access_log_can_be_off_and_a_bad_log_file_stops_the_start() {
    let srv = ServerProcess::start(&["--access-log", "off"]).await;
    srv.api().get("/api/user").await.ok();
    srv.api().get("/api/nothing-here").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let main = srv.log(1);
    assert!(
        !main.contains("request served") && !main.contains("request refused"),
        "{main}"
    );

    let dir = tempfile::tempdir().unwrap();
    let (code, out) = serve_until_up(
        dir.path(),
        &[
            "serve",
            "--db",
            "x.db",
            "--audit-log",
            "/nonexistent/dir/audit.log",
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("cannot open the log file /nonexistent/dir/audit.log"),
        "{out}"
    );
}
