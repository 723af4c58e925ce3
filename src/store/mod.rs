//! Persistence. The [`Store`] trait is shaped like the engine's use cases: every invariant that
//! must hold under concurrency (one running update per stack, lease-guarded writes, version
//! numbering, retention) is one trait method that a backend runs in one transaction.
//!
//! Nothing here knows HTTP or the Pulumi wire format: deployments arrive as gzip blobs the
//! engine already built, tags as plain maps. Lookups answer `Ok(None)` for absence; errors are
//! reserved for things that went wrong.
//!
//! The trait is object-safe (boxed futures), so the engine holds an `Arc<dyn Store>` and a
//! second backend (PostgreSQL, for stateless replicas) slots in without touching callers. No
//! backend type (rusqlite or otherwise) appears in this file.

pub mod access;
pub mod backup;
#[doc(hidden)]
pub mod conformance;
pub mod error;
pub mod integration;
pub mod lock;
pub mod open;
pub mod postgres;
pub mod sql;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

pub use crate::types::{OrgRole, StackKey, StackPermission, Tags, TokenKind, UpdateStatus};
pub use access::{AccessStore, Grantee, Principal, TokenFilter};
pub use error::{LeaseDenied, StoreError, StoreResult};
pub use integration::{IntegrationStore, Notes};

/// A boxed, sendable future: what every store method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send + 'a>>;

