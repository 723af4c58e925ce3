//! Bad input of every kind gets a clear 4xx in the Pulumi error shape, and nothing stored
//! changes.

mod common;

use common::*;
use pbackend::engine::EngineConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends a request exactly as written (no client-side path normalisation) and returns the
/// status and body.
async fn raw_request(base: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: token {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

async fn snapshot(
    api: &Api,
    stack: &str,
) -> (serde_json::Value, serde_json::Value, serde_json::Value) {
    (
        api.get(stack).await.json(),
        api.get(&format!("{stack}/export")).await.json(),
        api.get(&format!("{stack}/updates")).await.json(),
    )
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_changes() {
    let srv = TestServer::start_with(Options {
        clock: None,
        config: EngineConfig {
            max_state_bytes: 1024 * 1024,
            ..EngineConfig::default()
        },
        ..Options::default()
    })
    .await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    api.create_stack("proj", "dev").await.ok();
    api.post_gz(&format!("{stack}/import"), deployment(3, "keep"))
        .await
        .ok();
    let (id, tok, _) = api.begin(&stack, "update", false).await;
    let lease = api.lease(&tok);
    lease
        .patch_gz(
            &format!("{stack}/update/{id}/checkpoint"),
            json!({"isInvalid": false, "version": 3, "deployment": deployment(4, "keep")["deployment"]}),
        )
        .await
        .ok();
    let before = snapshot(&api, &stack).await;
    let ck = format!("{stack}/update/{id}/checkpoint");

    // Malformed JSON, plain and gzipped.
    let r = lease
        .send("PATCH", &ck, Some(b"{not json".to_vec()), false, &[])
        .await;
    assert!(r.error(400).starts_with("Bad Request: "));
    lease
        .send("PATCH", &ck, Some(b"{not json".to_vec()), true, &[])
        .await
        .error(400);
    lease.patch_gz(&ck, json!({"version": 3})).await.error(400);
    lease
        .patch_gz(&ck, json!({"version": 99, "deployment": {}}))
        .await
        .error(400);
    lease
        .send(
            "PATCH",
            &ck,
            Some(b"\x1f\x8b garbage".to_vec()),
            false,
            &[("Content-Encoding", "gzip")],
        )
        .await
        .error(400);
    api.post(&format!("/api/stacks/{ORG}/proj"), json!({"stack": "x"}))
        .await
        .error(400);
    api.post_gz(&format!("{stack}/import"), json!({"version": 3}))
        .await
        .error(400);
    api.post_gz(
        &format!("{stack}/import"),
        json!({"version": 3, "deployment": {"manifest": {}, "resources": [{"no": "urn"}]}}),
    )
    .await
    .error(400);

    // A wrong content type, and an unknown content encoding.
    lease
        .send(
            "PATCH",
            &ck,
            Some(b"{}".to_vec()),
            false,
            &[("Content-Type", "text/plain")],
        )
        .await
        .error(415);
    lease
        .send(
            "PATCH",
            &ck,
            Some(b"{}".to_vec()),
            false,
            &[("Content-Encoding", "br")],
        )
        .await
        .error(415);

    // A gzip bomb (64 MiB of zeros in ~64 KiB) on a small-limit route and on a state route.
    let bomb = gzip(&vec![b' '; 64 * 1024 * 1024]);
    assert!(bomb.len() < 200 * 1024);
    let r = api
        .send(
            "POST",
            &format!("{stack}/batch-decrypt"),
            Some(bomb.clone()),
            false,
            &[("Content-Encoding", "gzip")],
        )
        .await;
    assert!(r.error(413).contains("decompressed body is larger"));
    lease
        .send(
            "PATCH",
            &ck,
            Some(bomb),
            false,
            &[("Content-Encoding", "gzip")],
        )
        .await
        .error(413);
    // An oversized body (beyond the 1 MiB state limit configured here).
    let big = json!({"isInvalid": false, "version": 3, "deployment": deployment(1, &"x".repeat(2 * 1024 * 1024))["deployment"]});
    lease.patch(&ck, big).await.error(413);

    // Unknown names.
    api.get("/api/stacks/nope/proj/dev").await.error(404);
    api.get(&stack_path("proj", "missing")).await.error(404);
    api.get(&stack_path("missing", "dev")).await.error(404);
    api.post(
        &format!("{}/update", stack_path("proj", "missing")),
        json!({}),
    )
    .await
    .error(404);
    api.get(&format!("{stack}/update/not-an-update"))
        .await
        .error(404);
    api.get(&format!("{stack}/frobnicate/{id}"))
        .await
        .error(404);

    // Names with path tricks never reach the store as names.
    for path in [
        format!("/api/stacks/{ORG}/proj/../export"),
        format!("/api/stacks/{ORG}/proj/%2e%2e/export"),
        format!("/api/stacks/{ORG}/proj/a%2Fb/export"),
        format!("/api/stacks/{ORG}/..%2F..%2Fetc/dev/export"),
        format!("/api/stacks/{ORG}/proj/dev%00/export"),
        format!("/api/stacks/{ORG}/proj/{}/export", "x".repeat(300)),
    ] {
        let (status, body) = raw_request(&srv.url, "GET", &path, b"").await;
        assert!((400..500).contains(&status), "{path}: {status} {body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: {body}"));
        assert_eq!(v["code"], json!(status), "{path}");
    }
    let (status, _) = raw_request(
        &srv.url,
        "POST",
        &format!("/api/stacks/{ORG}/proj"),
        br#"{"stackName":"../evil"}"#,
    )
    .await;
    assert_eq!(status, 400);
    api.post(
        &format!("/api/stacks/{ORG}/proj"),
        json!({"stackName": "a/b"}),
    )
    .await
    .error(400);

    // Nothing changed: the stack, its state and its history are as before, and the running
    // update's checkpoint is intact.
    assert_eq!(snapshot(&api, &stack).await, before);
    lease
        .post(
            &format!("{stack}/update/{id}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();
    assert_eq!(
        api.get(&format!("{stack}/export")).await.json(),
        deployment(4, "keep")
    );
}

#[tokio::test]
async fn every_error_has_the_pulumi_shape() {
    let srv = TestServer::start().await;
    let api = srv.api();
    api.get("/api/nowhere").await.error(404);
    api.send("PUT", "/api/user", None, false, &[])
        .await
        .error(405);
    api.with_auth(None).get("/api/user").await.error(401);
    api.with_auth(Some("token wrong".into()))
        .get("/api/user")
        .await
        .error(401);
    api.with_auth(Some("Bearer x".into()))
        .get("/api/user")
        .await
        .error(401);
    // Capabilities need no login (the CLI asks before it has one).
    api.with_auth(None).get("/api/capabilities").await.ok();
    let r = api.get("/api/user/organizations/default").await.json();
    assert_eq!(r, json!({"GitHubLogin": ORG, "Messages": []}));
    let r = api.get("/api/user").await;
    assert!(r.headers.contains_key("x-pulumi-request-id"));
    assert_eq!(r.json()["organizations"][0]["githubLogin"], ORG);
}
