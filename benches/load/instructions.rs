//! `--instructions`: the server's CPU cost per request kind, counted in instructions by
//! `valgrind --tool=callgrind` — immune to this machine's timing noise. The server runs under
//! callgrind; before each kind the counters are zeroed (`callgrind_control -z`) and after it
//! dumped (`-d`), so each dump holds one kind's requests and whatever background work ran
//! meanwhile (measured on its own as "idle, per second").

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use super::common::{deployment, resource, stop_server, wrapped_command};
use super::{begin_update, call, complete, create_stack, gz, secrets_entry, server_bin, spawn};

const PAD: usize = 400;

fn control(args: &[&str], pid: u32) {
    let ok = std::process::Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "callgrind_control {args:?} failed");
}

/// The instruction total of the server's (`pid`) newest dump in `dir`. A kept directory may
/// hold dumps of earlier runs: only this process's count.
fn last_dump_total(dir: &Path, pid: u32, seen: &mut usize) -> u64 {
    let prefix = format!("cg.{pid}.");
    for _ in 0..100 {
        let mut dumps: Vec<_> = std::fs::read_dir(dir)
            .expect("dump dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.matches('.').count() == 2)
            })
            .collect();
        if dumps.len() > *seen {
            dumps.sort_by_key(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .and_then(|e| e.parse::<u32>().ok())
                    .unwrap_or(0)
            });
            let text = std::fs::read_to_string(dumps.last().expect("a dump")).unwrap_or_default();
            if let Some(total) = text
                .lines()
                .find_map(|l| l.strip_prefix("totals:").or(l.strip_prefix("summary:")))
                .and_then(|v| v.trim().parse().ok())
            {
                *seen = dumps.len();
                return total;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("callgrind wrote no dump in {}", dir.display());
}

struct Kind {
    name: String,
    count: usize,
    instructions: u64,
}

pub async fn run() {
    // `PBACKEND_BENCH_CALLGRIND_DIR` keeps the dumps (one per kind, in the order below) for
    // `callgrind_annotate`.
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = std::env::var_os("PBACKEND_BENCH_CALLGRIND_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).expect("dump dir");
    let db = tmp.path().join("cg.db").display().to_string();
    let out = format!(
        "valgrind --tool=callgrind --callgrind-out-file={}/cg.%p",
        dir.display()
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("client");
    let (child, base) = spawn(&http, wrapped_command(server_bin(), &out), &db, "normal").await;
    let pid = child.id();
    let auth = format!("token {}", super::TOKEN);
    let mut seen = 0;
    let mut kinds: Vec<Kind> = Vec::new();
    for s in ["j", "c"] {
        create_stack(&http, &base, &auth, s).await;
    }
    let stack = |s: &str| format!("{base}/api/stacks/organization/proj/{s}");

    // Each kind: zero, send `count` requests, dump, read the dump's total.
    macro_rules! kind {
        ($name:expr, $count:expr, $body:expr) => {{
            control(&["-z"], pid);
            for i in 0..$count {
                $body(i).await;
            }
            control(&["-d"], pid);
            kinds.push(Kind {
                name: $name.to_string(),
                count: $count,
                instructions: last_dump_total(&dir, pid, &mut seen),
            });
        }};
    }

    kind!("idle, per second (background work)", 2, |_| {
        tokio::time::sleep(Duration::from_millis(500))
    });
    kind!("GET /api/user", 20, |_| call(
        &http,
        reqwest::Method::GET,
        format!("{base}/api/user"),
        &auth,
        None
    ));

    let plaintexts: Vec<String> = (0..4)
        .map(|i| base64::engine::general_purpose::STANDARD.encode(format!("secret value {i}")))
        .collect();
    let enc = json!({ "plaintexts": plaintexts }).to_string().into_bytes();
    kind!("batch-encrypt (4 values)", 20, |_| call(
        &http,
        reqwest::Method::POST,
        format!("{}/batch-encrypt", stack("j")),
        &auth,
        Some((enc.clone(), false))
    ));

    let (upd, lease) = begin_update(&http, &stack("j"), &auth, "update", true).await;
    let mut seq = 1;
    let mut batches = vec![gz(&json!({"entries": [secrets_entry(&base, "j")]}))];
    let entries = super::common::create_entries(0, 1000, PAD, &mut seq);
    batches.extend(entries.chunks(100).map(|c| gz(&json!({ "entries": c }))));
    call(
        &http,
        reqwest::Method::PATCH,
        format!("{upd}/journalentries"),
        &lease,
        Some((batches[0].clone(), true)),
    )
    .await;
    kind!(
        "journal batch (100 entries, ~1 KB states)",
        10,
        |i: usize| call(
            &http,
            reqwest::Method::PATCH,
            format!("{upd}/journalentries"),
            &lease,
            Some((batches[i + 1].clone(), true))
        )
    );

    let events = gz(
        &json!({"events": (0..50).map(|i| json!({"sequence": i, "timestamp": 1,
        "stdoutEvent": {"message": format!("line {i} of the engine's output"), "color": "raw"}})).collect::<Vec<_>>()}),
    );
    kind!("events batch (50 events)", 20, |_| call(
        &http,
        reqwest::Method::POST,
        format!("{upd}/events/batch"),
        &lease,
        Some((events.clone(), true))
    ));

    kind!("renew lease", 20, |_| call(
        &http,
        reqwest::Method::POST,
        format!("{upd}/renew_lease"),
        &lease,
        Some((br#"{"duration":300}"#.to_vec(), false))
    ));

    kind!("complete (journal, 1,000 resources, 1.1 MB)", 1, |_| {
        complete(&http, &upd, &lease)
    });

    kind!("export (1,000 resources)", 10, |_| call(
        &http,
        reqwest::Method::GET,
        format!("{}/export", stack("j")),
        &auth,
        None
    ));

    let (cupd, clease) = begin_update(&http, &stack("c"), &auth, "update", false).await;
    let full = gz(&deployment(
        (0..1000).map(|i| resource(i, "a", PAD)).collect(),
    ));
    kind!("full checkpoint (1,000 resources, 1.1 MB)", 5, |_| call(
        &http,
        reqwest::Method::PATCH,
        format!("{cupd}/checkpoint"),
        &clease,
        Some((full.clone(), true))
    ));
    complete(&http, &cupd, &clease).await;

    stop_server(child);

    let idle_per_sec = kinds[0].instructions as f64;
    println!("### Instructions per request (callgrind)");
    println!();
    println!(
        "`cargo bench --bench load -- --instructions`: the release server under \
         `valgrind --tool=callgrind`, requests sent one at a time; all of the server's threads \
         counted. Background work (idle, per second) is shown on its own and not subtracted."
    );
    println!();
    println!("| request | count | instructions per request |");
    println!("|---|---|---|");
    println!(
        "| idle, per second (background work) | 1 s | {:.0} |",
        idle_per_sec
    );
    for k in &kinds[1..] {
        println!(
            "| {} | {} | {:.0} |",
            k.name,
            k.count,
            k.instructions as f64 / k.count as f64
        );
    }
    println!();
}
