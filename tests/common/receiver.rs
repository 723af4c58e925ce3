//! A real webhook receiver for tests: an HTTP server on a random loopback port that records
//! every request (headers, exact body, when it arrived) and answers as told (a status, a
//! delay, or holding the answer until released).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn kind(&self) -> String {
        self.header("pulumi-webhook-kind")
    }
}

#[derive(Default)]
struct Inner {
    got: Vec<Received>,
    /// Statuses to answer in turn; when empty, 200.
    script: Vec<u16>,
    /// Hold every answer until `release` is notified.
    hold: bool,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    release: Arc<Notify>,
}

async fn handle(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let hold = {
        let mut g = r.inner.lock().unwrap();
        g.got.push(Received {
            headers,
            body: body.to_vec(),
            at: Instant::now(),
        });
        g.hold
    };
    if hold {
        r.release.notified().await;
    }
    let code = {
        let mut g = r.inner.lock().unwrap();
        if g.script.is_empty() {
            200
        } else {
            g.script.remove(0)
        }
    };
    StatusCode::from_u16(code).unwrap()
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let r = Receiver {
            url,
            inner: Default::default(),
            release: Arc::new(Notify::new()),
        };
        let app = axum::Router::new()
            .route("/hook", post(handle))
            .with_state(r.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        r
    }

    /// Answer the next requests with these statuses, in order (then 200).
    pub fn answer(&self, statuses: &[u16]) {
        self.inner.lock().unwrap().script = statuses.to_vec();
    }

    /// Hold every answer until [`Receiver::release`].
    pub fn hold(&self, on: bool) {
        self.inner.lock().unwrap().hold = on;
    }

    pub fn release(&self) {
        self.hold(false);
        self.release.notify_waiters();
    }

    pub fn got(&self) -> Vec<Received> {
        self.inner.lock().unwrap().got.clone()
    }

    /// Waits until `pred` holds for what arrived (at most 30 s).
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.got();
            if pred(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver never saw {what}; it got: {:#?}",
                got.iter()
                    .map(|r| (r.kind(), String::from_utf8_lossy(&r.body).into_owned()))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Checks `Pulumi-Webhook-Signature` the way a receiver would: hex HMAC-SHA256 of the exact
/// body with the shared secret, compared in constant time.
pub fn signature_ok(r: &Received, secret: &str) -> bool {
    use hmac::{Hmac, KeyInit, Mac};
    let Ok(sig) = hex::decode(r.header("pulumi-webhook-signature")) else {
        return false;
    };
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&r.body);
    mac.verify_slice(&sig).is_ok()
}
