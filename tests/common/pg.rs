//! A PostgreSQL server for the tests: the distribution's binaries, a cluster made with
//! `initdb` in a temp directory, on a random loopback port, as the `postgres` user when the
//! tests run as root (PostgreSQL refuses to run as root). One server per test process, a
//! fresh database per test; the server is stopped when the process exits.
//!
//! Without PostgreSQL binaries the tests that need it skip, saying so, unless
//! `PBACKEND_REQUIRE_POSTGRES=1` (CI) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Pg {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

static SERVER: OnceLock<Option<Pg>> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

fn find_bin() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    candidates.reverse();
    candidates.into_iter().find(|b| b.join("initdb").is_file())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run(pg: &Pg, tool: &str, args: &[&str]) -> std::process::Output {
    let exe = pg.bin.join(tool);
    let mut cmd = if pg.as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(args).output().expect("a PostgreSQL tool runs")
}

extern "C" fn stop_at_exit() {
    if let Some(Some(pg)) = SERVER.get() {
        let _ = run(
            pg,
            "pg_ctl",
            &["stop", "-m", "immediate", "-D", pg.dir.to_str().unwrap()],
        );
        let _ = std::fs::remove_dir_all(&pg.dir);
    }
}

fn start() -> Option<Pg> {
    let Some(bin) = find_bin() else {
        if std::env::var_os("PBACKEND_REQUIRE_POSTGRES").is_some() {
            panic!("PostgreSQL is required (PBACKEND_REQUIRE_POSTGRES) but no initdb was found");
        }
        eprintln!("SKIPPED: no PostgreSQL server binaries (/usr/lib/postgresql/*/bin)");
        return None;
    };
    let as_postgres = is_root();
    let dir = std::env::temp_dir().join(format!("pbackend-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if as_postgres {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "chown the PostgreSQL directory");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let pg = Pg {
        port,
        dir: dir.clone(),
        bin,
        as_postgres,
    };
    let data = dir.join("data");
    let out = run(
        &pg,
        "initdb",
        &[
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
    );
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
        dir.display()
    );
    let log = dir.join("pg.log");
    let out = run(
        &pg,
        "pg_ctl",
        &[
            "start",
            "-w",
            "-D",
            data.to_str().unwrap(),
            "-o",
            &opts,
            "-l",
            log.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "pg_ctl start: {}{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let pg = Pg { dir: data, ..pg };
    Some(pg)
}

/// The test process's PostgreSQL server, started on first use (`None`: not available).
pub fn server() -> Option<&'static Pg> {
    let s = SERVER.get_or_init(|| {
        let s = start();
        // SAFETY: registering a plain extern "C" fn with no captured state.
        unsafe {
            libc::atexit(stop_at_exit);
        }
        s
    });
    s.as_ref()
}

impl Pg {
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database; its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!(
            "pb_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::SeqCst)
        );
        let out = run(
            self,
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                &format!("CREATE DATABASE {name}"),
            ],
        );
        assert!(
            out.status.success(),
            "create database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    /// Empties the database at `url` (a disaster, for recovery tests).
    pub fn wipe(&self, url: &str) {
        let db = url.rsplit('/').next().unwrap();
        let out = run(
            self,
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                "DROP SCHEMA public CASCADE; CREATE SCHEMA public;",
            ],
        );
        assert!(
            out.status.success(),
            "wipe: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }
}
