//! The rules of the service, shared by the HTTP server and the operator CLI: one async method
//! per use case. The engine decides; the store persists; neither knows HTTP.

pub mod blocking;
pub mod clock;
pub mod crypto;
pub mod delta;
pub mod deployment;
pub mod error;
pub mod inflate;
pub mod journal;
pub mod names;
pub mod rawjson;
pub mod rekey;
pub mod reveal;

pub mod backup;
mod bootstrap;
mod checkpoint;
pub(crate) mod events;
mod history;
pub mod lease;
mod live;
pub mod memory;
pub mod operator;
mod outputs;
mod secrets;
mod stacks;
mod updates;
mod views;

use std::sync::Arc;

pub use bootstrap::{Bootstrap, has_master_key as bootstrap_has_master_key};
pub use error::{EngineError, EngineResult};
pub use events::{EventBody, EventsPage};
pub use history::Export;
pub use lease::{Lease, LeaseUse};
pub use outputs::StackOutputs;
pub use stacks::{CreateStack, StackList, StackListQuery};
pub use updates::{
    Begun, CreateUpdate, RecordedOutputs, StartUpdateOptions, Started, UpdateKind, UpdateStatusView,
};
pub use views::{PruneSummary, StackView, TokenView, UpdateView, VersionView};

use crate::engine::clock::Clock;
use crate::engine::crypto::MasterKey;
use crate::store::{StackKey, StackRow, Store};

/// Settings the engine's rules depend on.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The organization this instance serves (also the CLI's default org).
    pub org: String,
    /// The user the single-tenant token acts as.
    pub user: String,
    /// Seconds a lease lasts from start and from each renewal.
    pub lease_duration: i64,
    /// Versions of each stack's state to keep.
    pub max_state_versions: i64,
    /// Checkpoints smaller than this are sent whole rather than as deltas.
    pub delta_cutoff_bytes: i64,
    /// Largest decompressed request body accepted for whole-deployment calls.
    pub max_state_bytes: usize,
    /// Highest journal protocol offered to CLIs that ask (0: always checkpoints).
    pub max_journal_version: i64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            org: "organization".into(),
            user: "admin".into(),
            lease_duration: 300,
            max_state_versions: 50,
            delta_cutoff_bytes: 1024 * 1024,
            max_state_bytes: 512 * 1024 * 1024,
            max_journal_version: journal::LATEST_JOURNAL_VERSION,
        }
    }
}

/// Who is calling: the one identity type every permission check is made against, whatever
/// way the caller authenticated.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    /// The access token used, when it is one of the managed tokens.
    pub token_id: Option<String>,
    /// The operator at the database (pbackend subcommands): every organization.
    pub operator: bool,
}

impl Caller {
    pub fn user(name: &str) -> Self {
        Caller {
            user: name.to_owned(),
            token_id: None,
            operator: false,
        }
    }

    /// The identity of offline maintenance commands.
    pub fn operator() -> Self {
        Caller {
            user: "operator".into(),
            token_id: None,
            operator: true,
        }
    }
}

/// An `update-token` credential presented on an update-scoped call.
#[derive(Clone)]
pub struct LeaseToken(pub String);

impl std::fmt::Debug for LeaseToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseToken(<redacted>)")
    }
}

pub struct Engine {
    store: Arc<dyn Store>,
    /// Absent for offline commands that were not given the key; calls that need it fail.
    master: Option<MasterKey>,
    cfg: EngineConfig,
    clock: Arc<dyn Clock>,
    /// SHA-256 of the single-tenant API token (only `serve` has one).
    admin_token_hash: Option<[u8; 32]>,
    live: live::LiveCache,
}

impl Engine {
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub(crate) fn master(&self) -> EngineResult<&MasterKey> {
        self.master.as_ref().ok_or_else(|| {
            EngineError::Invalid(
                "this needs the master key: pass --master-key (or PULUMI_BACKEND_MASTER_KEY) \
                 or --master-key-file"
                    .into(),
            )
        })
    }

    /// Checks an API token; the result is the caller's identity. The single-tenant token acts
    /// as `--user`; managed tokens (`pbackend tokens`) as their user, until revoked or expired.
    pub async fn authenticate(&self, token: &str) -> EngineResult<Caller> {
        use subtle::ConstantTimeEq;
        let hash = crypto::sha256(token.as_bytes());
        if let Some(admin) = &self.admin_token_hash
            && bool::from(hash.ct_eq(admin))
        {
            return Ok(Caller::user(&self.cfg.user));
        }
        if let Some(t) = self.store.find_token(hash.to_vec()).await? {
            let now = self.now();
            let live = t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now);
            if live {
                // Record use at most once a minute: this is on every API request.
                if t.last_used_at.is_none_or(|u| u + 60 <= now) {
                    self.store.touch_token(&t.id, now).await?;
                }
                return Ok(Caller {
                    user: t.user,
                    token_id: Some(t.id),
                    operator: false,
                });
            }
        }
        Err(EngineError::Unauthenticated(
            "No credentials provided or are invalid.".into(),
        ))
    }

    /// Organizations the caller belongs to.
    pub fn organizations(&self, _caller: &Caller) -> Vec<String> {
        vec![self.cfg.org.clone()]
    }

    /// Namespaces the caller may keep stacks in: its organizations and, as in Pulumi Cloud,
    /// its own user name (older CLIs default to it instead of asking for a default org).
    pub fn namespaces(&self, caller: &Caller) -> Vec<String> {
        let mut ns = self.organizations(caller);
        if !ns.contains(&caller.user) {
            ns.push(caller.user.clone());
        }
        ns
    }

    pub fn default_org(&self, _caller: &Caller) -> String {
        self.cfg.org.clone()
    }

    fn check_org_access(&self, caller: &Caller, org: &str) -> EngineResult<()> {
        names::check_org(org)?;
        if caller.operator || self.namespaces(caller).iter().any(|o| o == org) {
            Ok(())
        } else {
            Err(EngineError::NotFound(format!(
                "organization '{org}' not found"
            )))
        }
    }

    /// Resolves a stack the caller may use.
    async fn stack(&self, caller: &Caller, key: &StackKey) -> EngineResult<StackRow> {
        names::check_key(key)?;
        self.check_org_access(caller, &key.org)?;
        self.store
            .get_stack(key)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("stack '{key}' not found")))
    }
}
