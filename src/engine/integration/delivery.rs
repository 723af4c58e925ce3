//! Sending webhook deliveries from the outbox: a worker claims what is due, sends each with
//! a timeout, signs the exact body with the hook's secret, records every attempt (status,
//! duration, an excerpt of the answer) and either settles the delivery or schedules the next
//! attempt with exponential backoff and jitter. Nothing here runs inside a CLI request: the
//! change that raised an event only wrote its outbox row.
//!
//! Destinations are checked before every send (and when a hook is saved): link-local and
//! cloud-metadata addresses are refused always, loopback unless allowed
//! (`--webhooks-allow-loopback`, for tests and single-host setups).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::engine::Engine;
use crate::engine::crypto;
use crate::engine::error::{EngineError, EngineResult};
use crate::store::integration::{AttemptRow, OutboxRow, Settle};

/// How long past its timeout a claimed delivery is held before another worker may take it
/// again (a crash mid-send is retried after the hold, with a new attempt id).
const HOLD_MARGIN_SECS: i64 = 5;

/// The most of a receiver's answer kept in the record.
const EXCERPT: usize = 4096;

/// Deliveries sent at once by the worker.
const BATCH: i64 = 8;

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Deliver to loopback addresses (off by default: a hook must not reach services on the
    /// server's own host).
    pub allow_loopback: bool,
    /// Attempts per delivery before it is given up.
    pub max_attempts: i64,
    /// The longest one attempt may take.
    pub timeout: Duration,
    /// The first retry's delay; each next one doubles, up to an hour.
    pub first_retry_secs: i64,
}

impl WebhookConfig {
    /// Until when a delivery claimed at `now` is left to its worker.
    pub fn hold_until(&self, now: i64) -> i64 {
        now + i64::try_from(self.timeout.as_secs()).unwrap_or(60) + HOLD_MARGIN_SECS
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_loopback: false,
            max_attempts: 8,
            timeout: Duration::from_secs(10),
            first_retry_secs: 1,
        }
    }
}

/// Whether a failed attempt may be tried again later (queued events) or not (a ping or a
/// redelivery, answered to the caller right away).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Queued,
    Now,
}

/// The HTTP client deliveries go through: no redirects (a redirect could lead anywhere).
pub struct Sender {
    client: reqwest::Client,
}

impl Sender {
    pub fn new() -> EngineResult<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pbackend/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EngineError::Internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(Sender { client })
    }
}

fn refused_ip(ip: IpAddr, cfg: &WebhookConfig) -> Option<&'static str> {
    let metadata_v6: IpAddr =
        IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254));
    match ip {
        _ if ip.is_unspecified() => Some("an unspecified address"),
        _ if ip.is_multicast() => Some("a multicast address"),
        _ if ip == metadata_v6 => Some("a cloud metadata address"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("a link-local (cloud metadata) address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("a broadcast address"),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("a link-local address"),
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local()) => {
            Some("a link-local (cloud metadata) address")
        }
        _ if ip.is_loopback() && !cfg.allow_loopback => {
            Some("a loopback address (allow with --webhooks-allow-loopback)")
        }
        _ => None,
    }
}

/// Checks a payload URL as written: an absolute http(s) URL whose host, when it is an
/// address (or `localhost`), is one deliveries may go to.
pub fn check_url(url: &str, cfg: &WebhookConfig) -> EngineResult<()> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| EngineError::Invalid(format!("invalid payload URL {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(EngineError::Invalid(format!(
            "invalid payload URL {url:?}: use http or https"
        )));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| EngineError::Invalid(format!("invalid payload URL {url:?}: no host")))?;
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host.eq_ignore_ascii_case("localhost") {
        Some(IpAddr::from([127, 0, 0, 1]))
    } else {
        literal.parse::<IpAddr>().ok()
    };
    if let Some(ip) = ip
        && let Some(why) = refused_ip(ip, cfg)
    {
        return Err(EngineError::Invalid(format!(
            "payload URL {url:?} points to {why}; webhooks may not be delivered there"
        )));
    }
    Ok(())
}

/// Resolves the URL's host and checks every address it has now (a name may point anywhere).
async fn check_destination(url: &str, cfg: &WebhookConfig) -> Result<(), String> {
    check_url(url, cfg).map_err(|e| e.to_string())?;
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    for a in addrs {
        if let Some(why) = refused_ip(a.ip(), cfg) {
            return Err(format!("{host} resolves to {why}; not delivered"));
        }
    }
    Ok(())
}