#[derive(Debug, Clone)]
pub struct StackRow {
    pub id: i64,
    pub key: StackKey,
    pub tags: Tags,
    pub created_at: i64,
    /// Highest version number handed out to an update (in progress or finished).
    pub last_version: i64,
    /// Version holding the stack's current state; `None` when it never had one.
    pub current_version: Option<i64>,
    /// Most recent non-preview update; kept after it finishes (the CLI reads it for `cancel`).
    pub active_update: Option<String>,
    pub resource_count: i64,
    /// Start time of the most recent non-preview update.
    pub last_update_at: Option<i64>,
    /// Size in bytes (uncompressed) of the current state.
    pub state_size: i64,
    /// The login of the user who created it (stack creators administer their stacks).
    pub created_by: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewStack {
    pub key: StackKey,
    pub tags: Tags,
    pub created_at: i64,
    pub created_by: Option<String>,
    /// Teams given write access at creation (`pulumi stack init --teams`).
    pub teams: Vec<String>,
    /// The stack's secrets key, already wrapped by the master key.
    pub wrapped_key: Vec<u8>,
    /// A deployment to start from (stacks with a client-side secrets provider send one).
    pub initial_state: Option<StateBlob>,
    pub notes: Notes,
}

/// A deployment as stored: gzip of the exact JSON bytes, their SHA-256 and length.
#[derive(Debug, Clone)]
pub struct StateBlob {
    pub gz: Vec<u8>,
    /// Lowercase hex SHA-256 of the uncompressed bytes.
    pub sha256: String,
    pub size: i64,
    pub resource_count: i64,
}

#[derive(Debug, Clone)]
pub struct NewUpdate {
    pub id: String,
    pub stack_id: i64,
    pub kind: String,
    pub dry_run: bool,
    pub created_at: i64,
    pub author: String,
    pub message: String,
    /// JSON object text (string → string).
    pub environment: String,
    /// JSON object text (config key → {string, secret, object}).
    pub config: String,
    /// The coherence window the update runs in, if any.
    pub coherence_window: Option<String>,
}

/// Root-stack outputs a preview in a coherence window recorded at `complete` (JSON texts).
#[derive(Debug, Clone)]
pub struct WindowOutputs {
    pub outputs: Option<String>,
    pub secrets_providers: Option<String>,
}

/// An update of one stack in a coherence window (listed in the order they joined it).
#[derive(Debug, Clone)]
pub struct WindowMember {
    pub update_id: String,
    pub dry_run: bool,
    pub status: UpdateStatus,
    pub created_at: i64,
    pub ended_at: Option<i64>,
    pub recorded: Option<WindowOutputs>,
}

#[derive(Debug, Clone)]
pub struct UpdateRow {
    pub id: String,
    pub stack_id: i64,
    pub kind: String,
    pub dry_run: bool,
    pub status: UpdateStatus,
    /// The stack version this update produces (previews: the version they looked at).
    pub version: i64,
    /// The stack version current when the update started (the state the CLI exported).
    pub base_version: Option<i64>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub lease_expires: Option<i64>,
    pub journal_version: i64,
    pub author: String,
    pub message: String,
    pub environment: String,
    pub config: String,
    pub resource_changes: Option<String>,
    pub resource_count: Option<i64>,
}

impl UpdateRow {
    /// True while this update holds (or held until `now`) an unexpired lease.
    pub fn lease_live(&self, now: i64) -> bool {
        self.status == UpdateStatus::Running && self.lease_expires.is_some_and(|e| e > now)
    }
}

#[derive(Debug, Clone)]
pub struct StartUpdate {
    pub update_id: String,
    pub stack_id: i64,
    pub now: i64,
    pub lease_hash: Vec<u8>,
    pub lease_expires: i64,
    /// Replaces the stack's tags when present.
    pub tags: Option<Tags>,
    pub journal_version: i64,
    /// Written only when the update starts.
    pub notes: Notes,
}

#[derive(Debug, Clone)]
pub enum StartOutcome {
    Started(UpdateRow),
    /// Another update holds the stack; its row is returned so the caller can tell whether its
    /// lease has expired and reap it.
    Busy(UpdateRow),
    /// The update exists but is past `not-started`.
    AlreadyStarted(UpdateRow),
}

/// Proof that a write is made by the holder of an update's lease.
#[derive(Debug, Clone)]
pub struct LeaseCheck {
    pub update_id: String,
    pub stack_id: i64,
    pub token_hash: Vec<u8>,
    pub now: i64,
}

/// What the store knows of an update's lease, for checking a credential before any work.
#[derive(Debug, Clone)]
pub struct LeaseState {
    pub stack_id: i64,
    pub status: UpdateStatus,
    pub lease_hash: Option<Vec<u8>>,
    pub lease_expires: Option<i64>,
}

/// The latest state an update reported (checkpoint mode), or its verbatim baseline.
#[derive(Debug, Clone)]
pub struct WorkingState {
    pub blob: StateBlob,
    /// Sequence number of the last verbatim/delta write (0 for full checkpoints).
    pub sequence: i64,
}

#[derive(Debug, Clone)]
pub struct CheckpointWrite {
    pub blob: StateBlob,
    pub sequence: i64,
    /// Written only if the update's latest stored sequence is still this (a compaction of
    /// deltas the writer holds in memory); `None`: unconditionally.
    pub replaces: Option<i64>,
}

/// How far an update's stored state has come: what a cached view of it must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Journal batches stored.
    pub journal_batches: i64,
    /// The sequence of the latest checkpoint or delta stored (`None`: none yet).
    pub latest_sequence: Option<i64>,
}

/// Engine events of one batch as the CLI sent them (gzip of the JSON array of events).
#[derive(Debug, Clone)]
pub struct EventBatch {
    pub first_sequence: i64,
    pub last_sequence: i64,
    pub count: i64,
    pub gz: Vec<u8>,
    /// `resourceChanges` of a summary event found in the batch (JSON object text).
    pub resource_changes: Option<String>,
}

/// One `PATCH …/journalentries` batch, stored as gzip of `{"entries":[…]}`.
#[derive(Debug, Clone)]
pub struct JournalBatch {
    /// Position among the update's batches (1 for the first). On append, the position the
    /// writer expects it to take: anything else means its view of the journal is stale.
    pub ordinal: i64,
    pub first_sequence: i64,
    pub last_sequence: i64,
    pub count: i64,
    pub gz: Vec<u8>,
}

/// How an adopted update ended, as its origin recorded it.
#[derive(Debug, Clone)]
pub struct AdoptedRecord {
    pub status: UpdateStatus,
    pub started_at: i64,
    pub ended_at: i64,
    /// JSON object text (operation → count).
    pub resource_changes: Option<String>,
}

