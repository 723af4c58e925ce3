//! A real browser for the console tests: Debian's Chromium, headless, driven over WebDriver
//! by its `chromedriver` (fantoccini as the client). Absent, the tests skip, saying so,
//! unless `PBACKEND_REQUIRE_BROWSER=1` (CI, after `scripts/test-deps.sh` installed them).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

/// The screenshots README.md shows.
const README_SHOTS: &[&str] = &["stack", "update"];

pub struct Browser {
    pub client: Client,
    _driver: tokio::process::Child,
    shots: PathBuf,
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/lib/chromium")]) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

impl Browser {
    /// A fresh headless browser, or `None` (the caller skips) when none is installed.
    pub async fn start() -> Option<Browser> {
        let driver = find(&["chromedriver"]);
        let chromium = find(&["chromium", "chromium-browser", "google-chrome"]);
        let (Some(driver), Some(chromium)) = (driver, chromium) else {
            if std::env::var("PBACKEND_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
                panic!("PBACKEND_REQUIRE_BROWSER=1 but chromium/chromedriver are not installed");
            }
            eprintln!("SKIPPED: no chromium and chromedriver (scripts/test-deps.sh installs them)");
            return None;
        };
        let port = super::cli::free_port();
        let child = tokio::process::Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--no-first-run", "--disable-extensions"]
            }
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => panic!("no WebDriver session: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Some(Browser {
            client,
            _driver: child,
            shots,
        })
    }

    /// Saves a screenshot as `<name>.png` with the test's artifacts (printed); the README's
    /// ([`README_SHOTS`]) also under `reference/screenshots/` when
    /// `PBACKEND_UPDATE_SCREENSHOTS=1`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, &png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        if README_SHOTS.contains(&name)
            && std::env::var("PBACKEND_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1")
        {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/screenshots");
            std::fs::create_dir_all(&dir).expect("reference/screenshots");
            std::fs::write(dir.join(format!("{name}.png")), &png).expect("write screenshot");
        }
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
