//! A real S3-compatible server for the backup tests: moto's standalone server (PyPI
//! `moto[server]`, installed by scripts/test-deps.sh into ~/.cache/pbackend-s3/venv), on a
//! random loopback port. Without it the tests that need it skip, saying so, unless
//! `PBACKEND_REQUIRE_S3=1` (CI) makes that a failure.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub struct S3Server {
    pub endpoint: String,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

fn find() -> Option<PathBuf> {
    let venv = std::env::var_os("PBACKEND_S3_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/pbackend-s3/venv"))
        })?;
    let bin = venv.join("bin/moto_server");
    bin.is_file().then_some(bin)
}

impl S3Server {
    /// Starts the server, or returns `None` (after saying so) when the test should skip.
    pub async fn start() -> Option<S3Server> {
        let Some(bin) = find() else {
            if std::env::var("PBACKEND_REQUIRE_S3").is_ok_and(|v| v == "1") {
                panic!(
                    "PBACKEND_REQUIRE_S3=1 but moto_server is not installed (scripts/test-deps.sh)"
                );
            }
            eprintln!("SKIPPED: no moto_server (scripts/test-deps.sh installs it)");
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let port = super::cli::free_port();
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("log");
        let child = tokio::process::Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("moto_server starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.get(&endpoint).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not come up: {}",
                std::fs::read_to_string(dir.path().join("moto.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(S3Server {
            endpoint,
            child,
            _dir: dir,
        })
    }

    /// Creates a bucket (moto takes an unsigned PUT).
    pub async fn bucket(&self, name: &str) {
        let r = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .header("Content-Length", "0")
            .send()
            .await
            .expect("create bucket");
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// The environment a client needs to reach this server as S3.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