/// Counts for the process's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunningUpdates {
    pub running: i64,
    pub live_leases: i64,
}

/// One applied delta checkpoint: the edits (gzip of the `deploymentDelta` JSON) and the hash
/// of the text they produced.
#[derive(Debug, Clone)]
pub struct DeltaWrite {
    pub sequence: i64,
    pub hash: String,
    pub gz: Vec<u8>,
    /// On append: the latest stored sequence the delta applies to (anything else: stale).
    pub base_sequence: i64,
}

/// Who may finish an update.
#[derive(Debug, Clone)]
pub enum FinishGuard {
    /// The CLI holding the lease (`complete`).
    Lease(LeaseCheck),
    /// A user cancelling it; succeeds while the update has not finished.
    Running,
    /// Reaping an abandoned update: only if its lease had expired at `now`.
    ExpiredAt(i64),
}

#[derive(Debug, Clone)]
pub enum FinalState {
    /// Previews: the stack's state does not change.
    Unchanged,
    /// Promote the update's last checkpoint; if it wrote none, the current state carries over.
    Working { resource_count: Option<i64> },
    /// The engine built the final state (journal mode).
    Blob(StateBlob),
}

#[derive(Debug, Clone)]
pub struct FinishUpdate {
    pub update_id: String,
    pub stack_id: i64,
    pub guard: FinishGuard,
    pub status: UpdateStatus,
    pub ended_at: i64,
    pub resource_changes: Option<String>,
    pub final_state: FinalState,
    pub keep_versions: i64,
    /// Recorded on the update when it runs in a coherence window.
    pub window_outputs: Option<WindowOutputs>,
    /// What `final_state` was built from; refused as stale if the store has moved on.
    pub built_from: Option<BuiltFrom>,
    /// Written only when this call finishes the update (not for a retried `complete`).
    pub notes: Notes,
}

/// The stored progress a state built in memory reflects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltFrom {
    /// This many journal batches.
    Journal(i64),
    /// The checkpoint or delta of this sequence.
    Text(i64),
}

#[derive(Debug, Clone)]
pub enum FinishOutcome {
    Finished(UpdateRow),
    /// It had already finished (a retried `complete`); nothing changed.
    AlreadyFinished(UpdateRow),
}

/// When a stack may be deleted or renamed: checked in the same transaction as the change.
#[derive(Debug, Clone, Copy)]
pub struct StackGuard {
    pub now: i64,
    /// Whatever holds it; otherwise only while no update holds an unexpired lease at `now`.
    pub force: bool,
    /// Unless forced, only when no resources remain.
    pub require_empty: bool,
}

/// The outcome of a guarded change to a stack.
#[derive(Debug, Clone)]
pub enum Guarded<T> {
    Done(T),
    HasResources,
    Busy(Box<UpdateRow>),
}

#[derive(Debug, Clone)]
pub enum ImportOutcome {
    Imported { version: i64 },
    Busy(Box<UpdateRow>),
}

#[derive(Debug, Clone, Default)]
pub struct StackQuery {
    /// Organizations to list from; `None`: every organization.
    pub orgs: Option<Vec<String>>,
    pub project: Option<String>,
    pub tag_name: Option<String>,
    pub tag_value: Option<String>,
    /// Only stacks whose id is greater (continuation).
    pub after_id: Option<i64>,
    pub limit: i64,
    /// Only stacks this subject may read; `None`: every stack.
    pub visible_to: Option<Visibility>,
}

/// The stacks a subject may read: every stack of `orgs`, the stacks it created, and the
/// stacks granted at least read to the user or to one of the teams.
#[derive(Debug, Clone, Default)]
pub struct Visibility {
    pub orgs: Vec<String>,
    pub login: Option<String>,
    /// `org/team`.
    pub teams: Vec<String>,
}

