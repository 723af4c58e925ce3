//! A real reverse proxy in front of several `pbackend serve` replicas: HAProxy from the
//! distribution's packages, run in the foreground on a random loopback port.
//!
//! Without an `haproxy` binary the tests that need it skip, saying so, unless
//! `PBACKEND_REQUIRE_PROXY=1` (CI) makes that a failure.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How the proxy picks a replica for each request.
#[derive(Clone, Copy, Debug)]
pub enum Routing {
    /// Each request to the next replica: the worst case for the replicas' caches.
    RoundRobin,
    /// By the first five path segments (`/api/stacks/{org}/{project}/{stack}`): every request
    /// of an update goes to the same replica while it is up; the setting we document.
    ByStack,
}

pub struct Haproxy {
    pub url: String,
    pub dir: TempDir,
    child: tokio::process::Child,
}

fn find() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("haproxy"))
            .find(|p| p.is_file())
    });
    from_path.or_else(|| {
        ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    })
}

/// The proxy binary, or `None` (after saying so) when the test should skip.
pub fn available() -> Option<PathBuf> {
    let found = find();
    if found.is_none() {
        if std::env::var("PBACKEND_REQUIRE_PROXY").is_ok_and(|v| v == "1") {
            panic!("PBACKEND_REQUIRE_PROXY=1 but no haproxy binary was found");
        }
        eprintln!("SKIPPED: no haproxy binary (apt-get install haproxy)");
    }
    found
}

impl Haproxy {
    /// Starts HAProxy on a free loopback port in front of the replicas on `ports`; returns
    /// once it answers through at least one of them.
    pub async fn start(bin: &std::path::Path, ports: &[u16], routing: Routing) -> Haproxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = super::cli::free_port();
        let balance = match routing {
            Routing::RoundRobin => "balance roundrobin".to_owned(),
            Routing::ByStack => "balance uri depth 5\n  hash-type consistent".to_owned(),
        };
        let mut servers = String::new();
        for (i, p) in ports.iter().enumerate() {
            // Checked often so a killed replica leaves the rotation within a second; a
            // connection refused before then is retried on another replica (redispatch).
            servers.push_str(&format!(
                "  server r{i} 127.0.0.1:{p} check inter 250ms fall 2 rise 2\n"
            ));
        }
        let config = format!(
            "global\n  maxconn 1024\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 300s\n  timeout server 300s\n  \
             retries 3\n  option redispatch 1\n  option forwardfor\n\
             frontend api\n  bind 127.0.0.1:{port}\n  default_backend replicas\n\
             backend replicas\n  {balance}\n  option httpchk GET /api/capabilities\n{servers}"
        );
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config).expect("write haproxy.cfg");
        let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("log");
        let child = tokio::process::Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("haproxy starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{url}/api/capabilities")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not come up: {}",
                std::fs::read_to_string(dir.path().join("haproxy.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Haproxy { url, dir, child }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
