//! How long the console's pages of a large stack take: the server's answer (median of
//! repeated GETs, with the page's size), and, when Chromium and chromedriver are installed,
//! the browser's load time (Navigation Timing: from the request to the load event).
//!
//! `cargo bench --bench console -- [RESOURCES]` (default 10,000). The stack gets two
//! versions (the second changes every other resource), so "what changed" has work to do.

#[path = "common.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Stats, deployment, free_port, resource, wait_until_up};
use serde_json::{Value, json};

const TOKEN: &str = "pul-console-bench-token-0000000000";
const RUNS: usize = 7;

fn state(n: usize, changed: bool) -> Value {
    let mut resources = vec![json!({
        "urn": "urn:pulumi:dev::proj::pulumi:pulumi:Stack::proj-dev",
        "custom": false,
        "type": "pulumi:pulumi:Stack",
        "outputs": {"count": n}
    })];
    for i in 0..n {
        let label = if changed && i % 2 == 0 { "b" } else { "a" };
        resources.push(resource(i, label, 64));
    }
    deployment(resources)
}

async fn import(http: &reqwest::Client, base: &str, body: &Value) {
    let r = http
        .post(format!("{base}/api/stacks/organization/proj/dev/import"))
        .header("authorization", format!("token {TOKEN}"))
        .json(body)
        .send()
        .await
        .expect("import");
    assert!(r.status().is_success(), "import: {}", r.status());
}

async fn server_times(http: &reqwest::Client, url: &str) -> (Duration, usize) {
    let mut samples = Vec::new();
    let mut size = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let r = http
            .get(url)
            .header("cookie", format!("pbackend_session={TOKEN}"))
            .header("accept-encoding", "identity")
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status().as_u16(), 200, "{url}");
        size = r.bytes().await.expect("body").len();
        samples.push(t.elapsed());
    }
    (Stats::new(samples).pct(0.5), size)
}

async fn browser_times(base: &str, pages: &[(&str, String)]) -> Option<Vec<Duration>> {
    let driver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())?;
    let port = free_port();
    let mut child = std::process::Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let caps = json!({"goog:chromeOptions": {"args": ["--headless=new", "--no-sandbox",
        "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]}});
    let Value::Object(caps) = caps else {
        return None;
    };
    let mut client = None;
    for _ in 0..100 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        if let Ok(c) = fantoccini::ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = client?;
    // Sign in once, as a person would.
    c.goto(&format!("{base}/login")).await.ok()?;
    c.find(fantoccini::Locator::Css("#token"))
        .await
        .ok()?
        .send_keys(TOKEN)
        .await
        .ok()?;
    c.find(fantoccini::Locator::Css("input[type=submit]"))
        .await
        .ok()?
        .click()
        .await
        .ok()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut out = Vec::new();
    for (_, path) in pages {
        let mut samples = Vec::new();
        for _ in 0..RUNS {
            c.goto(&format!("{base}{path}")).await.ok()?;
            let v = c
                .execute(
                    "const t = performance.getEntriesByType('navigation')[0]; return t.loadEventEnd - t.startTime;",
                    vec![],
                )
                .await
                .ok()?;
            samples.push(Duration::from_secs_f64(v.as_f64().unwrap_or(0.0) / 1000.0));
        }
        out.push(Stats::new(samples).pct(0.5));
    }
    let _ = c.close().await;
    let _ = child.kill();
    let _ = child.wait();
    Some(out)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pbackend"))
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--log-level",
            "error",
        ])
        .args(["--rate-limit", "off"])
        .arg("--db")
        .arg(dir.path().join("console.db"))
        .env("PULUMI_BACKEND_SINGLE_TENANT_TOKEN", TOKEN)
        .env("PULUMI_BACKEND_MASTER_KEY", "00".repeat(32))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("pbackend starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_until_up(&http, &base).await;
    http.post(format!("{base}/api/stacks/organization/proj"))
        .header("authorization", format!("token {TOKEN}"))
        .json(&json!({"stackName": "dev"}))
        .send()
        .await
        .expect("create stack");
    let v1 = state(n, false);
    let state_bytes = serde_json::to_vec(&v1).unwrap().len();
    import(&http, &base, &v1).await;
    import(&http, &base, &state(n, true)).await;

    let pages = vec![
        ("stack page", "/organization/proj/dev".to_owned()),
        ("stack page, last page of resources", "/organization/proj/dev?page=21".to_owned()),
        (
            "one resource",
            "/organization/proj/dev/resource?urn=urn%3Apulumi%3Adev%3A%3Aproj%3A%3Apbtest%3Aindex%3AItem%3A%3Ar9999".to_owned(),
        ),
        ("update page", "/organization/proj/dev/updates/2".to_owned()),
        (
            "what changed, v1 → v2",
            "/organization/proj/dev/changes?from=1&to=2".to_owned(),
        ),
        ("stack list", "/organization".to_owned()),
    ];
    println!(
        "{n} resources, state {:.1} MB; medians of {RUNS}",
        state_bytes as f64 / 1e6
    );
    let browser = browser_times(&base, &pages).await;
    println!("| page | server answer ms | HTML KB | browser load ms |");
    println!("|---|---|---|---|");
    for (i, (name, path)) in pages.iter().enumerate() {
        let (t, size) = server_times(&http, &format!("{base}{path}")).await;
        let b = browser
            .as_ref()
            .map(|v| Stats::ms(v[i]))
            .unwrap_or_else(|| "(no chromium)".into());
        println!("| {name} | {} | {} | {b} |", Stats::ms(t), size / 1024);
    }
    let _ = child.kill();
    let _ = child.wait();
}