/// An access token of any kind; the secret itself is never stored, only its SHA-256.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: String,
    pub kind: TokenKind,
    /// The user a personal or refresh token belongs to; the organization of an organization
    /// token; `team-account:<org>/<team>` for a team token.
    pub user: String,
    pub org: Option<String>,
    pub team: Option<String>,
    pub name: String,
    pub description: String,
    /// An organization token with admin rights in its organization.
    pub admin: bool,
    /// A custom role that bounds an organization token's permissions.
    pub role_id: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// For refresh tokens from a browser login: the identity provider's own refresh token,
    /// sealed with the master key (so the user can be re-validated at each refresh).
    pub upstream: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: String,
    pub kind: TokenKind,
    pub user: String,
    pub org: Option<String>,
    pub team: Option<String>,
    pub name: String,
    pub description: String,
    pub admin: bool,
    pub role_id: Option<String>,
    pub created_by: String,
    /// SHA-256 of the token.
    pub hash: Vec<u8>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub upstream: Option<Vec<u8>>,
    pub notes: Notes,
}

#[derive(Debug, Clone)]
pub enum TokenSelector {
    Id(String),
    /// Every token of a user (personal and refresh).
    User(String),
    /// Every token of a team.
    Team {
        org: String,
        team: String,
    },
}

/// A kept version of a stack's state, without its content.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VersionInfo {
    pub version: i64,
    pub sha256: String,
    /// Uncompressed size.
    pub size: i64,
    /// Stored (compressed) size.
    pub stored_size: i64,
    pub resource_count: i64,
    pub created_at: i64,
}

/// What a prune removed (or would remove).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneReport {
    pub versions: i64,
    /// Stored (compressed) bytes of the removed versions.
    pub bytes: i64,
}

/// A stack's wrapped secrets key, for re-wrapping under a new master key.
#[derive(Debug, Clone)]
pub struct WrappedKey {
    pub stack_id: i64,
    pub key: StackKey,
    pub wrapped: Vec<u8>,
}

