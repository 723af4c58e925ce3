//! Reads are bounded: the engine events of an update come back in pages (by batch count and
//! by bytes) that a client follows with `continuationToken`, every event exactly once and in
//! order, however many or however large the stored batches are.

mod common;

use common::*;
use serde_json::{Value, json};

/// Follows the pages of `GET …/events` to the end; returns the sequences and page count.
async fn read_all_events(api: &Api, stack: &str, id: &str) -> (Vec<i64>, usize, usize) {
    let mut seqs = vec![];
    let mut pages = 0;
    let mut largest = 0;
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!("{stack}/update/{id}/events?continuationToken={t}"),
            None => format!("{stack}/update/{id}/events"),
        };
        let r = api.get(&path).await;
        largest = largest.max(r.body.len());
        let v = r.json();
        pages += 1;
        seqs.extend(
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["sequence"].as_i64().unwrap()),
        );
        match v.get("continuationToken").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
        assert!(pages < 1000, "pages never end");
    }
    (seqs, pages, largest)
}

#[tokio::test]
async fn events_come_back_in_bounded_pages() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let stack = stack_path("proj", "dev");
    api.create_stack("proj", "dev").await.ok();
    let (id, lease, _) = api.begin(&stack, "update", false).await;
    let leased = api.lease(&lease);

    // Many small batches: more than one page's worth of batches.
    let mut seq = 0;
    for _ in 0..300 {
        leased
            .post_gz(
                &format!("{stack}/update/{id}/events/batch"),
                json!({"events": [{"sequence": seq, "timestamp": 1,
                    "stdoutEvent": {"message": "x", "color": "raw"}}]}),
            )
            .await
            .ok();
        seq += 1;
    }
    // A few large ones: more than one page's worth of bytes (about 1.5 MB each).
    let big = "y".repeat(1_500_000);
    for _ in 0..6 {
        leased
            .post_gz(
                &format!("{stack}/update/{id}/events/batch"),
                json!({"events": [{"sequence": seq, "timestamp": 1,
                    "stdoutEvent": {"message": big, "color": "raw"}}]}),
            )
            .await
            .ok();
        seq += 1;
    }
    leased
        .post(
            &format!("{stack}/update/{id}/complete"),
            json!({"status": "succeeded"}),
        )
        .await
        .ok();

    let (seqs, pages, largest) = read_all_events(&api, &stack, &id).await;
    assert_eq!(
        seqs,
        (0..seq).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert!(
        pages >= 3,
        "{pages} pages: batch and byte caps both cut pages"
    );
    // A page stops at the first batch past 4 MiB of events.
    assert!(largest < 6 * 1024 * 1024, "a page of {largest} bytes");
    let _ = srv;
}
