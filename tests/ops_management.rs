//! The management listener: `/healthz`, `/readyz` (which fails while the server drains on
//! SIGTERM) and `/metrics` in the Prometheus format, checked with Prometheus's own
//! `promtool` when it is installed (`scripts/test-deps.sh` installs it; CI requires it).

mod common;

use std::time::{Duration, Instant};

use common::cli::{CLI_TOKEN, ServerProcess, free_port};
use tokio::io::AsyncWriteExt;

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let port = free_port();
    let mgmt = format!("127.0.0.1:{port}");
    let mut srv = ServerProcess::start(&["--management-addr", &mgmt]).await;
    let base = format!("http://{mgmt}");
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    assert_eq!(get(&format!("{base}/readyz")).await.0, 200);
    // The API port does not serve them.
    assert_eq!(get(&format!("{}/metrics", srv.url)).await.0, 404);

    let api = srv.api();
    api.create_stack("p", "s").await.ok();
    api.get("/api/stacks/organization/p/s").await.ok();
    api.with_auth(Some("token nope".into()))
        .get("/api/user")
        .await;
    // An update holding the stack, with a journal batch of two entries and a checkpoint
    // sent the old way on another stack.
    let path = "/api/stacks/organization/p/s";
    let (id, token, _) = api.begin(path, "update", false).await;
    let r = api
        .lease(&token)
        .patch_gz(
            &format!("{path}/update/{id}/journalentries"),
            serde_json::json!({"entries": [
                {"version":1,"kind":6,"sequenceID":1,"operationID":0,"removeOld":null,"removeNew":null,
                 "secretsProvider":{"type":"service","state":{"url":"u","owner":"organization","project":"p","stack":"s"}}},
                {"version":1,"kind":0,"sequenceID":2,"operationID":1,"removeOld":null,"removeNew":null,
                 "operation":{"resource":common::ops::resource("a", serde_json::json!({})),"type":"creating"}}
            ]}),
        )
        .await;
    assert!(r.status < 300, "{}", String::from_utf8_lossy(&r.body));
    let (status, text) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    for needle in [
        "pbackend_http_requests_total{route=\"/api/stacks/{org}/{project}/{stack}\",method=\"GET\",status=\"200\"} 1",
        "pbackend_http_request_duration_seconds_bucket",
        "pbackend_auth_failures_total 1",
        "pbackend_database_size_bytes",
        "pbackend_build_info{version=",
        "pbackend_running_updates 1",
        "pbackend_live_leases 1",
        "pbackend_state_writes_total{mode=\"journal\"} 1",
        "pbackend_state_write_bytes_total{mode=\"journal\"}",
        "pbackend_journal_entries_total 2",
        "pbackend_writer_queue_depth 0",
        "pbackend_write_transaction_duration_seconds_count",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    assert!(
        !text.contains("/api/stacks/organization/p/s"),
        "raw paths never become labels"
    );
    promtool_check(&text);

    // Draining: a request still being sent keeps the server up after SIGTERM, and
    // readiness fails meanwhile.
    let mut slow = tokio::net::TcpStream::connect(srv.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /api/stacks/organization/p HTTP/1.1\r\nHost: x\r\nAuthorization: token \
         {CLI_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"stack"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    srv.terminate();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(&format!("{base}/readyz")).await;
        if status == 503 {
            assert!(body.contains("draining"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readyz never failed while draining ({status})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get(&format!("{base}/healthz")).await.0,
        200,
        "alive while draining"
    );
    drop(slow);
    let code = tokio::time::timeout(Duration::from_secs(30), srv.wait_exit())
        .await
        .expect("the server stops once the request is gone");
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn a_stuck_request_holds_the_exit_no_longer_than_the_shutdown_grace() {
    // The body idle timeout (60 s) would keep this request alive far longer than the grace.
    let mut srv = ServerProcess::start(&["--shutdown-grace", "2s"]).await;
    let mut stuck = tokio::net::TcpStream::connect(srv.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /api/stacks/organization/p HTTP/1.1\r\nHost: x\r\nAuthorization: token \
         {CLI_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"stack"
    );
    stuck.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    srv.terminate();
    let code = tokio::time::timeout(Duration::from_secs(30), srv.wait_exit())
        .await
        .expect("the server stops once the grace period is over");
    assert_eq!(code, Some(0));
    let log = srv.log(1);
    assert!(log.contains("after the shutdown grace period"), "{log}");
    drop(stuck);
}

/// After a real `pulumi up`: the counters moved the way the CLI wrote, nothing holds a stack
/// any more, and the exposition still parses.
#[tokio::test]
async fn metrics_after_a_real_pulumi_up() {
    let tc = require_cli!();
    let port = free_port();
    let mgmt = format!("127.0.0.1:{port}");
    let srv = ServerProcess::start(&["--management-addr", &mgmt]).await;
    let p = common::cli::Project::new(&tc, &srv, "proj").await;
    p.write_program(&common::cli::items(5, "m", 10), "");
    p.ok(&["stack", "init", "dev"]).await;
    p.ok(&["up", "--yes"]).await;
    let (status, text) = get(&format!("http://{mgmt}/metrics")).await;
    assert_eq!(status, 200);
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    // Journaling CLIs write journal entries, older ones checkpoints: one of them moved.
    let journal = value("pbackend_journal_entries_total");
    let checkpoints = value("pbackend_state_writes_total{mode=\"checkpoint\"}")
        + value("pbackend_state_writes_total{mode=\"verbatim\"}")
        + value("pbackend_state_writes_total{mode=\"delta\"}");
    assert!(journal + checkpoints > 0.0, "{text}");
    assert_eq!(value("pbackend_running_updates"), 0.0, "{text}");
    assert!(value("pbackend_write_transaction_duration_seconds_count") > 0.0);
    promtool_check(&text);
}

/// `promtool check metrics` on an exposition (required in CI, skipped where not installed).
fn promtool_check(text: &str) {
    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(_) if std::env::var_os("PBACKEND_REQUIRE_PROMTOOL").is_some() => {
            panic!("promtool is required (PBACKEND_REQUIRE_PROMTOOL) but not installed")
        }
        Err(_) => eprintln!("SKIPPED: promtool is not installed (scripts/test-deps.sh)"),
    }
}