/// The persistence contract. See the module comment.
pub trait Store: AccessStore + IntegrationStore + Send + Sync + 'static {
    // --- instance metadata (master-key canary, generated token hash, ...)
    fn meta_get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;
    fn meta_put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> StoreFuture<'a, ()>;

    // --- stacks
    /// `Conflict` when the name is taken.
    fn create_stack(&self, stack: NewStack) -> StoreFuture<'_, StackRow>;
    fn get_stack<'a>(&'a self, key: &'a StackKey) -> StoreFuture<'a, Option<StackRow>>;
    /// The stack that currently has this name, or else the one that had it before a rename.
    fn get_stack_or_former<'a>(&'a self, key: &'a StackKey) -> StoreFuture<'a, Option<StackRow>>;
    fn list_stacks(&self, query: StackQuery) -> StoreFuture<'_, Vec<StackRow>>;
    fn project_exists<'a>(&'a self, org: &'a str, project: &'a str) -> StoreFuture<'a, bool>;
    /// Deletes the stack with everything it owns, if `guard` allows. `Done(false)` when it
    /// did not exist.
    fn delete_stack(
        &self,
        stack_id: i64,
        guard: StackGuard,
        notes: Notes,
    ) -> StoreFuture<'_, Guarded<bool>>;
    fn set_stack_tags(&self, stack_id: i64, tags: Tags, notes: Notes) -> StoreFuture<'_, ()>;
    /// Renames a stack if `guard` allows; its former name keeps resolving through
    /// `get_stack_or_former`. `Conflict` when the new name is taken.
    fn rename_stack(
        &self,
        stack_id: i64,
        to: StackKey,
        guard: StackGuard,
        notes: Notes,
    ) -> StoreFuture<'_, Guarded<StackRow>>;
    fn get_stack_key(&self, stack_id: i64) -> StoreFuture<'_, Option<Vec<u8>>>;
    /// The id and wrapped secrets key of the stack that has, or had before a rename, this name
    /// (the secrets calls, one read each).
    fn get_secrets_key<'a>(&'a self, key: &'a StackKey) -> StoreFuture<'a, Option<(i64, Vec<u8>)>>;

    // --- updates
    fn create_update(&self, update: NewUpdate) -> StoreFuture<'_, ()>;
    fn get_update<'a>(&'a self, update_id: &'a str) -> StoreFuture<'a, Option<UpdateRow>>;
    /// Starts an update. Non-preview updates take the stack's lease and a new version number
    /// unless another live or expired-but-unreaped update holds the stack.
    fn start_update(&self, start: StartUpdate) -> StoreFuture<'_, StartOutcome>;
    /// Creates an update and starts it in one transaction (`begin-update`): when another
    /// update holds the stack, nothing is created.
    fn begin_update(&self, update: NewUpdate, start: StartUpdate) -> StoreFuture<'_, StartOutcome>;
    /// The coherence window an update runs in.
    fn update_window<'a>(&'a self, update_id: &'a str) -> StoreFuture<'a, Option<String>>;
    /// The updates of a stack in a coherence window, oldest first.
    fn window_members<'a>(
        &'a self,
        stack_id: i64,
        window: &'a str,
    ) -> StoreFuture<'a, Vec<WindowMember>>;
    /// The lease of the update `update_id` if it belongs to the stack now named `key`.
    fn lease_state<'a>(
        &'a self,
        key: &'a StackKey,
        update_id: &'a str,
    ) -> StoreFuture<'a, Option<LeaseState>>;
    fn renew_lease(&self, lease: LeaseCheck, expires: i64) -> StoreFuture<'_, ()>;
    /// Replaces the update's working checkpoint (and drops the deltas on top of the old one).
    fn save_checkpoint(&self, lease: LeaseCheck, write: CheckpointWrite) -> StoreFuture<'_, ()>;
    fn get_working_state<'a>(&'a self, update_id: &'a str)
    -> StoreFuture<'a, Option<WorkingState>>;
    /// Checks a lease without writing anything.
    fn check_lease(&self, lease: LeaseCheck) -> StoreFuture<'_, ()>;
    /// How far an update's stored state has come.
    fn progress<'a>(&'a self, update_id: &'a str) -> StoreFuture<'a, Progress>;
    /// Appends a journal batch under the lease at the ordinal it names; returns it.
    fn append_journal(&self, lease: LeaseCheck, batch: JournalBatch) -> StoreFuture<'_, i64>;
    /// The update's journal batches in the order they arrived.
    fn list_journal_batches<'a>(&'a self, update_id: &'a str)
    -> StoreFuture<'a, Vec<JournalBatch>>;
    /// Appends an applied delta on top of the working checkpoint, under the lease.
    fn append_delta(&self, lease: LeaseCheck, delta: DeltaWrite) -> StoreFuture<'_, ()>;
    /// The deltas applied since the working checkpoint, in order.
    fn list_deltas<'a>(&'a self, update_id: &'a str) -> StoreFuture<'a, Vec<DeltaWrite>>;
    /// Stores a batch of engine events. A batch whose first sequence is already stored is a
    /// retry and is ignored.
    fn append_events(&self, lease: LeaseCheck, batch: EventBatch) -> StoreFuture<'_, ()>;
    /// Up to `limit` stored event batches whose first sequence is above `after`, in
    /// sequence order.
    fn list_event_batches<'a>(
        &'a self,
        update_id: &'a str,
        after: Option<i64>,
        limit: i64,
    ) -> StoreFuture<'a, Vec<EventBatch>>;
    fn finish_update(&self, finish: FinishUpdate) -> StoreFuture<'_, FinishOutcome>;
    /// Stores a deployment as a new version (a `pulumi stack import`), unless an update holds
    /// the stack.
    fn import_state(
        &self,
        update: NewUpdate,
        state: StateBlob,
        keep_versions: i64,
        notes: Notes,
    ) -> StoreFuture<'_, ImportOutcome>;
    /// [`Store::import_state`] for an update that ran elsewhere (a DIY backend's history):
    /// the update keeps its own result and times. Every version is kept.
    fn adopt_state(
        &self,
        update: NewUpdate,
        record: AdoptedRecord,
        state: StateBlob,
    ) -> StoreFuture<'_, ImportOutcome>;
    /// The state of a version, or the current state when `version` is `None`.
    fn get_state(&self, stack_id: i64, version: Option<i64>) -> StoreFuture<'_, Option<StateBlob>>;
    /// Non-preview updates, newest first.
    fn list_updates(
        &self,
        stack_id: i64,
        offset: i64,
        limit: i64,
    ) -> StoreFuture<'_, Vec<UpdateRow>>;
    /// The non-preview update that produced `version`.
    fn get_update_by_version(
        &self,
        stack_id: i64,
        version: i64,
    ) -> StoreFuture<'_, Option<UpdateRow>>;
    // --- access tokens
    fn create_token(&self, token: NewToken) -> StoreFuture<'_, ()>;
    fn find_token(&self, hash: Vec<u8>) -> StoreFuture<'_, Option<TokenRow>>;
    fn touch_token<'a>(&'a self, id: &'a str, now: i64) -> StoreFuture<'a, ()>;
    fn list_tokens(&self, user: Option<String>) -> StoreFuture<'_, Vec<TokenRow>>;
    /// Revokes the selected tokens that are not revoked yet; returns their ids.
    fn revoke_tokens(
        &self,
        which: TokenSelector,
        now: i64,
        notes: Notes,
    ) -> StoreFuture<'_, Vec<String>>;

    // --- maintenance
    fn list_versions(&self, stack_id: i64) -> StoreFuture<'_, Vec<VersionInfo>>;
    /// Deletes all but the newest `keep` versions (never the current one); with `dry_run`
    /// only reports what would go.
    fn prune_stack_versions(
        &self,
        stack_id: i64,
        keep: i64,
        dry_run: bool,
    ) -> StoreFuture<'_, PruneReport>;
    /// Replaces the stored state of an existing version (journal replay repairs).
    fn replace_version_state(
        &self,
        stack_id: i64,
        version: i64,
        state: StateBlob,
    ) -> StoreFuture<'_, ()>;
    fn list_wrapped_keys(&self) -> StoreFuture<'_, Vec<WrappedKey>>;
    /// Replaces every stack's wrapped key and the master-key canary in one transaction.
    fn replace_wrapped_keys(
        &self,
        keys: Vec<(i64, Vec<u8>)>,
        canary: Vec<u8>,
    ) -> StoreFuture<'_, ()>;
    /// Problems the backend's own consistency checks find (empty when none).
    fn integrity_problems(&self) -> StoreFuture<'_, Vec<String>>;
    fn vacuum(&self) -> StoreFuture<'_, ()>;
    /// Streams every row as backup records, in an order `load` can replay.
    fn dump(&self, sink: backup::Sink) -> StoreFuture<'_, backup::DumpReport>;
    /// Loads backup records into this store in one transaction.
    fn load(
        &self,
        records: backup::Source,
        merge: backup::Merge,
    ) -> StoreFuture<'_, backup::LoadReport>;

    /// The running non-preview update of a stack, if any (its lease may have expired).
    fn running_update(&self, stack_id: i64) -> StoreFuture<'_, Option<UpdateRow>>;

    /// Running updates (not previews) across every stack, and how many of their leases are
    /// still live at `now`.
    fn running_updates(&self, now: i64) -> StoreFuture<'_, RunningUpdates>;

    /// An empty write transaction: the database is open, writable, and its writer answers.
    fn probe(&self) -> StoreFuture<'_, ()>;
}

/// A span for a store transaction under the request that runs it; none for background work
/// (pollers would otherwise start a trace of their own every few seconds).
pub(crate) fn tx_span(parent: &tracing::Span, name: &'static str) -> tracing::Span {
    if parent.is_none() {
        return tracing::Span::none();
    }
    match name {
        "store.write" => tracing::debug_span!(parent: parent, "store.write"),
        _ => tracing::debug_span!(parent: parent, "store.read"),
    }
}
