//! TLS on the API listener: the real CLI logs in over `https://` trusting a CA the test makes,
//! a certificate replaced on disk is served without a restart, a broken replacement leaves
//! the served one in place, and plain HTTP is refused where it would cross a network.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cli::*;
use common::ops::serve_until_up;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A CA and a server certificate for 127.0.0.1 and localhost that it signed, as PEM files.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path, name: &str) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("pbackend test CA {name}"));
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
    let leaf_key = KeyPair::generate().expect("key");
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("params");
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, format!("pbackend {name}"));
    let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf");
    let pki = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::write(&pki.ca, ca.pem()).expect("write");
    std::fs::write(&pki.cert, leaf.pem()).expect("write");
    std::fs::write(&pki.key, leaf_key.serialize_pem()).expect("write");
    pki
}

/// A client that trusts only `ca`.
fn client_trusting(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("read CA");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("CA")])
        .build()
        .expect("client")
}

async fn answers(client: &reqwest::Client, url: &str) -> bool {
    client
        .get(format!("{url}/api/capabilities"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Replaces `dst` the way certificate tools do: write beside it, then rename over it.
fn replace(src: &Path, dst: &Path) {
    let tmp = dst.with_extension("new");
    std::fs::copy(src, &tmp).expect("copy");
    std::fs::rename(&tmp, dst).expect("rename");
}

async fn logged_in_over_tls(tc: &Toolchain, url: &str, ca: &Path) -> Project {
    let mut p = Project::bare(tc, url, "tlsproj");
    p.unset.clear();
    p.set_env("PULUMI_ACCESS_TOKEN", CLI_TOKEN);
    p.set_env("SSL_CERT_FILE", &ca.display().to_string());
    p.ok(&["login", url]).await;
    if !p.asks_server_for_default_org() {
        p.ok(&["org", "set-default", "organization"]).await;
    }
    p
}

#[tokio::test]
async fn the_cli_works_over_https_and_a_renewed_certificate_is_served_without_restart() {
    let tc = require_cli!();
    let dir = tempfile::tempdir().expect("tempdir");
    let first = make_pki(dir.path(), "first");
    let second = make_pki(dir.path(), "second");
    // The server reads these two paths; the test swaps what is in them.
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    replace(&first.cert, &cert);
    replace(&first.key, &key);
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let srv = ServerProcess::start(&["--tls-cert", &c, "--tls-key", &k]).await;
    assert!(srv.url.starts_with("https://"), "{}", srv.url);

    // A CLI trusting another CA refuses the server: the certificate is really checked.
    let mut stranger = Project::bare(&tc, &srv.url, "tlsproj");
    stranger.unset.clear();
    stranger.set_env("PULUMI_ACCESS_TOKEN", CLI_TOKEN);
    stranger.set_env("SSL_CERT_FILE", &second.ca.display().to_string());
    let refused = stranger.fails(&["login", &srv.url]).await;
    assert!(
        refused.all().contains("certificate"),
        "expected a certificate error: {}",
        refused.all()
    );

    let p = logged_in_over_tls(&tc, &srv.url, &first.ca).await;
    p.write_program(&items(3, "a", 10), "");
    p.ok(&["stack", "init", "dev"]).await;
    p.ok(&["up", "--yes"]).await;
    let ls = p.ok(&["stack", "ls", "--json"]).await.json();
    assert_eq!(ls[0]["name"], "dev", "{ls}");

    // Renewal: a certificate from another CA is written in place. The server notices within
    // a few seconds and serves it; no restart, so the pid and the database stay.
    replace(&second.key, &key);
    replace(&second.cert, &cert);
    let new_ca = client_trusting(&second.ca);
    let old_ca = client_trusting(&first.ca);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !answers(&new_ca, &srv.url).await {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served: {}",
            srv.log(1)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !answers(&old_ca, &srv.url).await,
        "the old certificate is still served"
    );
    assert!(srv.log(1).contains("loaded the TLS certificate again"));

    // The CLI trusting the new CA carries on with the same stack.
    let mut p = p;
    p.set_env("SSL_CERT_FILE", &second.ca.display().to_string());
    p.write_program(&items(4, "a", 10), "");
    p.ok(&["up", "--yes"]).await;
    let history = p.ok(&["stack", "history", "--json"]).await.json();
    assert_eq!(history.as_array().map(|h| h.len()), Some(2), "{history}");

    // A broken replacement (a key that is not the certificate's) is refused; the server keeps
    // serving the pair it has.
    replace(&first.key, &key);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !srv.log(1).contains("still serving the previous one") {
        assert!(Instant::now() < deadline, "no warning: {}", srv.log(1));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(answers(&new_ca, &srv.url).await);
    p.ok(&["stack", "ls"]).await;
}

#[tokio::test]
async fn sighup_loads_the_certificate_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = make_pki(dir.path(), "first");
    let second = make_pki(dir.path(), "second");
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    replace(&first.cert, &cert);
    replace(&first.key, &key);
    let (c, k) = (cert.display().to_string(), key.display().to_string());
    let mut srv = ServerProcess::start(&["--tls-cert", &c, "--tls-key", &k]).await;
    let old_ca = client_trusting(&first.ca);
    assert!(answers(&old_ca, &srv.url).await);
    // Same size and an mtime set back: only the signal can make the server look again.
    let stamp = std::fs::metadata(&cert)
        .and_then(|m| m.modified())
        .expect("mtime");
    replace(&second.cert, &cert);
    replace(&second.key, &key);
    for f in [&cert, &key] {
        let file = std::fs::File::options().write(true).open(f).expect("open");
        file.set_modified(stamp).expect("set mtime");
    }
    srv.signal("HUP");
    let new_ca = client_trusting(&second.ca);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !answers(&new_ca, &srv.url).await {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload: {}",
            srv.log(1)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The poll may have seen the files first (their sizes can differ); the signal reloads
    // regardless, and says so.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !srv.log(1).contains("SIGHUP") {
        assert!(
            Instant::now() < deadline,
            "no reload on SIGHUP: {}",
            srv.log(1)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    srv.stop().await;
}

#[tokio::test]
async fn sighup_without_tls_is_harmless() {
    let mut srv = ServerProcess::start(&[]).await;
    srv.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !srv.log(1).contains("nothing to do") {
        assert!(
            Instant::now() < deadline,
            "no word of the SIGHUP: {}",
            srv.log(1)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    srv.api().get("/api/user").await.ok();
    srv.stop().await;
}

fn serve_outcome(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let db = dir.join("t.db").display().to_string();
    let mut all = vec!["serve", "--db", &db];
    all.extend_from_slice(args);
    serve_until_up(dir, &all, &[])
}

#[test]
fn plain_http_is_refused_off_loopback_unless_asked_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = format!("0.0.0.0:{}", free_port());
    let (code, out) = serve_outcome(dir.path(), &["--addr", &addr]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("refusing to serve plain HTTP") && out.contains("--insecure-http"),
        "{out}"
    );
    assert!(
        !dir.path().join("t.db").exists() || !out.contains("pbackend is serving"),
        "{out}"
    );

    let addr = format!("0.0.0.0:{}", free_port());
    let (code, out) = serve_outcome(dir.path(), &["--addr", &addr, "--insecure-http"]);
    assert_eq!(code, None, "it should serve: {out}");
    assert!(out.contains("pbackend is serving"), "{out}");
}

#[test]
fn unusable_certificates_stop_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = make_pki(dir.path(), "a");
    let b = make_pki(dir.path(), "b");
    let (cert, other_key) = (a.cert.display().to_string(), b.key.display().to_string());
    let (code, out) = serve_outcome(dir.path(), &["--tls-cert", &cert, "--tls-key", &other_key]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("does not belong to the certificate"), "{out}");

    let missing = dir.path().join("nope.pem").display().to_string();
    let (code, out) = serve_outcome(
        dir.path(),
        &["--tls-cert", &missing, "--tls-key", &other_key],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("cannot read") && out.contains("nope.pem"),
        "{out}"
    );

    // A key file given as the certificate: no certificate in it.
    let (code, out) = serve_outcome(
        dir.path(),
        &["--tls-cert", &other_key, "--tls-key", &other_key],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no PEM certificate"), "{out}");

    let (code, out) = serve_outcome(dir.path(), &["--tls-cert", &cert]);
    assert_eq!(
        code,
        Some(2),
        "clap refuses a certificate without its key: {out}"
    );
}
