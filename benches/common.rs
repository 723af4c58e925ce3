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

/// A field of `/proc/PID/status` in kB (`VmRSS:`, `VmHWM:`), 0 when absent.
pub fn proc_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits (up to a minute) until the server at `base` answers.
pub async fn wait_until_up(http: &reqwest::Client, base: &str) {
    for _ in 0..2400 {
        if http
            .get(format!("{base}/api/capabilities"))
            .send()
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// A command running `bin` under `PBACKEND_BENCH_SERVER_WRAP`, a command prefix such as
/// `heaptrack -o FILE` or `valgrind --tool=callgrind` (none when unset).
pub fn server_command(bin: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let wrap = std::env::var("PBACKEND_BENCH_SERVER_WRAP").unwrap_or_default();
    wrapped_command(bin, &wrap)
}

/// [`server_command`] with an explicit prefix.
pub fn wrapped_command(bin: impl AsRef<std::ffi::OsStr>, wrap: &str) -> std::process::Command {
    let mut argv = wrap.split_whitespace();
    match argv.next() {
        Some(first) => {
            let mut c = std::process::Command::new(first);
            c.args(argv).arg(bin);
            c
        }
        None => std::process::Command::new(bin),
    }
}

/// Stops a server with SIGTERM, so that a profiler wrapping it writes its output, and waits.
/// The wrapper's children are signalled first: a profiler's script does not pass it on.
pub fn stop_server(mut child: std::process::Child) {
    let pid = child.id().to_string();
    let _ = std::process::Command::new("pkill")
        .args(["-TERM", "-P", &pid])
        .status();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let _ = child.wait();
}
