//! The rules of the service, shared by the HTTP server and the operator CLI: one async method
//! per use case. The engine decides; the store persists; neither knows HTTP.

pub mod access;
pub mod adopt;
pub mod backup;
pub mod blocking;
mod bootstrap;
pub mod clock;
pub mod crypto;
pub mod error;
pub mod inflate;
pub mod integration;
pub mod memory;
pub mod names;
pub mod operator;
pub mod state;
mod views;

use std::sync::Arc;

pub use access::authorize::{Permission, Target};
pub use access::identity::Identity;
pub use bootstrap::{Bootstrap, has_master_key as bootstrap_has_master_key};
pub use error::{EngineError, EngineResult};
pub use state::events::{EventBody, EventsPage};
pub use state::history::Export;
pub use state::lease::{Lease, LeaseUse};
pub use state::outputs::StackOutputs;
pub use state::stacks::{CreateStack, StackList, StackListQuery};
pub use state::updates::{
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
    /// Ways to log in besides API tokens.
    pub login: access::login::LoginConfig,
    /// Where and how webhooks are delivered.
    pub webhooks: integration::delivery::WebhookConfig,
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
            max_journal_version: state::journal::LATEST_JOURNAL_VERSION,
            login: access::login::LoginConfig {
                login_token_ttl: access::login::DEFAULT_LOGIN_TOKEN_TTL,
                refresh_token_ttl: access::login::DEFAULT_REFRESH_TOKEN_TTL,
                ..Default::default()
            },
            webhooks: Default::default(),
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
    live: state::live::LiveCache,
    /// HTTP client and key caches for logins through identity providers.
    login: Arc<access::login::LoginRuntime>,
    /// Bounds how many refused requests a second reach the audit log.
    refusals: integration::audit::FailureBudget,
    /// The HTTP client webhook deliveries go through.
    webhooks: Arc<integration::delivery::Sender>,
}

/// Updates in progress across the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    pub running_updates: i64,
    pub live_leases: i64,
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

    /// Whether the engine can serve: the store takes a write transaction.
    pub async fn ready(&self) -> EngineResult<()> {
        Ok(self.store.probe().await?)
    }

    /// How many updates hold a stack right now, and how many of those still have a live
    /// lease (for the metrics).
    pub async fn activity(&self) -> EngineResult<Activity> {
        let r = self.store.running_updates(self.now()).await?;
        Ok(Activity {
            running_updates: r.running,
            live_leases: r.live_leases,
        })
    }

    /// Organizations the caller belongs to.
    pub fn organizations(&self, caller: &Identity) -> Vec<String> {
        caller.organizations()
    }

    /// Namespaces the caller may keep stacks in: its organizations and, as in Pulumi Cloud,
    /// a user's own name (older CLIs default to it instead of asking for a default org).
    pub fn namespaces(&self, caller: &Identity) -> Vec<String> {
        let mut ns = self.organizations(caller);
        if caller.is_user() && !ns.contains(&caller.user) {
            ns.push(caller.user.clone());
        }
        ns
    }

    /// The organization the CLI puts unqualified stacks in: the instance's own when the
    /// caller belongs to it, else the first it belongs to, else the user's own namespace.
    pub fn default_org(&self, caller: &Identity) -> String {
        let orgs = caller.organizations();
        if orgs.contains(&self.cfg.org) || caller.is_instance_admin() {
            return self.cfg.org.clone();
        }
        orgs.into_iter()
            .next()
            .unwrap_or_else(|| caller.user.clone())
    }

    fn check_org_access(&self, caller: &Identity, org: &str) -> EngineResult<()> {
        names::check_org(org)?;
        if caller.is_instance_admin() || self.namespaces(caller).iter().any(|o| o == org) {
            Ok(())
        } else {
            Err(EngineError::NotFound(format!(
                "organization '{org}' not found"
            )))
        }
    }

    /// Resolves a stack the caller may use.
    async fn stack(&self, caller: &Identity, key: &StackKey) -> EngineResult<StackRow> {
        names::check_key(key)?;
        self.check_org_access(caller, &key.org)?;
        self.store
            .get_stack(key)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("stack '{key}' not found")))
    }
}