/// The hex HMAC-SHA256 of `body` under `secret` (`Pulumi-Webhook-Signature`).
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The body for a hook's format: the raw payload, or a chat message made from it.
fn render(format: &str, kind: &str, raw: &str) -> String {
    if format == "raw" {
        return raw.to_owned();
    }
    let v: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
    let who = v
        .pointer("/user/githubLogin")
        .and_then(|x| x.as_str())
        .unwrap_or("someone");
    let stack = format!(
        "{}/{}/{}",
        v.pointer("/organization/githubLogin")
            .and_then(|x| x.as_str())
            .unwrap_or(""),
        s("projectName"),
        s("stackName")
    );
    let text = match kind {
        "stack" => format!("{who} {} stack {stack}", s("action")),
        "stack_update" | "stack_preview" => {
            format!(
                "{} of {stack} by {who} {}: {}",
                s("kind"),
                s("result"),
                s("updateUrl")
            )
        }
        "ping" => "pbackend webhook ping".to_owned(),
        other => format!("{other} event"),
    };
    let body = if format == "slack" {
        serde_json::json!({"text": text})
    } else {
        serde_json::json!({
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": text,
            "text": text,
        })
    };
    body.to_string()
}

/// Seconds before attempt `n + 1` (n ≥ 1): doubling from `first`, capped at an hour, with up
/// to a quarter more of jitter so that many failed deliveries do not retry in step.
fn backoff(first: i64, attempts: i64) -> i64 {
    let base = first
        .max(1)
        .saturating_mul(1_i64 << (attempts - 1).clamp(0, 20))
        .min(3600);
    let jitter = i64::from(u16::from_le_bytes(crypto::random_bytes::<2>())) % (base / 4 + 1);
    base + jitter
}

fn excerpt(bytes: &[u8]) -> String {
    let cut = bytes.len().min(EXCERPT);
    String::from_utf8_lossy(&bytes[..cut]).into_owned()
}

fn header_lines(h: &reqwest::header::HeaderMap) -> String {
    h.iter()
        .map(|(k, v)| format!("{}: {}\n", k.as_str(), v.to_str().unwrap_or("")))
        .collect()
}

