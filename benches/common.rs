//! Shared helpers for the bench binaries: timing statistics and realistic payloads.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};

pub struct Stats {
    pub samples: Vec<Duration>,
}

impl Stats {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Stats { samples }
    }

    pub fn pct(&self, p: f64) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.samples.len() - 1) as f64 * p).round() as usize;
        self.samples[i]
    }

    pub fn ms(d: Duration) -> String {
        format!("{:.2}", d.as_secs_f64() * 1000.0)
    }
}

/// A resource as the CLI writes it, padded to about `pad` bytes.
pub fn resource(i: usize, label: &str, pad: usize) -> Value {
    let urn = format!("urn:pulumi:dev::proj::pbtest:index:Item::r{i}");
    json!({
        "urn": urn,
        "custom": true,
        "id": format!("r{i}-5f3c9a1b"),
        "type": "pbtest:index:Item",
        "inputs": {"padBytes": pad, "value": format!("{label}-{i}")},
        "outputs": {"padBytes": pad, "padding": "x".repeat(pad), "result": format!("ok-{label}-{i}"),
            "secret": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
                       "ciphertext": "AWJ3Nnx0Q2E0a2xqYXNkZmxrajIzNDA5ODIzNDA5OGFzZGY="},
            "value": format!("{label}-{i}")},
        "parent": "urn:pulumi:dev::proj::pulumi:pulumi:Stack::proj-dev",
        "dependencies": [],
        "provider": "urn:pulumi:dev::proj::pulumi:providers:pbtest::default::04da6b54-80e4-46f7-96ec-b56ff0331ba9",
        "propertyDependencies": {"padBytes": [], "value": []},
        "created": "2026-11-23T20:00:00.000000000Z",
        "modified": "2026-11-23T20:00:00.000000000Z"
    })
}

pub fn deployment(resources: Vec<Value>) -> Value {
    json!({"version": 3, "deployment": {
        "manifest": {"time": "2026-11-23T20:00:00Z", "magic": "", "version": ""},
        "secrets_providers": {"type": "service", "state": {"url": "http://127.0.0.1", "owner": "organization", "project": "proj", "stack": "dev"}},
        "metadata": {},
        "resources": resources
    }})
}

/// Begin + success entries creating resources `from..to`, numbered from `seq`.
pub fn create_entries(from: usize, to: usize, pad: usize, seq: &mut i64) -> Vec<Value> {
    let mut out = Vec::new();
    for i in from..to {
        let op = i as i64 + 1;
        *seq += 1;
        out.push(json!({"version":1,"kind":0,"sequenceID":*seq,"operationID":op,"removeOld":null,"removeNew":null,
            "operation":{"resource":resource(i, "a", 0),"type":"creating"}}));
        *seq += 1;
        out.push(json!({"version":1,"kind":1,"sequenceID":*seq,"operationID":op,"removeOld":null,"removeNew":null,
            "state":resource(i, "a", pad)}));
    }
    out
}

/// User + system CPU seconds of a process, from `/proc`.
pub fn proc_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    (f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
        / 100.0
}

/// CPU seconds of every PostgreSQL process on the machine (the bench's own cluster), so a
/// server on PostgreSQL is charged for the database work it causes.
pub fn postgres_cpu_secs() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(proc_cpu_secs)
        .sum()
}
