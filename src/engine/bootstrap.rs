//! Opening an instance: checking the master key against the database's canary, and settling
//! the single-tenant API token (given, remembered, or generated on first start).

use std::sync::Arc;

use crate::engine::access::login::LoginRuntime;
use crate::engine::clock::Clock;
use crate::engine::crypto::{self, MasterKey};
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::{Engine, EngineConfig};
use crate::store::Store;

const CANARY_KEY: &str = "master_key_canary";
const TOKEN_HASH_KEY: &str = "api_token_sha256";

/// What opening the instance did that the operator must hear about.
#[derive(Debug, Default)]
pub struct Bootstrap {
    /// A token generated on this start; shown once, only its hash is kept.
    pub generated_token: Option<String>,
    /// True when this start initialised the master-key canary (a new database).
    pub new_database: bool,
}

impl Engine {
    /// Opens the engine over `store`. Fails when `master` is not the key the database was
    /// created with. `token` replaces the remembered API token when given; when neither exists
    /// a token is generated and returned in [`Bootstrap`].
    pub async fn open(
        store: Arc<dyn Store>,
        master: MasterKey,
        token: Option<String>,
        cfg: EngineConfig,
        clock: Arc<dyn Clock>,
    ) -> EngineResult<(Engine, Bootstrap)> {
        let mut boot = Bootstrap::default();
        check_master_key(store.as_ref(), &master, &mut boot).await?;

        let admin_token_hash = Some(match token {
            Some(t) => {
                if t.trim().is_empty() {
                    return Err(EngineError::Invalid(
                        "the API token must not be empty".into(),
                    ));
                }
                let h = crypto::sha256(t.as_bytes());
                store.meta_put(TOKEN_HASH_KEY, h.to_vec()).await?;
                h
            }
            None => match store.meta_get(TOKEN_HASH_KEY).await? {
                Some(h) => h.try_into().map_err(|_| {
                    EngineError::Internal("the stored token hash has the wrong length".into())
                })?,
                None => {
                    let t = crypto::new_token("pul-");
                    let h = crypto::sha256(t.as_bytes());
                    store.meta_put(TOKEN_HASH_KEY, h.to_vec()).await?;
                    boot.generated_token = Some(t);
                    h
                }
            },
        });

        let engine = Engine {
            store,
            master: Some(master),
            cfg,
            clock,
            admin_token_hash,
            live: Default::default(),
            login: Arc::new(LoginRuntime::new()?),
            refusals: Default::default(),
            webhooks: Arc::new(crate::engine::integration::delivery::Sender::new()?),
        };
        engine.ensure_instance_org().await?;
        Ok((engine, boot))
    }

    /// Opens the engine for offline maintenance: no API token; the master key only when
    /// given, and then checked against the database.
    pub async fn open_offline(
        store: Arc<dyn Store>,
        master: Option<MasterKey>,
        cfg: EngineConfig,
        clock: Arc<dyn Clock>,
    ) -> EngineResult<Engine> {
        if let Some(m) = &master {
            match store.meta_get(CANARY_KEY).await? {
                Some(canary) if !m.opens_canary(&canary) => {
                    return Err(EngineError::Invalid(
                        "the master key does not match this database: it was created with a \
                         different key"
                            .into(),
                    ));
                }
                Some(_) => {}
                None => store.meta_put(CANARY_KEY, m.canary()).await?,
            }
        }
        Ok(Engine {
            store,
            master,
            cfg,
            clock,
            admin_token_hash: None,
            live: Default::default(),
            login: Arc::new(LoginRuntime::new()?),
            refusals: Default::default(),
            webhooks: Arc::new(crate::engine::integration::delivery::Sender::new()?),
        })
    }
}

/// Verifies (or, on a new database, records) the master key.
pub async fn check_master_key(
    store: &dyn Store,
    master: &MasterKey,
    boot: &mut Bootstrap,
) -> EngineResult<()> {
    match store.meta_get(CANARY_KEY).await? {
        Some(canary) => {
            if !master.opens_canary(&canary) {
                return Err(EngineError::Invalid(
                    "the master key does not match this database: it was created with a different \
                     key. Start with the key the database was created with (--master-key or \
                     PULUMI_BACKEND_MASTER_KEY)."
                        .into(),
                ));
            }
        }
        None => {
            store.meta_put(CANARY_KEY, master.canary()).await?;
            boot.new_database = true;
        }
    }
    Ok(())
}

/// Whether this database already has a master key recorded.
pub async fn has_master_key(store: &dyn Store) -> EngineResult<bool> {
    Ok(store.meta_get(CANARY_KEY).await?.is_some())
}