impl Engine {
    /// Makes one attempt at a claimed delivery and records it.
    pub(crate) async fn send(&self, row: OutboxRow, dest: Destination) -> EngineResult<AttemptRow> {
        let cfg = &self.cfg.webhooks;
        let id = format!("whd-{}", hex::encode(crypto::random_bytes::<8>()));
        let hook = &row.hook;
        let body = render(&hook.format, &row.kind, &row.payload);
        let mut headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("Pulumi-Webhook-ID".to_owned(), id.clone()),
            ("Pulumi-Webhook-Kind".to_owned(), row.kind.clone()),
        ];
        if let Some(sealed) = &hook.secret {
            let secret = self.master()?.open_secret(sealed).ok_or_else(|| {
                EngineError::Internal(format!(
                    "webhook {} has a secret the master key cannot open",
                    hook.name
                ))
            })?;
            headers.push((
                "Pulumi-Webhook-Signature".to_owned(),
                signature(&secret, body.as_bytes()),
            ));
        }
        let at = self.now();
        let started = Instant::now();
        let outcome = match check_destination(&hook.payload_url, cfg).await {
            Err(why) => Err(why),
            Ok(()) => {
                let mut req = self
                    .webhooks
                    .client
                    .post(&hook.payload_url)
                    .timeout(cfg.timeout);
                for (k, v) in &headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                match req.body(body.clone()).send().await {
                    Err(e) => Err(format!("no answer: {e}")),
                    Ok(resp) => {
                        let status = i64::from(resp.status().as_u16());
                        let rh = header_lines(resp.headers());
                        let bytes = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                        Ok((status, rh, excerpt(&bytes)))
                    }
                }
            }
        };
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let attempts = row.attempts + 1;
        let (code, rh, rb, ok) = match outcome {
            Ok((code, rh, rb)) => (Some(code), rh, rb, (200..300).contains(&code)),
            Err(why) => (None, String::new(), why, false),
        };
        let settle = if ok {
            Settle::Delivered
        } else if dest == Destination::Now || attempts >= cfg.max_attempts {
            Settle::Failed
        } else {
            Settle::RetryAt(self.now() + backoff(cfg.first_retry_secs, attempts))
        };
        if !ok {
            tracing::info!(hook = %hook.name, attempt = attempts, status = ?code, "a webhook delivery failed");
        }
        crate::telemetry::metrics().webhook_attempt(match settle {
            Settle::Delivered => "delivered",
            Settle::RetryAt(_) => "retry",
            Settle::Failed => "failed",
        });
        let attempt = AttemptRow {
            id,
            outbox_id: row.id,
            hook_id: hook.id,
            at,
            kind: row.kind.clone(),
            payload: row.payload.clone(),
            request_url: hook.payload_url.clone(),
            request_headers: headers
                .iter()
                .filter(|(k, _)| k != "Pulumi-Webhook-Signature")
                .map(|(k, v)| format!("{k}: {v}\n"))
                .collect(),
            duration_ms,
            response_code: code,
            response_headers: rh,
            response_body: rb,
        };
        self.store.record_attempt(attempt.clone(), settle).await?;
        Ok(attempt)
    }

    /// Forgets deliveries settled, and attempts made, more than `keep_secs` ago.
    pub async fn prune_deliveries(&self, keep_secs: i64) -> EngineResult<i64> {
        Ok(self.store.prune_deliveries(self.now() - keep_secs).await?)
    }

    /// The delivery worker: claims what is due, sends it, and sleeps until the next is due
    /// (at most a second: other replicas and restarts add work it is not told about).
    pub async fn run_webhook_deliveries(self: Arc<Self>) {
        loop {
            let now = self.now();
            // A read first: the claim is a write, and an idle server should not queue one
            // behind the state writes twice a second.
            match self.store.next_delivery_due().await {
                Ok(Some(due)) if due <= now => {}
                Ok(_) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the webhook outbox failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            let batch = match self
                .store
                .claim_deliveries(now, self.cfg.webhooks.hold_until(now), BATCH, None)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming webhook deliveries failed");
                    vec![]
                }
            };
            if batch.is_empty() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            // One hook's deliveries go one after another, in the order they were raised;
            // different hooks' go at once.
            let mut by_hook: Vec<(i64, Vec<OutboxRow>)> = vec![];
            for row in batch {
                match by_hook.iter_mut().find(|(h, _)| *h == row.hook.id) {
                    Some((_, rows)) => rows.push(row),
                    None => by_hook.push((row.hook.id, vec![row])),
                }
            }
            let mut sends = tokio::task::JoinSet::new();
            for (_, rows) in by_hook {
                let engine = self.clone();
                sends.spawn(async move {
                    for row in rows {
                        if let Err(e) = engine.send(row, Destination::Queued).await {
                            tracing::warn!(error = %e, "recording a webhook delivery failed");
                        }
                    }
                });
            }
            while sends.join_next().await.is_some() {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn destinations() {
        let strict = WebhookConfig::default();
        let open = WebhookConfig {
            allow_loopback: true,
            ..Default::default()
        };
        assert!(check_url("https://hooks.example.com/x", &strict).is_ok());
        assert!(check_url("http://10.1.2.3:8080/x", &strict).is_ok());
        assert!(check_url("http://169.254.169.254/latest/meta-data", &open).is_err());
        assert!(check_url("http://[fe80::1]/", &open).is_err());
        assert!(check_url("http://[fd00:ec2::254]/", &open).is_err());
        assert!(check_url("http://127.0.0.1:9/", &strict).is_err());
        assert!(check_url("http://localhost:9/", &strict).is_err());
        assert!(check_url("http://127.0.0.1:9/", &open).is_ok());
        assert!(check_url("ftp://example.com/", &open).is_err());
        assert!(check_url("not a url", &open).is_err());
        assert!(check_url("http://0.0.0.0/", &open).is_err());
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        for (n, base) in [(1, 1), (2, 2), (3, 4), (10, 512), (30, 3600)] {
            let d = backoff(1, n);
            assert!(d >= base && d <= base + base / 4, "{n}: {d}");
        }
    }

    #[test]
    fn chat_formats() {
        let raw = r#"{"user":{"githubLogin":"ann"},"organization":{"githubLogin":"acme"},"projectName":"p","stackName":"dev","kind":"update","result":"failed","updateUrl":"u"}"#;
        let slack: serde_json::Value =
            serde_json::from_str(&render("slack", "stack_update", raw)).unwrap();
        assert_eq!(slack["text"], "update of acme/p/dev by ann failed: u");
        let teams: serde_json::Value =
            serde_json::from_str(&render("ms_teams", "stack_update", raw)).unwrap();
        assert_eq!(teams["@type"], "MessageCard");
        assert_eq!(render("raw", "stack_update", raw), raw);
    }
}
