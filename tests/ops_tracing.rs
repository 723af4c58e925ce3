//! `--otel-endpoint`: traces over OTLP/HTTP to a receiver of the test's own. A request's span
//! arrives with its store transactions as child spans of the same trace.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::cli::*;
use serde_json::Value;

type Received = Arc<Mutex<Vec<Value>>>;

async fn traces(State(got): State<Received>, body: Bytes) -> &'static str {
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        got.lock().unwrap().push(v);
    }
    "{}"
}

/// Every span received: (name, trace id, span id, parent span id).
fn spans(got: &Received) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for body in got.lock().unwrap().iter() {
        for rs in body["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let f = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                    out.push((f("name"), f("traceId"), f("spanId"), f("parentSpanId")));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn requests_and_their_store_transactions_arrive_as_one_trace() {
    let got: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(got.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let srv = ServerProcess::start_with_env(
        &["--otel-endpoint", &endpoint],
        vec![("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into())],
    )
    .await;
    srv.api().create_stack("proj", "dev").await.ok();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = spans(&got);
        // Store work outside any request (pollers) starts no trace of its own.
        assert!(
            all.iter().all(|s| s.0 == "request" || !s.3.is_empty()),
            "a root store span: {all:?}"
        );
        let child = all.iter().filter(|s| s.0 == "request").find_map(|r| {
            all.iter()
                .find(|s| s.0 == "store.write" && s.1 == r.1 && s.3 == r.2)
        });
        if child.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no request span with a store.write child: {:?}\n{}",
            all.iter()
                .map(|s| format!("{} {} {} {}", s.0, &s.1[..6], s.2, s.3))
                .collect::<Vec<_>>(),
            srv.log(1)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
