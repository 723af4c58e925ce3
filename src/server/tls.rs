//! TLS for the API listener: a certificate and key from PEM files, served through a resolver
//! that swaps in a new pair when the files change on disk or on SIGHUP — certificates from
//! ACME clients and cert-manager are renewed in place, and a restart would cut running
//! updates' requests.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{Error, InconsistentKeys};

/// How often the files are looked at for a change (their size and modification time).
const POLL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not a PEM certificate chain: {detail}")]
    BadCertificate { path: PathBuf, detail: String },
    #[error("{path} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {detail}")]
    BadKey { path: PathBuf, detail: String },
    #[error("the key {key} does not belong to the certificate {cert}: {detail}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
    #[error("cannot set up TLS: {0}")]
    Config(String),
}

/// Where the certificate chain and its key are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The acceptor the listener hands each connection to, and the resolver behind it.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.resolver.files)
            .finish()
    }
}

/// Size and modification time of both files: a change in either means "load again".
type Stamp = [(u64, Option<SystemTime>); 2];

#[derive(Debug)]
struct Resolver {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<(Arc<CertifiedKey>, Stamp)>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        Some(current.0.clone())
    }
}

impl Tls {
    /// Loads the pair (refusing one that does not match) and builds the acceptor.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let stamp = stamp(&files);
        let key = load_pair(&files, &provider)?;
        let resolver = Arc::new(Resolver {
            files,
            provider: provider.clone(),
            current: RwLock::new((Arc::new(key), stamp)),
        });
        let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        // The server speaks HTTP/1.1 only; saying so lets clients skip an h2 attempt.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
        })
    }

    /// Loads the files again now. A pair that fails to load leaves the served one in place.
    pub fn reload(&self) -> Result<(), TlsError> {
        let r = &self.resolver;
        let stamp = stamp(&r.files);
        let loaded = load_pair(&r.files, &r.provider);
        let mut current = r.current.write().unwrap_or_else(|p| p.into_inner());
        // The stamp moves on either way: a broken pair is reported once, not at every poll.
        current.1 = stamp;
        current.0 = Arc::new(loaded?);
        Ok(())
    }

    /// Reloads on SIGHUP, and when either file's size or modification time changes (checked
    /// every two seconds). Runs until the server stops.
    ///
    /// The SIGHUP handler is in place when this returns (a SIGHUP before it would end the
    /// process), so call it inside the runtime before serving.
    pub fn watch(self) -> impl std::future::Future<Output = ()> + Send {
        let mut hup = Hangup::install();
        async move {
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let forced = tokio::select! {
                    _ = hup.recv() => true,
                    _ = tick.tick() => false,
                };
                self.check(forced).await;
            }
        }
    }

    async fn check(&self, forced: bool) {
        let this = self.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let changed = {
                let r = &this.resolver;
                let held = r.current.read().unwrap_or_else(|p| p.into_inner()).1;
                held != stamp(&r.files)
            };
            if forced || changed {
                Some(this.reload())
            } else {
                None
            }
        })
        .await;
        match outcome {
            Ok(Some(Ok(()))) => tracing::info!(
                cert = %self.resolver.files.cert.display(),
                reason = if forced { "SIGHUP" } else { "files changed" },
                "loaded the TLS certificate again"
            ),
            Ok(Some(Err(e))) => tracing::warn!(
                error = %e,
                "the TLS certificate on disk cannot be loaded; still serving the previous one"
            ),
            Ok(None) | Err(_) => {}
        }
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    let one = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => (m.len(), m.modified().ok()),
        Err(_) => (0, None),
    };
    [one(&files.cert), one(&files.key)]
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn load_pair(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let pem = read(&files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: files.cert.clone(),
            detail: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key_pem = read(&files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadKey {
        path: files.key.clone(),
        detail: e.to_string(),
    })?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadKey {
            path: files.key.clone(),
            detail: e.to_string(),
        })?;
    let pair = CertifiedKey::new(chain, signer);
    match pair.keys_match() {
        // A key type whose public half the provider cannot derive: nothing to compare.
        Ok(()) | Err(Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(pair),
        Err(e) => Err(TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            detail: e.to_string(),
        }),
    }
}

/// Without TLS there is nothing to reload, but a SIGHUP (what `systemctl reload` sends) must
/// not end the process, as it would by default. Installed before this returns.
pub fn absorb_hangups() -> impl std::future::Future<Output = ()> + Send {
    let mut hup = Hangup::install();
    async move {
        loop {
            hup.recv().await;
            tracing::info!("SIGHUP: no TLS certificate to reload; nothing to do");
        }
    }
}

/// SIGHUP as a stream of wake-ups (never, where there are no signals).
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn install() -> Hangup {
        Hangup {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = self.signal.as_mut() {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}
