//! Per-credential rate limits, as the service publishes them (100 requests in 10 s and 600 in
//! a minute by default): each credential has one token bucket per window; a request takes a
//! token from each, and one that finds a bucket empty gets `429` with `Retry-After` saying
//! when the next token arrives.
//!
//! Only reads (GET and HEAD of API-token routes) are limited: the CLI retries those on 429,
//! honouring `Retry-After`, but it does not retry most of its writes (creating or starting
//! an update, creating a stack), so limiting those would fail a `pulumi up` instead of slowing
//! it; and calls under an update's lease are never limited. Limits are per process: behind a
//! load balancer each replica counts its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One window: at most `requests` in `per`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub requests: u32,
    pub per: Duration,
}

/// The windows every credential is held to (empty: no limit).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RateLimits {
    pub windows: Vec<Window>,
}

impl RateLimits {
    /// The service's published limits.
    pub fn service_default() -> Self {
        RateLimits {
            windows: vec![
                Window {
                    requests: 100,
                    per: Duration::from_secs(10),
                },
                Window {
                    requests: 600,
                    per: Duration::from_secs(60),
                },
            ],
        }
    }

    /// `off`, or windows such as `100/10s,600/1m`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") || s == "0" {
            return Ok(RateLimits::default());
        }
        let mut windows = vec![];
        for part in s.split(',') {
            let (n, per) = part.trim().split_once('/').ok_or_else(|| {
                format!("invalid rate limit {part:?}: use REQUESTS/DURATION, e.g. 100/10s")
            })?;
            let requests: u32 = n
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("invalid request count {n:?} in {part:?}"))?;
            let per = parse_window(per.trim())
                .ok_or_else(|| format!("invalid window {per:?} in {part:?}: use s, m or h"))?;
            windows.push(Window { requests, per });
        }
        Ok(RateLimits { windows })
    }
}

fn parse_window(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// A bucket's state: tokens left (fractional, refilled continuously) and when it was read.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Credentials tracked at most before idle ones are forgotten.
const SWEEP_AT: usize = 10_000;

pub struct Limiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<String, Vec<Bucket>>>,
}

impl Limiter {
    pub fn new(limits: RateLimits) -> Self {
        Limiter {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.limits.windows.is_empty()
    }

    /// Takes one request for `key` at `now`: `Ok` when allowed, else how long until it
    /// would be.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SWEEP_AT && !map.contains_key(key) {
            let longest = self
                .limits
                .windows
                .iter()
                .map(|w| w.per)
                .max()
                .unwrap_or_default();
            // A bucket untouched for a whole window is full again: forgetting it is exact.
            map.retain(|_, b| b.iter().any(|b| now.duration_since(b.at) < longest));
        }
        let windows = &self.limits.windows;
        let buckets = map.entry(key.to_owned()).or_insert_with(|| {
            windows
                .iter()
                .map(|w| Bucket {
                    tokens: f64::from(w.requests),
                    at: now,
                })
                .collect()
        });
        let mut wait = Duration::ZERO;
        for (b, w) in buckets.iter_mut().zip(windows) {
            let cap = f64::from(w.requests);
            let rate = cap / w.per.as_secs_f64();
            b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(cap);
            b.at = now;
            if b.tokens < 1.0 {
                wait = wait.max(Duration::from_secs_f64((1.0 - b.tokens) / rate));
            }
        }
        if wait > Duration::ZERO {
            return Err(wait);
        }
        for b in buckets.iter_mut() {
            b.tokens -= 1.0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_windows_and_off() {
        assert_eq!(
            RateLimits::parse("100/10s,600/1m").unwrap(),
            RateLimits::service_default()
        );
        assert!(RateLimits::parse("off").unwrap().windows.is_empty());
        assert!(RateLimits::parse("100").is_err());
        assert!(RateLimits::parse("0/10s").is_err());
        assert!(RateLimits::parse("5/10x").is_err());
    }

    #[test]
    fn a_burst_is_cut_at_the_window_and_told_when_to_come_back() {
        let l = Limiter::new(RateLimits::parse("5/10s").unwrap());
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(l.take("a", t0).is_ok());
        }
        let wait = l.take("a", t0).unwrap_err();
        assert!(wait > Duration::from_millis(1900) && wait <= Duration::from_secs(2));
        // Another credential has its own buckets.
        assert!(l.take("b", t0).is_ok());
        // One token back after a fifth of the window.
        assert!(l.take("a", t0 + Duration::from_secs(2)).is_ok());
        assert!(l.take("a", t0 + Duration::from_secs(2)).is_err());
    }

    #[test]
    fn the_tightest_window_decides() {
        let l = Limiter::new(RateLimits::parse("100/10s,3/1m").unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take("a", t0).is_ok());
        }
        let wait = l.take("a", t0).unwrap_err();
        assert!(wait >= Duration::from_secs(19), "{wait:?}");
    }
}
