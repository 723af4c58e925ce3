//! Behind a reverse proxy (a real HAProxy that appends `X-Forwarded-For`): with
//! `--trusted-proxies` naming the proxy, audit events and the access log carry the client's
//! address; a forged header from the client itself, or any header when no proxy is trusted,
//! changes nothing.
//!
//! Loopback has a whole /8, so the test's "clients" connect from 127.0.0.2 and 127.0.0.3 while
//! the proxy reaches the server from 127.0.0.1.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::cli::*;
use common::proxy::{self, Haproxy, Routing};
use common::*;
use serde_json::{Value, json};

/// Creates `project/dev` through `base`, connecting from `from`, with a forged
/// `X-Forwarded-For`.
async fn create_from(base: &str, from: Ipv4Addr, project: &str) {
    let mut api = Api::new(base, CLI_TOKEN);
    api.http = reqwest::Client::builder()
        .local_address(IpAddr::V4(from))
        .build()
        .expect("client");
    let r = api
        .send(
            "POST",
            &format!("/api/stacks/organization/{project}"),
            Some(serde_json::to_vec(&json!({"stackName": "dev"})).unwrap()),
            false,
            &[("X-Forwarded-For", "203.0.113.9")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// The source address of the `stack-created` event of `project`.
async fn created_by_address(srv: &ServerProcess, project: &str) -> String {
    let r = srv.api().get("/api/orgs/organization/auditlogs").await;
    let events = r.json()["auditLogEvents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let e: &Value = events
        .iter()
        .find(|e| e["event"] == "stack-created" && e.to_string().contains(project))
        .unwrap_or_else(|| panic!("no stack-created event for {project}: {events:#?}"));
    e["sourceIP"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    let Some(bin) = proxy::available() else {
        return;
    };
    let trusting = ServerProcess::start(&["--trusted-proxies", "127.0.0.1/32"]).await;
    let front = Haproxy::start(&bin, &[trusting.port], Routing::RoundRobin).await;

    // Through the proxy: the client is the address the proxy appended, not the one the
    // client wrote itself.
    create_from(&front.url, Ipv4Addr::new(127, 0, 0, 2), "viaproxy").await;
    assert_eq!(created_by_address(&trusting, "viaproxy").await, "127.0.0.2");
    // Straight to the server from an address that is no proxy: its header is ignored.
    create_from(&trusting.url, Ipv4Addr::new(127, 0, 0, 3), "direct").await;
    assert_eq!(created_by_address(&trusting, "direct").await, "127.0.0.3");
    // The access log shows the client too.
    assert!(trusting.log(1).contains("127.0.0.2"), "{}", trusting.log(1));
    assert!(
        !trusting.log(1).contains("203.0.113.9"),
        "a forged address was believed"
    );

    // Without --trusted-proxies the proxy is the client.
    let plain = ServerProcess::start(&[]).await;
    let front = Haproxy::start(&bin, &[plain.port], Routing::RoundRobin).await;
    create_from(&front.url, Ipv4Addr::new(127, 0, 0, 2), "untrusted").await;
    assert_eq!(created_by_address(&plain, "untrusted").await, "127.0.0.1");
}
