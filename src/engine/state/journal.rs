//! Journal replay: turns a base deployment plus the CLI's journal entries into the deployment
//! they describe, with the same result as the CLI's own replayer (`JournalReplayer` in
//! upstream `pkg/backend/journal.go`).
//!
//! The same [`Replayer`] serves three callers: the server applies each batch as it arrives
//! (live materialisation, so `complete` and reads never replay anything), crash recovery
//! replays the stored batches once, and `pbackend replay-journal` replays them offline.
//!
//! Resources stay the JSON text the CLI sent. Only the fields replay must read are parsed
//! ([`ResourceHead`]); a resource is re-encoded only when replay changes one of its fields, and
//! then only that field (see [`RawObject`]).

use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::engine::crypto::sha256_hex;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::state::rawjson::RawObject;

pub const KIND_BEGIN: i64 = 0;
pub const KIND_SUCCESS: i64 = 1;
pub const KIND_FAILURE: i64 = 2;
pub const KIND_REFRESH_SUCCESS: i64 = 3;
pub const KIND_OUTPUTS: i64 = 4;
pub const KIND_WRITE: i64 = 5;
pub const KIND_SECRETS_MANAGER: i64 = 6;
pub const KIND_REBUILT_BASE_STATE: i64 = 7;
pub const KIND_EXTENSION_PARAMETERIZE: i64 = 8;
pub const KIND_SNIPPETS: i64 = 9;
/// Journal v2 only: the program's state migrations rewrote the base (CLI v3.277+).
pub const KIND_STATE_MIGRATION: i64 = 10;

/// The newest journal protocol this replayer implements (`journalVersion` at start).
pub const LATEST_JOURNAL_VERSION: i64 = 2;

/// Entries of kind 7 that actually fold new work into the base, per update. The CLI sends
/// one per refresh phase (an update has at most one); each costs a pass over the state, so
/// a client may not make replay quadratic by sending many.
pub const MAX_BASE_REBUILDS: u32 = 16;

const ROOT_STACK_TYPE: &str = "pulumi:pulumi:Stack";

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::Invalid(msg.into())
}

fn entry_version_default() -> i64 {
    1
}

/// One element of a state migration's `layout`: a retained base resource (by its index
/// before the migration) or one of the entry's inserted `states`.
#[derive(Deserialize, serde::Serialize, Debug, Clone)]
pub struct LayoutItem {
    #[serde(rename = "baseIndex", default, skip_serializing_if = "Option::is_none")]
    pub base_index: Option<i64>,
    #[serde(
        rename = "stateIndex",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub state_index: Option<i64>,
}

#[derive(Deserialize, serde::Serialize, Debug, Clone)]
pub struct BaseStatePatch {
    pub index: i64,
    pub state: Box<RawValue>,
}

#[derive(Deserialize, serde::Serialize, Debug, Clone)]
pub struct NewStatePatch {
    #[serde(rename = "operationID")]
    pub operation_id: i64,
    pub state: Box<RawValue>,
}

/// One journal entry as the CLI sends it (`apitype.JournalEntry`).
#[derive(Deserialize, Debug, Clone)]
pub struct Entry {
    /// Entry format: 1 for kinds 0–9, 2 for kind 10 (CLIs before journal v2 send 1).
    #[serde(default = "entry_version_default")]
    pub version: i64,
    pub kind: i64,
    #[serde(rename = "sequenceID")]
    pub sequence_id: i64,
    #[serde(rename = "operationID", default)]
    pub operation_id: i64,
    #[serde(rename = "removeOld", default)]
    pub remove_old: Option<i64>,
    #[serde(rename = "removeNew", default)]
    pub remove_new: Option<i64>,
    #[serde(rename = "pendingReplacementOld", default)]
    pub pending_replacement_old: Option<i64>,
    #[serde(rename = "pendingReplacementNew", default)]
    pub pending_replacement_new: Option<i64>,
    #[serde(rename = "deleteOld", default)]
    pub delete_old: Option<i64>,
    #[serde(rename = "deleteNew", default)]
    pub delete_new: Option<i64>,
    #[serde(default)]
    pub state: Option<Box<RawValue>>,
    #[serde(default)]
    pub operation: Option<Box<RawValue>>,
    #[serde(rename = "isRefresh", default)]
    pub is_refresh: bool,
    #[serde(rename = "secretsProvider", default)]
    pub secrets_provider: Option<Box<RawValue>>,
    #[serde(default)]
    pub snippets: Option<Box<RawValue>>,
    #[serde(rename = "newSnapshot", default)]
    pub new_snapshot: Option<Box<RawValue>>,
    #[serde(rename = "extensionRef", default)]
    pub extension_ref: Option<String>,
    #[serde(default)]
    pub extension: Option<Box<RawValue>>,
    #[serde(rename = "requiresByteString", default)]
    pub requires_byte_string: bool,
    #[serde(default)]
    pub layout: Option<Vec<LayoutItem>>,
    #[serde(default)]
    pub states: Option<Vec<Box<RawValue>>>,
    #[serde(rename = "baseStatePatches", default)]
    pub base_state_patches: Option<Vec<BaseStatePatch>>,
    #[serde(rename = "newStatePatches", default)]
    pub new_state_patches: Option<Vec<NewStatePatch>>,
}

#[derive(Deserialize)]
struct EntriesBody {
    #[serde(default)]
    entries: Option<Vec<Entry>>,
}

/// Parses a `PATCH …/journalentries` body.
pub fn parse_entries(json: &[u8]) -> EngineResult<Vec<Entry>> {
    let body: EntriesBody = serde_json::from_slice(json)
        .map_err(|e| invalid(format!("the journal entries are not valid: {e}")))?;
    Ok(body.entries.unwrap_or_default())
}

/// Encodes entries back into a `{"entries":[…]}` body (for storing part of a batch).
pub fn encode_entries(entries: &[&Entry]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Out<'a> {
        version: i64,
        kind: i64,
        #[serde(rename = "sequenceID")]
        sequence_id: i64,
        #[serde(rename = "operationID")]
        operation_id: i64,
        #[serde(rename = "removeOld")]
        remove_old: Option<i64>,
        #[serde(rename = "removeNew")]
        remove_new: Option<i64>,
        #[serde(
            rename = "pendingReplacementOld",
            skip_serializing_if = "Option::is_none"
        )]
        pending_replacement_old: Option<i64>,
        #[serde(
            rename = "pendingReplacementNew",
            skip_serializing_if = "Option::is_none"
        )]
        pending_replacement_new: Option<i64>,
        #[serde(rename = "deleteOld", skip_serializing_if = "Option::is_none")]
        delete_old: Option<i64>,
        #[serde(rename = "deleteNew", skip_serializing_if = "Option::is_none")]
        delete_new: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        state: Option<&'a RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        operation: Option<&'a RawValue>,
        #[serde(rename = "isRefresh", skip_serializing_if = "std::ops::Not::not")]
        is_refresh: bool,
        #[serde(rename = "secretsProvider", skip_serializing_if = "Option::is_none")]
        secrets_provider: Option<&'a RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        snippets: Option<&'a RawValue>,
        #[serde(rename = "newSnapshot", skip_serializing_if = "Option::is_none")]
        new_snapshot: Option<&'a RawValue>,
        #[serde(rename = "extensionRef", skip_serializing_if = "Option::is_none")]
        extension_ref: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        extension: Option<&'a RawValue>,
        #[serde(
            rename = "requiresByteString",
            skip_serializing_if = "std::ops::Not::not"
        )]
        requires_byte_string: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        layout: Option<&'a Vec<LayoutItem>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        states: Option<&'a Vec<Box<RawValue>>>,
        #[serde(rename = "baseStatePatches", skip_serializing_if = "Option::is_none")]
        base_state_patches: Option<&'a Vec<BaseStatePatch>>,
        #[serde(rename = "newStatePatches", skip_serializing_if = "Option::is_none")]
        new_state_patches: Option<&'a Vec<NewStatePatch>>,
    }
    #[derive(serde::Serialize)]
    struct Body<'a> {
        entries: Vec<Out<'a>>,
    }
    let body = Body {
        entries: entries
            .iter()
            .map(|e| Out {
                version: e.version,
                kind: e.kind,
                sequence_id: e.sequence_id,
                operation_id: e.operation_id,
                remove_old: e.remove_old,
                remove_new: e.remove_new,
                pending_replacement_old: e.pending_replacement_old,
                pending_replacement_new: e.pending_replacement_new,
                delete_old: e.delete_old,
                delete_new: e.delete_new,
                state: e.state.as_deref(),
                operation: e.operation.as_deref(),
                is_refresh: e.is_refresh,
                secrets_provider: e.secrets_provider.as_deref(),
                snippets: e.snippets.as_deref(),
                new_snapshot: e.new_snapshot.as_deref(),
                extension_ref: e.extension_ref.as_deref(),
                extension: e.extension.as_deref(),
                requires_byte_string: e.requires_byte_string,
                layout: e.layout.as_ref(),
                states: e.states.as_ref(),
                base_state_patches: e.base_state_patches.as_ref(),
                new_state_patches: e.new_state_patches.as_ref(),
            })
            .collect(),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The fields of a resource that refresh and alias handling read.
#[derive(Deserialize, Debug, Clone, Default)]
pub struct ResourceHead {
    #[serde(default)]
    pub urn: String,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub dependencies: Option<Vec<String>>,
    #[serde(rename = "propertyDependencies", default)]
    pub property_dependencies: Option<BTreeMap<String, Option<Vec<String>>>>,
    #[serde(rename = "deletedWith", default)]
    pub deleted_with: Option<String>,
    #[serde(rename = "replaceWith", default)]
    pub replace_with: Option<Vec<String>>,
    #[serde(rename = "viewOf", default)]
    pub view_of: Option<String>,
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
}

/// What must be known about every resource without keeping its fields: the features it
/// needs and whether it carries aliases.
#[derive(Deserialize)]
struct FlagsHead {
    #[serde(default)]
    aliases: Option<Vec<IgnoredAny>>,
    #[serde(rename = "refreshBeforeUpdate", default)]
    refresh_before_update: Option<bool>,
    #[serde(rename = "viewOf", default)]
    view_of: Option<String>,
    #[serde(rename = "resourceHooks", default)]
    resource_hooks: Option<HashMap<String, IgnoredAny>>,
    #[serde(default)]
    taint: Option<bool>,
    #[serde(rename = "replaceWith", default)]
    replace_with: Option<Vec<IgnoredAny>>,
    #[serde(rename = "extensionRef", default)]
    extension_ref: Option<String>,
    #[serde(rename = "snippetID", default)]
    snippet_id: Option<String>,
}

/// Whether `text` could carry a field that sets a flag: one of [`FlagsHead`]'s keys appears
/// somewhere, or a `\u` escape could spell one. Most resources have none, and these
/// vectorised substring searches cost a fraction of parsing the resource for it.
fn may_set_flags(text: &[u8]) -> bool {
    use memchr::memmem::Finder;
    static KEYS: std::sync::LazyLock<Vec<Finder<'static>>> = std::sync::LazyLock::new(|| {
        flags_head_keys()
            .iter()
            .map(|k| format!("\"{k}\""))
            .chain(["\\u".to_owned()])
            .map(|k| Finder::new(k.as_bytes()).into_owned())
            .collect()
    });
    KEYS.iter().any(|k| k.find(text).is_some())
}

/// The keys [`FlagsHead`] reads, as serde names them: asked of its derived `Deserialize`, so
/// a field added there is searched for without being spelled a second time.
fn flags_head_keys() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    use std::cell::Cell;
    struct Fields<'c>(&'c Cell<&'static [&'static str]>);
    impl<'de> de::Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom(
                "only a struct's field names are asked for",
            ))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.set(fields);
            Err(de::Error::custom("field names taken"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let fields = Cell::new(&[][..]);
    let _ = FlagsHead::deserialize(Fields(&fields));
    fields.get()
}

const F_REFRESH_BEFORE_UPDATE: u8 = 1;
const F_VIEWS: u8 = 1 << 1;
const F_HOOKS: u8 = 1 << 2;
const F_TAINT: u8 = 1 << 3;
const F_REPLACE_WITH: u8 = 1 << 4;
const F_EXTENSION: u8 = 1 << 5;
const F_SNIPPET: u8 = 1 << 6;
const F_ALIASES: u8 = 1 << 7;

/// A resource: its exact JSON text and a byte of flags. Replay keeps thousands of these, so
/// the fields it reads rarely ([`ResourceHead`]) are parsed only when needed (after a
/// refresh, or when aliases are present).
///
/// The text is shared, never copied after it arrives: a base resource is a slice of the
/// base's stored text, a resource from an entry owns that entry's buffer, and an unchanged
/// resource (a same step) points at the base's text again. A large stack in replay then
/// costs about one copy of its state, and generating a deployment from the replayer (which
/// a read of the live state leaves in use) copies pointers.
#[derive(Debug, Clone)]
pub struct Res {
    /// Valid JSON, UTF-8: checked when parsed, re-encoded by [`RawObject`] when edited.
    raw: Bytes,
    flags: u8,
}

impl Res {
    /// A resource from a borrowed text (copied).
    pub fn parse(raw: &RawValue) -> EngineResult<Res> {
        Res::from_text(Bytes::copy_from_slice(raw.get().as_bytes()))
    }

    /// A resource taking over an entry's buffer.
    pub fn parse_owned(raw: Box<RawValue>) -> EngineResult<Res> {
        let text: Box<str> = raw.into();
        Res::from_text(Bytes::from(text.into_boxed_bytes()))
    }

    /// A resource that is `raw`, a slice of `buf`.
    fn parse_in(buf: &Bytes, raw: &RawValue) -> EngineResult<Res> {
        Res::from_text(buf.slice_ref(raw.get().as_bytes()))
    }

    /// An entry's state that replaces `old`: when the text is unchanged (a same step, or
    /// outputs that did not move), the old text is kept and the new buffer dropped.
    fn replacing(raw: Box<RawValue>, old: Option<&Res>) -> EngineResult<Res> {
        match old {
            Some(o) if o.raw[..] == *raw.get().as_bytes() => Ok(o.clone()),
            _ => Res::parse_owned(raw),
        }
    }

    fn from_text(raw: Bytes) -> EngineResult<Res> {
        // Every caller hands over a JSON value already parsed (a `RawValue`, or one
        // re-encoded): what is left to check is that it is an object.
        if !may_set_flags(&raw) {
            if raw.first() != Some(&b'{') {
                return Err(invalid("a resource is not valid: not a JSON object"));
            }
            return Ok(Res { raw, flags: 0 });
        }
        let h: FlagsHead = serde_json::from_slice(&raw)
            .map_err(|e| invalid(format!("a resource is not valid: {e}")))?;
        let non_empty = |s: &Option<String>| s.as_deref().is_some_and(|v| !v.is_empty());
        let mut flags = 0;
        let mut set = |on: bool, f: u8| {
            if on {
                flags |= f;
            }
        };
        set(
            h.refresh_before_update == Some(true),
            F_REFRESH_BEFORE_UPDATE,
        );
        set(non_empty(&h.view_of), F_VIEWS);
        set(
            h.resource_hooks.as_ref().is_some_and(|m| !m.is_empty()),
            F_HOOKS,
        );
        set(h.taint == Some(true), F_TAINT);
        set(
            h.replace_with.as_ref().is_some_and(|r| !r.is_empty()),
            F_REPLACE_WITH,
        );
        set(non_empty(&h.extension_ref), F_EXTENSION);
        set(non_empty(&h.snippet_id), F_SNIPPET);
        set(h.aliases.as_ref().is_some_and(|a| !a.is_empty()), F_ALIASES);
        Ok(Res { raw, flags })
    }

    /// The resource's JSON text.
    pub fn text(&self) -> &[u8] {
        &self.raw
    }

    fn as_str(&self) -> EngineResult<&str> {
        std::str::from_utf8(&self.raw).map_err(|e| invalid(format!("a resource is not UTF-8: {e}")))
    }

    /// An object to edit: the resource's fields, parsed one level deep.
    fn object(&self) -> EngineResult<RawObject> {
        RawObject::parse(self.as_str()?)
            .map_err(|e| invalid(format!("a resource is not an object: {e}")))
    }

    fn edited(obj: RawObject) -> EngineResult<Res> {
        Res::parse_owned(obj.to_raw())
    }

    /// The fields replay reads, parsed from the text.
    pub fn head(&self) -> EngineResult<ResourceHead> {
        serde_json::from_slice(&self.raw)
            .map_err(|e| invalid(format!("a resource is not valid: {e}")))
    }

    fn has_aliases(&self) -> bool {
        self.flags & F_ALIASES != 0
    }

    /// Sets a boolean field of the resource (re-encoding only that field).
    fn set_flag(&mut self, key: &str) -> EngineResult<()> {
        let mut obj = self.object()?;
        obj.set(key, &true);
        *self = Res::edited(obj)?;
        Ok(())
    }

    fn features(&self, features: &mut Features) {
        for (f, name) in [
            (F_REFRESH_BEFORE_UPDATE, "refreshBeforeUpdate"),
            (F_VIEWS, "views"),
            (F_HOOKS, "hooks"),
            (F_TAINT, "taint"),
            (F_REPLACE_WITH, "replaceWith"),
            (F_EXTENSION, "extensionParameterization"),
            (F_SNIPPET, "snippets-prototype"),
        ] {
            if self.flags & f != 0 {
                features.insert(name);
            }
        }
    }
}

/// A pending operation (`OperationV2`): its text, its type and its resource's head.
#[derive(Debug, Clone)]
pub struct PendingOp {
    pub raw: Box<RawValue>,
    pub kind: String,
    pub resource: Res,
}

#[derive(Deserialize)]
struct OpHead {
    resource: Box<RawValue>,
    #[serde(rename = "type", default)]
    kind: String,
}

impl PendingOp {
    pub fn parse(raw: Box<RawValue>) -> EngineResult<PendingOp> {
        let head: OpHead = serde_json::from_str(raw.get())
            .map_err(|e| invalid(format!("a pending operation is not valid: {e}")))?;
        Ok(PendingOp {
            kind: head.kind,
            resource: Res::parse_owned(head.resource)?,
            raw,
        })
    }
}

type Features = std::collections::BTreeSet<&'static str>;

/// A deployment (`DeploymentV3`) held for replay.
#[derive(Debug, Clone, Default)]
pub struct Base {
    pub secrets_providers: Option<Box<RawValue>>,
    pub resources: Vec<Res>,
    pub pending_operations: Vec<PendingOp>,
    pub metadata: Option<Box<RawValue>>,
    pub snippets: Option<Box<RawValue>>,
    pub extensions: BTreeMap<String, Box<RawValue>>,
}

// Borrowed from the text being read: a large base is parsed without a transient second copy
// of every resource (or, for `UntypedIn`, of the whole deployment).
#[derive(Deserialize)]
struct DeploymentIn<'a> {
    #[serde(default)]
    secrets_providers: Option<Box<RawValue>>,
    #[serde(borrow, default)]
    resources: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    pending_operations: Option<Vec<Box<RawValue>>>,
    #[serde(default)]
    metadata: Option<Box<RawValue>>,
    #[serde(default)]
    snippets: Option<Box<RawValue>>,
    #[serde(default)]
    extensions: Option<BTreeMap<String, Box<RawValue>>>,
}

#[derive(Deserialize)]
struct UntypedIn<'a> {
    #[serde(borrow, default)]
    deployment: Option<&'a RawValue>,
}

impl Base {
    /// Parses a `DeploymentV3` object that is `text`, a part of `buf`: its resources stay
    /// slices of `buf`.
    fn from_deployment_in(buf: &Bytes, text: &[u8]) -> EngineResult<Base> {
        let d: DeploymentIn = serde_json::from_slice(text)
            .map_err(|e| invalid(format!("the deployment is not valid: {e}")))?;
        Ok(Base {
            secrets_providers: d.secrets_providers.filter(|r| r.get() != "null"),
            resources: d
                .resources
                .unwrap_or_default()
                .into_iter()
                .map(|r| Res::parse_in(buf, r))
                .collect::<EngineResult<_>>()?,
            pending_operations: d
                .pending_operations
                .unwrap_or_default()
                .into_iter()
                .map(PendingOp::parse)
                .collect::<EngineResult<_>>()?,
            metadata: d.metadata.filter(|r| r.get() != "null"),
            snippets: d.snippets.filter(|r| r.get() != "null"),
            extensions: d.extensions.unwrap_or_default(),
        })
    }

    #[cfg(test)]
    fn from_deployment(text: &str) -> EngineResult<Base> {
        let raw = RawValue::from_string(text.to_owned())
            .map_err(|e| invalid(format!("the deployment is not valid: {e}")))?;
        Base::from_deployment_owned(raw)
    }

    /// Parses a `DeploymentV3` object, taking over its buffer.
    pub fn from_deployment_owned(raw: Box<RawValue>) -> EngineResult<Base> {
        let text: Box<str> = raw.into();
        let buf = Bytes::from(text.into_boxed_bytes());
        Base::from_deployment_in(&buf, &buf)
    }

    /// Parses an `UntypedDeployment` (what export returns); an absent deployment is empty.
    /// The resources stay slices of `json`.
    pub fn from_untyped(json: impl Into<Bytes>) -> EngineResult<Base> {
        let buf: Bytes = json.into();
        let u: UntypedIn = serde_json::from_slice(&buf)
            .map_err(|e| invalid(format!("the deployment is not valid: {e}")))?;
        match u.deployment {
            Some(d) if d.get() != "null" => Base::from_deployment_in(&buf, d.get().as_bytes()),
            _ => Ok(Base::default()),
        }
    }

    fn snippets_non_empty(&self) -> bool {
        self.snippets
            .as_ref()
            .is_some_and(|s| s.get().trim_start().starts_with('[') && s.get().trim() != "[]")
    }
}

#[derive(Deserialize)]
struct SecretsProviderHead<'a> {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(borrow, default)]
    state: Option<&'a RawValue>,
}

fn same_secrets_provider(a: &RawValue, b: &RawValue) -> bool {
    let (Ok(a), Ok(b)) = (
        serde_json::from_str::<SecretsProviderHead<'_>>(a.get()),
        serde_json::from_str::<SecretsProviderHead<'_>>(b.get()),
    ) else {
        return false;
    };
    a.kind == b.kind && a.state.map(|s| s.get()) == b.state.map(|s| s.get())
}

/// The replay state of one update.
#[derive(Debug, Clone, Default)]
pub struct Replayer {
    base: Base,
    new_resources: Vec<Res>,
    op_index: HashMap<i64, usize>,
    to_remove: HashSet<i64>,
    to_delete_in_base: HashSet<i64>,
    to_replace_in_base: HashMap<i64, Res>,
    mark_delete: HashSet<i64>,
    mark_pending_replacement: HashSet<i64>,
    incomplete: BTreeMap<i64, Option<PendingOp>>,
    has_refresh: bool,
    requires_byte_string: bool,
    extensions: BTreeMap<String, Box<RawValue>>,
    seen: HashSet<i64>,
    applied: u64,
    /// The journal version negotiated for the update (0 is taken as 1).
    journal_version: i64,
    /// Entries other than kind 7 applied since the base was last rebuilt.
    dirty: bool,
    /// Kind-7 entries that folded work into the base.
    rebuilds: u32,
    /// A kind-7 entry came after new resources: the CLI sends nothing after it.
    sealed: bool,
}

/// The deployment replay produced, ready to serialise.
pub struct Generated {
    pub version: i64,
    pub features: Vec<&'static str>,
    pub base: Base,
}

impl Generated {
    pub fn resource_count(&self) -> i64 {
        self.base.resources.len() as i64
    }

    /// Writes the `UntypedDeployment` JSON with a manifest naming `engine_version`.
    pub fn write_untyped(
        &self,
        out: &mut (impl Write + ?Sized),
        engine_version: &str,
        time: &str,
    ) -> std::io::Result<()> {
        out.write_all(b"{\"version\":")?;
        out.write_all(self.version.to_string().as_bytes())?;
        if !self.features.is_empty() {
            out.write_all(b",\"features\":")?;
            out.write_all(&serde_json::to_vec(&self.features).unwrap_or_default())?;
        }
        out.write_all(b",\"deployment\":{\"manifest\":")?;
        let manifest = serde_json::json!({
            "time": time,
            "magic": if engine_version.is_empty() { String::new() } else { sha256_hex(engine_version.as_bytes()) },
            "version": engine_version,
        });
        out.write_all(&serde_json::to_vec(&manifest).unwrap_or_default())?;
        let b = &self.base;
        if let Some(sp) = &b.secrets_providers {
            out.write_all(b",\"secrets_providers\":")?;
            out.write_all(sp.get().as_bytes())?;
        }
        if !b.resources.is_empty() {
            out.write_all(b",\"resources\":[")?;
            for (i, r) in b.resources.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                out.write_all(r.text())?;
            }
            out.write_all(b"]")?;
        }
        if !b.pending_operations.is_empty() {
            out.write_all(b",\"pending_operations\":[")?;
            for (i, op) in b.pending_operations.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                out.write_all(op.raw.get().as_bytes())?;
            }
            out.write_all(b"]")?;
        }
        out.write_all(b",\"metadata\":")?;
        out.write_all(
            b.metadata
                .as_ref()
                .map(|m| m.get())
                .unwrap_or("{}")
                .as_bytes(),
        )?;
        if b.snippets_non_empty()
            && let Some(s) = &b.snippets
        {
            out.write_all(b",\"snippets\":")?;
            out.write_all(s.get().as_bytes())?;
        }
        if !b.extensions.is_empty() {
            out.write_all(b",\"extensions\":{")?;
            for (i, (k, v)) in b.extensions.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                out.write_all(&serde_json::to_vec(k).unwrap_or_default())?;
                out.write_all(b":")?;
                out.write_all(v.get().as_bytes())?;
            }
            out.write_all(b"}")?;
        }
        out.write_all(b"}}")
    }

    pub fn to_untyped(&self, engine_version: &str, time: &str) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = self.write_untyped(&mut out, engine_version, time);
        out
    }
}

impl Replayer {
    pub fn new(base: Base) -> Self {
        Self::with_version(base, 1)
    }

    /// A replayer for an update that negotiated `journal_version` (2 allows kind 10).
    pub fn with_version(base: Base, journal_version: i64) -> Self {
        Replayer {
            base,
            journal_version,
            ..Default::default()
        }
    }

    /// Number of entries applied (repeats excluded).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Whether an entry with this sequence ID was already applied (a retried batch).
    pub fn has_seen(&self, sequence_id: i64) -> bool {
        self.seen.contains(&sequence_id)
    }

    fn base_resource(&self, index: i64) -> Option<&Res> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.base.resources.get(i))
    }

    fn new_index(&self, op: i64, what: &str) -> EngineResult<usize> {
        self.op_index.get(&op).copied().ok_or_else(|| {
            invalid(format!(
                "journal entry refers to operation {op} ({what}) that produced no resource"
            ))
        })
    }

    /// Applies one entry. Entries already seen are ignored. On error the replayer may be
    /// partly changed: callers discard it and rebuild from what is stored.
    pub fn add(&mut self, entry: Entry) -> EngineResult<()> {
        if self.seen.contains(&entry.sequence_id) {
            return Ok(());
        }
        let max = self.journal_version.clamp(1, LATEST_JOURNAL_VERSION);
        if entry.version <= 0 || entry.version > max {
            return Err(invalid(format!(
                "unsupported journal entry version {} (this update uses journal version {max})",
                entry.version
            )));
        }
        if entry.kind == KIND_STATE_MIGRATION && entry.version != 2 {
            return Err(invalid(format!(
                "state migration journal entry must use version 2, got {}",
                entry.version
            )));
        }
        if self.sealed && entry.kind != KIND_REBUILT_BASE_STATE {
            return Err(invalid(
                "no journal entry may follow a rebuilt-base-state entry sent after new resources",
            ));
        }
        self.seen.insert(entry.sequence_id);
        self.applied += 1;
        if entry.kind != KIND_REBUILT_BASE_STATE {
            self.dirty = true;
        }
        if entry.requires_byte_string {
            self.requires_byte_string = true;
        }
        match entry.kind {
            KIND_BEGIN => {
                let op = entry.operation.map(PendingOp::parse).transpose()?;
                self.incomplete.insert(entry.operation_id, op);
            }
            KIND_SUCCESS => {
                self.incomplete.remove(&entry.operation_id);
                if let Some(state) = entry.state {
                    let old = entry.remove_old.and_then(|i| self.base_resource(i));
                    self.new_resources.push(Res::replacing(state, old)?);
                    self.op_index
                        .insert(entry.operation_id, self.new_resources.len() - 1);
                }
                if let Some(i) = entry.remove_old {
                    self.to_delete_in_base.insert(i);
                }
                if let Some(op) = entry.remove_new {
                    self.to_remove.insert(op);
                }
                if let Some(i) = entry.delete_old {
                    self.mark_delete.insert(i);
                }
                if let Some(op) = entry.delete_new {
                    let i = self.new_index(op, "deleteNew")?;
                    self.new_resources[i].set_flag("delete")?;
                }
                if let Some(i) = entry.pending_replacement_old {
                    self.mark_pending_replacement.insert(i);
                }
                if let Some(op) = entry.pending_replacement_new {
                    let i = self.new_index(op, "pendingReplacementNew")?;
                    self.new_resources[i].set_flag("pendingReplacement")?;
                }
                if entry.is_refresh {
                    self.has_refresh = true;
                }
            }
            KIND_FAILURE => {
                self.incomplete.remove(&entry.operation_id);
            }
            KIND_REFRESH_SUCCESS => {
                self.incomplete.remove(&entry.operation_id);
                self.has_refresh = true;
                let state = entry.state.map(Res::parse_owned).transpose()?;
                if let Some(i) = entry.remove_old {
                    match &state {
                        None => {
                            self.to_delete_in_base.insert(i);
                        }
                        Some(s) => {
                            self.to_replace_in_base.insert(i, s.clone());
                        }
                    }
                }
                if let Some(op) = entry.remove_new {
                    match state {
                        None => {
                            self.to_remove.insert(op);
                        }
                        Some(s) => {
                            let i = self.new_index(op, "removeNew")?;
                            self.new_resources[i] = s;
                        }
                    }
                }
            }
            KIND_OUTPUTS => {
                if let Some(state) = entry.state {
                    let old = entry.remove_old.and_then(|i| self.base_resource(i));
                    let state = Res::replacing(state, old)?;
                    if let Some(i) = entry.remove_old {
                        self.to_replace_in_base.insert(i, state.clone());
                    }
                    if let Some(op) = entry.remove_new {
                        let i = self.new_index(op, "removeNew")?;
                        self.new_resources[i] = state;
                    }
                }
            }
            KIND_WRITE => {
                let snap = entry
                    .new_snapshot
                    .ok_or_else(|| invalid("a write entry has no newSnapshot"))?;
                self.base = Base::from_deployment_owned(snap)?;
            }
            KIND_SECRETS_MANAGER => {
                let sp = entry
                    .secrets_provider
                    .ok_or_else(|| invalid("a secrets-manager entry has no secretsProvider"))?;
                let same = self
                    .base
                    .secrets_providers
                    .as_ref()
                    .is_some_and(|cur| same_secrets_provider(cur, &sp));
                if !same {
                    self.base.secrets_providers = Some(sp);
                }
            }
            KIND_SNIPPETS => {
                self.base.snippets = entry.snippets.filter(|s| s.get() != "null");
            }
            KIND_REBUILT_BASE_STATE => {
                // Fold everything so far into a new base. Upstream keeps its refresh and
                // byte-string flags across this reset; so do we. A fold with nothing new to
                // fold changes nothing, so only folds of new work count against the cap.
                if !self.dirty {
                    return Ok(());
                }
                if self.rebuilds >= MAX_BASE_REBUILDS {
                    return Err(invalid(format!(
                        "more than {MAX_BASE_REBUILDS} rebuilt-base-state entries in one update"
                    )));
                }
                let sealed = !self.new_resources.is_empty();
                let mut this = std::mem::take(self);
                let (seen, applied, has_refresh, requires_byte_string, journal_version, rebuilds) = (
                    std::mem::take(&mut this.seen),
                    this.applied,
                    this.has_refresh,
                    this.requires_byte_string,
                    this.journal_version,
                    this.rebuilds + 1,
                );
                let generated = this.into_generated()?;
                *self = Replayer {
                    base: generated.base,
                    seen,
                    applied,
                    has_refresh,
                    requires_byte_string,
                    journal_version,
                    rebuilds,
                    sealed,
                    ..Default::default()
                };
            }
            KIND_STATE_MIGRATION => self.apply_state_migration(entry)?,
            KIND_EXTENSION_PARAMETERIZE => {
                let (Some(r), Some(ext)) = (entry.extension_ref, entry.extension) else {
                    return Err(invalid(
                        "an extension-parameterize entry needs extensionRef and extension",
                    ));
                };
                self.extensions.insert(r, ext);
            }
            other => {
                return Err(invalid(format!("unknown journal entry kind {other}")));
            }
        }
        Ok(())
    }

    /// Applies a state migration (kind 10): the base is rebuilt in the order `layout` gives,
    /// from retained base resources (patched or not) and inserted states; earlier results of
    /// this update may be rewritten in place; bookkeeping keyed by base index follows each
    /// retained resource to its new position. Everything is checked before anything changes.
    fn apply_state_migration(&mut self, e: Entry) -> EngineResult<()> {
        if !self.base.pending_operations.is_empty() {
            return Err(invalid(
                "state migration journal entry cannot be applied with pending base operations",
            ));
        }
        if self.incomplete.values().any(Option::is_some) {
            return Err(invalid(
                "state migration journal entry cannot be applied while operations are in flight",
            ));
        }
        let states = e.states.unwrap_or_default();
        if states.is_empty() {
            return Err(invalid(
                "state migration journal entry inserts no resources",
            ));
        }
        let layout = e.layout.unwrap_or_default();
        let base_len = self.base.resources.len();
        // new_pos[old base index] = position in the new base, for retained resources.
        let mut new_pos: Vec<Option<usize>> = vec![None; base_len];
        let mut placed = vec![false; states.len()];
        for (pos, item) in layout.iter().enumerate() {
            match (item.base_index, item.state_index) {
                (Some(b), None) => {
                    let slot = usize::try_from(b)
                        .ok()
                        .and_then(|b| new_pos.get_mut(b))
                        .ok_or_else(|| {
                            invalid(format!(
                                "state migration layout: base index {b} is out of range"
                            ))
                        })?;
                    if slot.is_some() {
                        return Err(invalid(format!(
                            "state migration layout: base index {b} appears twice"
                        )));
                    }
                    *slot = Some(pos);
                }
                (None, Some(si)) => {
                    let slot = usize::try_from(si)
                        .ok()
                        .and_then(|i| placed.get_mut(i))
                        .ok_or_else(|| {
                            invalid(format!(
                                "state migration layout: state index {si} is out of range"
                            ))
                        })?;
                    if *slot {
                        return Err(invalid(format!(
                            "state migration layout: state index {si} appears twice"
                        )));
                    }
                    *slot = true;
                }
                _ => {
                    return Err(invalid(
                        "state migration layout items need exactly one of baseIndex and stateIndex",
                    ));
                }
            }
        }
        let n_placed = placed.iter().filter(|p| **p).count();
        if n_placed != states.len() {
            return Err(invalid(format!(
                "state migration layout places {n_placed} of {} inserted states",
                states.len()
            )));
        }
        // Base patches, by index before the migration, only for retained resources.
        let mut base_patches: HashMap<usize, Res> = HashMap::new();
        for p in e.base_state_patches.unwrap_or_default() {
            let i = usize::try_from(p.index)
                .ok()
                .filter(|i| *i < base_len)
                .ok_or_else(|| {
                    invalid(format!(
                        "state migration base patch index {} is out of range",
                        p.index
                    ))
                })?;
            if new_pos[i].is_none() {
                return Err(invalid(format!(
                    "state migration base patch {i} targets a resource the layout removes"
                )));
            }
            if base_patches.insert(i, Res::parse_owned(p.state)?).is_some() {
                return Err(invalid(format!(
                    "state migration base patch {i} appears twice"
                )));
            }
        }
        // Patches of resources this update produced earlier: content only, same positions.
        let mut new_patches: HashMap<usize, Res> = HashMap::new();
        for p in e.new_state_patches.unwrap_or_default() {
            let op = p.operation_id;
            if self.to_remove.contains(&op) {
                return Err(invalid(format!(
                    "state migration patches operation {op}, whose resource was removed"
                )));
            }
            let i = self.new_index(op, "newStatePatches")?;
            if new_patches.insert(i, Res::parse_owned(p.state)?).is_some() {
                return Err(invalid(format!(
                    "state migration patches operation {op} twice"
                )));
            }
        }
        let inserted = self.check_inserted_states(&states)?;

        // Everything checks: apply.
        let mut old: Vec<Option<Res>> = std::mem::take(&mut self.base.resources)
            .into_iter()
            .map(Some)
            .collect();
        for (i, r) in base_patches.iter() {
            old[*i] = Some(r.clone());
        }
        let mut inserted: Vec<Option<Res>> = inserted.into_iter().map(Some).collect();
        let mut resources = Vec::with_capacity(layout.len());
        for item in &layout {
            let r = match (item.base_index, item.state_index) {
                (Some(b), _) => old[b as usize].take(),
                (_, Some(si)) => inserted[si as usize].take(),
                _ => None,
            };
            resources
                .push(r.ok_or_else(|| EngineError::Internal("state migration layout".into()))?);
        }
        self.base.resources = resources;
        for (i, r) in new_patches {
            self.new_resources[i] = r;
        }
        let remap = |set: &HashSet<i64>| -> HashSet<i64> {
            set.iter()
                .filter_map(|i| {
                    usize::try_from(*i)
                        .ok()
                        .and_then(|i| new_pos.get(i).copied().flatten())
                })
                .map(|p| p as i64)
                .collect()
        };
        self.to_delete_in_base = remap(&self.to_delete_in_base);
        self.mark_delete = remap(&self.mark_delete);
        self.mark_pending_replacement = remap(&self.mark_pending_replacement);
        self.to_replace_in_base = std::mem::take(&mut self.to_replace_in_base)
            .into_iter()
            .filter_map(|(i, r)| {
                let old = usize::try_from(i).ok()?;
                if base_patches.contains_key(&old) {
                    return None; // the patch wins
                }
                new_pos.get(old).copied().flatten().map(|p| (p as i64, r))
            })
            .collect();
        Ok(())
    }

    /// Checks the states a migration inserts (upstream's rules) and parses them.
    fn check_inserted_states(&self, states: &[Box<RawValue>]) -> EngineResult<Vec<Res>> {
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            urn: String,
            #[serde(rename = "type", default)]
            kind: String,
            #[serde(default)]
            custom: bool,
            #[serde(default)]
            id: Option<String>,
            #[serde(default)]
            delete: bool,
            #[serde(rename = "viewOf", default)]
            view_of: Option<String>,
            #[serde(rename = "extensionRef", default)]
            extension_ref: Option<String>,
        }
        let mut urns: HashSet<String> = HashSet::new();
        let mut out = Vec::with_capacity(states.len());
        for (i, raw) in states.iter().enumerate() {
            let h: Head = serde_json::from_str(raw.get())
                .map_err(|e| invalid(format!("state migration state {i} is not valid: {e}")))?;
            let Some((_, _, qtype, _)) = urn_parts(&h.urn) else {
                return Err(invalid(format!(
                    "state migration state {i} has an invalid URN"
                )));
            };
            if urn_base_type(qtype) != h.kind {
                return Err(invalid(format!(
                    "state migration state {i}: type {:?} does not match its URN",
                    h.kind
                )));
            }
            if h.delete {
                return Err(invalid(format!(
                    "state migration state {i} is marked for deletion"
                )));
            }
            if h.view_of.as_deref().is_some_and(|v| !v.is_empty()) {
                return Err(invalid(format!("state migration state {i} is a view")));
            }
            if h.custom && h.id.as_deref().is_none_or(str::is_empty) {
                return Err(invalid(format!(
                    "state migration state {i} is a custom resource without an id"
                )));
            }
            if let Some(ext) = h.extension_ref.as_deref().filter(|e| !e.is_empty())
                && !self.base.extensions.contains_key(ext)
                && !self.extensions.contains_key(ext)
            {
                return Err(invalid(format!(
                    "state migration state {i} refers to unknown extension {ext:?}"
                )));
            }
            if !urns.insert(h.urn.clone()) {
                return Err(invalid(format!("state migration inserts {} twice", h.urn)));
            }
            out.push(Res::parse(raw)?);
        }
        Ok(out)
    }

    /// The deployment the entries so far describe (upstream `GenerateDeployment`).
    pub fn generate(&self) -> EngineResult<Generated> {
        self.clone().into_generated()
    }

    /// [`Replayer::generate`], consuming the replayer: resources move into the result rather
    /// than being copied (a rebuilt base costs a pass over pointers, not over the state).
    pub fn into_generated(self) -> EngineResult<Generated> {
        let mut features = Features::new();
        let mut removed: HashSet<usize> = HashSet::new();
        for op in &self.to_remove {
            // An operation that produced no resource has nothing to remove.
            if let Some(i) = self.op_index.get(op) {
                removed.insert(*i);
            }
        }
        let mut to_replace = self.to_replace_in_base;
        let mut resources: Vec<Res> =
            Vec::with_capacity(self.new_resources.len() + self.base.resources.len());
        for (i, r) in self.new_resources.into_iter().enumerate() {
            if !removed.contains(&i) {
                r.features(&mut features);
                resources.push(r);
            }
        }
        for (i, mut r) in self.base.resources.into_iter().enumerate() {
            let i = i as i64;
            if self.to_delete_in_base.contains(&i) {
                continue;
            }
            if let Some(state) = to_replace.remove(&i) {
                state.features(&mut features);
                resources.push(state);
                continue;
            }
            if self.mark_pending_replacement.contains(&i) {
                r.set_flag("pendingReplacement")?;
            }
            if self.mark_delete.contains(&i) {
                r.set_flag("delete")?;
            }
            r.features(&mut features);
            resources.push(r);
        }

        let mut pending: Vec<PendingOp> = Vec::new();
        for op in self.incomplete.into_values().flatten() {
            op.resource.features(&mut features);
            pending.push(op);
        }
        for op in self.base.pending_operations {
            if op.kind == "creating" {
                op.resource.features(&mut features);
                pending.push(op);
            }
        }
        if self.requires_byte_string && (!resources.is_empty() || !pending.is_empty()) {
            features.insert("byteString");
        }

        if self.has_refresh {
            rebuild_dependencies(&mut resources)?;
        }

        let mut extensions = self.extensions;
        for (k, v) in self.base.extensions {
            extensions.insert(k, v);
        }
        let mut base = Base {
            secrets_providers: self.base.secrets_providers,
            resources,
            pending_operations: pending,
            metadata: self.base.metadata,
            snippets: self.base.snippets,
            extensions,
        };
        if base.snippets_non_empty() {
            features.insert("snippets-prototype");
        }
        normalize_urn_references(&mut base)?;
        let version = if features.is_empty() { 3 } else { 4 };
        Ok(Generated {
            version,
            features: features.into_iter().collect(),
            base,
        })
    }
}

/// After a refresh, drops references to resources that are gone (upstream
/// `rebuildDependencies` and `undangleParentResources`).
fn rebuild_dependencies(resources: &mut [Res]) -> EngineResult<()> {
    let mut referenceable: HashSet<String> = HashSet::new();
    let mut parents: Vec<Option<String>> = Vec::with_capacity(resources.len());
    for r in resources.iter_mut() {
        let head = r.head()?;
        let h = &head;
        let mut obj: Option<RawObject> = None;
        let mut edit = |f: &mut dyn FnMut(&mut RawObject)| -> EngineResult<()> {
            if obj.is_none() {
                obj = Some(r.object()?);
            }
            if let Some(o) = obj.as_mut() {
                f(o);
            }
            Ok(())
        };
        if let Some(deps) = h.dependencies.as_ref().filter(|d| !d.is_empty()) {
            let kept: Vec<&String> = deps.iter().filter(|d| referenceable.contains(*d)).collect();
            if kept.len() != deps.len() {
                edit(&mut |o| {
                    if kept.is_empty() {
                        o.remove("dependencies");
                    } else {
                        o.set("dependencies", &kept);
                    }
                })?;
            }
        }
        if let Some(pd) = h.property_dependencies.as_ref().filter(|m| !m.is_empty()) {
            let mut rebuilt: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
            for (k, deps) in pd {
                for d in deps.iter().flatten() {
                    if referenceable.contains(d) {
                        rebuilt.entry(k).or_default().push(d);
                    }
                }
            }
            let unchanged = rebuilt.len() == pd.len()
                && pd.iter().all(|(k, v)| {
                    rebuilt.get(k).map(|r| r.len()) == Some(v.as_ref().map_or(0, |v| v.len()))
                });
            if !unchanged {
                edit(&mut |o| {
                    if rebuilt.is_empty() {
                        o.remove("propertyDependencies");
                    } else {
                        o.set("propertyDependencies", &rebuilt);
                    }
                })?;
            }
        }
        if let Some(rw) = h.replace_with.as_ref().filter(|r| !r.is_empty()) {
            let kept: Vec<&String> = rw.iter().filter(|d| referenceable.contains(*d)).collect();
            if kept.len() != rw.len() {
                edit(&mut |o| {
                    if kept.is_empty() {
                        o.remove("replaceWith");
                    } else {
                        o.set("replaceWith", &kept);
                    }
                })?;
            }
        }
        if let Some(dw) = h.deleted_with.as_ref().filter(|d| !d.is_empty())
            && !referenceable.contains(dw)
        {
            edit(&mut |o| o.remove("deletedWith"))?;
        }
        referenceable.insert(h.urn.clone());
        parents.push(h.parent.clone());
        if let Some(o) = obj {
            *r = Res::edited(o)?;
        }
    }
    // Parents that no longer exist resolve to no parent (upstream re-parents to the
    // grandparent, which is never known for a missing parent).
    for (r, parent) in resources.iter_mut().zip(parents) {
        if let Some(p) = parent.as_ref().filter(|p| !p.is_empty())
            && !referenceable.contains(p)
        {
            let mut o = r.object()?;
            o.remove("parent");
            *r = Res::edited(o)?;
        }
    }
    Ok(())
}

/// `urn:pulumi:<stack>::<project>::<qualified type>::<name>`.
fn urn_parts(urn: &str) -> Option<(&str, &str, &str, &str)> {
    let rest = urn.strip_prefix("urn:pulumi:")?;
    let (stack, rest) = rest.split_once("::")?;
    let (project, rest) = rest.split_once("::")?;
    let (qtype, name) = rest.split_once("::")?;
    Some((stack, project, qtype, name))
}

fn urn_base_type(qtype: &str) -> &str {
    qtype.rsplit('$').next().unwrap_or(qtype)
}

/// Rewrites references through aliases to the resources' current URNs and drops the
/// aliases (upstream `DeploymentV3.NormalizeURNReferences`).
fn normalize_urn_references(d: &mut Base) -> EngineResult<()> {
    if !d.resources.iter().any(Res::has_aliases) {
        return Ok(());
    }
    let heads: Vec<ResourceHead> = d
        .resources
        .iter()
        .map(Res::head)
        .collect::<EngineResult<_>>()?;
    let mut aliased: HashMap<String, String> = HashMap::new();
    for r in &heads {
        for alias in r.aliases.iter().flatten() {
            if let Some(other) = aliased.get(alias)
                && other != &r.urn
            {
                return Err(invalid(format!(
                    "two resources ('{other}' and '{}') have the same alias: '{alias}'",
                    r.urn
                )));
            }
            aliased.insert(alias.clone(), r.urn.clone());
        }
        if let Some(parent) = r.parent.as_ref().and_then(|p| aliased.get(p)).cloned()
            && !parent.is_empty()
            && let Some((_, _, parent_qtype, _)) = urn_parts(&parent)
            && parent_qtype != ROOT_STACK_TYPE
            && let Some((stack, project, qtype, name)) = urn_parts(&r.urn)
        {
            let new = format!(
                "urn:pulumi:{stack}::{project}::{parent_qtype}${}::{name}",
                urn_base_type(qtype)
            );
            aliased.insert(r.urn.clone(), new);
        }
    }
    let fix = |u: &str| aliased.get(u).cloned();
    for (r, h) in d.resources.iter_mut().zip(&heads) {
        let mut obj = r.object()?;
        let mut changed = false;
        if let Some(n) = fix(&h.urn) {
            obj.set("urn", &n);
            changed = true;
        }
        if let Some(n) = h.parent.as_deref().and_then(fix) {
            obj.set("parent", &n);
            changed = true;
        }
        if let Some(p) = &h.provider
            && let Some(idx) = p.rfind("::")
            && let Some(n) = fix(&p[..idx])
        {
            obj.set("provider", &format!("{n}{}", &p[idx..]));
            changed = true;
        }
        if let Some(deps) = &h.dependencies
            && deps.iter().any(|d| aliased.contains_key(d))
        {
            let fixed: Vec<String> = deps
                .iter()
                .map(|d| fix(d).unwrap_or_else(|| d.clone()))
                .collect();
            obj.set("dependencies", &fixed);
            changed = true;
        }
        if let Some(pd) = &h.property_dependencies
            && pd
                .values()
                .flatten()
                .flatten()
                .any(|d| aliased.contains_key(d))
        {
            let fixed: BTreeMap<&String, Option<Vec<String>>> = pd
                .iter()
                .map(|(k, v)| {
                    (
                        k,
                        v.as_ref().map(|v| {
                            v.iter()
                                .map(|d| fix(d).unwrap_or_else(|| d.clone()))
                                .collect()
                        }),
                    )
                })
                .collect();
            obj.set("propertyDependencies", &fixed);
            changed = true;
        }
        if let Some(n) = h.deleted_with.as_deref().and_then(fix) {
            obj.set("deletedWith", &n);
            changed = true;
        }
        if let Some(n) = h.view_of.as_deref().and_then(fix) {
            obj.set("viewOf", &n);
            changed = true;
        }
        if h.aliases.as_ref().is_some_and(|a| !a.is_empty()) {
            obj.remove("aliases");
            changed = true;
        }
        if changed {
            *r = Res::edited(obj)?;
        }
    }
    // Snippet references are URNs too.
    if let Some(snippets) = &d.snippets
        && let Ok(list) = serde_json::from_str::<Vec<Box<RawValue>>>(snippets.get())
    {
        let mut changed = false;
        let mut out = Vec::with_capacity(list.len());
        for s in list {
            let mut obj = RawObject::parse(s.get())
                .map_err(|e| invalid(format!("a snippet is not an object: {e}")))?;
            let refs: Option<BTreeMap<String, String>> = obj
                .get("references")
                .and_then(|r| serde_json::from_str(r.get()).ok());
            if let Some(refs) = refs
                && refs.values().any(|v| aliased.contains_key(v))
            {
                let fixed: BTreeMap<String, String> = refs
                    .into_iter()
                    .map(|(k, v)| {
                        let n = fix(&v).unwrap_or(v);
                        (k, n)
                    })
                    .collect();
                obj.set("references", &fixed);
                changed = true;
                out.push(obj.to_raw());
            } else {
                out.push(s);
            }
        }
        if changed {
            let text = serde_json::to_string(&out).map_err(EngineError::internal)?;
            d.snippets = RawValue::from_string(text).ok();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn res(urn: &str, extra: Value) -> Value {
        let mut v = json!({"urn": urn, "custom": true, "type": "pbtest:index:Item"});
        if let Value::Object(m) = extra {
            for (k, x) in m {
                v[k] = x;
            }
        }
        v
    }

    fn urn(name: &str) -> String {
        format!("urn:pulumi:dev::proj::pbtest:index:Item::{name}")
    }

    fn entry(v: Value) -> Entry {
        serde_json::from_value(v).unwrap()
    }

    fn generate(r: &Replayer) -> Value {
        let g = r.generate().unwrap();
        let text = g.to_untyped("v3.259.0", "2026-01-01T00:00:00Z");
        serde_json::from_slice(&text).unwrap()
    }

    fn base_of(resources: Vec<Value>) -> Base {
        Base::from_deployment(
            &json!({"manifest": {}, "resources": resources, "metadata": {}}).to_string(),
        )
        .unwrap()
    }

    fn urns(v: &Value) -> Vec<String> {
        v["deployment"]["resources"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| r["urn"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn the_prefilter_searches_for_every_key_the_flags_come_from() {
        let keys = flags_head_keys();
        assert_eq!(keys.len(), 8, "{keys:?}");
        for k in ["aliases", "refreshBeforeUpdate", "viewOf", "snippetID"] {
            assert!(keys.contains(&k), "{k} in {keys:?}");
        }
    }

    #[test]
    fn flags_are_found_behind_the_key_prefilter_even_when_escaped() {
        let flags =
            |text: &str| Res::parse(&RawValue::from_string(text.into()).unwrap()).map(|r| r.flags);
        assert_eq!(flags(r#"{"urn":"u","outputs":{"x":"plain"}}"#).unwrap(), 0);
        assert_eq!(flags(r#"{"urn":"u","taint":true}"#).unwrap(), F_TAINT);
        assert_eq!(flags(r#"{"urn":"u","t\u0061int":true}"#).unwrap(), F_TAINT);
        // A key's name inside a value is only a false alarm: parsed, and no flag set.
        assert_eq!(
            flags(r#"{"urn":"u","outputs":{"taint":false}}"#).unwrap(),
            0
        );
        assert!(flags("[1]").is_err());
        assert!(flags(r#""text""#).is_err());
    }

    #[test]
    fn an_unchanged_state_shares_the_base_text_and_a_changed_one_does_not() {
        let (a, b) = (res(&urn("a"), json!({})), res(&urn("b"), json!({})));
        let mut r = Replayer::new(base_of(vec![a.clone(), b.clone()]));
        let base_ptr = |r: &Replayer, i: usize| r.base.resources[i].text().as_ptr();
        let (a_ptr, b_ptr) = (base_ptr(&r, 0), base_ptr(&r, 1));
        r.add(entry(json!({"kind": 0, "sequenceID": 1, "operationID": 1})))
            .unwrap();
        r.add(entry(
            json!({"kind": 1, "sequenceID": 2, "operationID": 1, "removeOld": 0, "state": a}),
        ))
        .unwrap();
        let b2 = res(&urn("b"), json!({"outputs": {"x": 1}}));
        r.add(entry(json!({"kind": 0, "sequenceID": 3, "operationID": 2})))
            .unwrap();
        r.add(entry(
            json!({"kind": 1, "sequenceID": 4, "operationID": 2, "removeOld": 1, "state": b2}),
        ))
        .unwrap();
        let g = r.generate().unwrap();
        let ptrs: Vec<*const u8> = g.base.resources.iter().map(|x| x.text().as_ptr()).collect();
        assert_eq!(ptrs[0], a_ptr, "the same step keeps the base's text");
        assert_ne!(ptrs[1], b_ptr, "the changed resource has its own");
        let out = generate(&r);
        assert_eq!(out["deployment"]["resources"][0], a);
        assert_eq!(out["deployment"]["resources"][1], b2);
    }

    #[test]
    fn create_update_delete_and_pending() {
        let base = base_of(vec![res(&urn("a"), json!({})), res(&urn("b"), json!({}))]);
        let mut r = Replayer::new(base);
        // Update b (base index 1) in place.
        r.add(entry(
            json!({"kind":0,"sequenceID":1,"operationID":1,"removeOld":null,"removeNew":null,
            "operation":{"resource":res(&urn("b"),json!({})),"type":"updating"}}),
        ))
        .unwrap();
        r.add(entry(
            json!({"kind":1,"sequenceID":2,"operationID":1,"removeOld":1,"removeNew":null,
            "state":res(&urn("b"),json!({"outputs":{"v":2}}))}),
        ))
        .unwrap();
        // Create c, still running.
        r.add(entry(
            json!({"kind":0,"sequenceID":3,"operationID":2,"removeOld":null,"removeNew":null,
            "operation":{"resource":res(&urn("c"),json!({})),"type":"creating"}}),
        ))
        .unwrap();
        // Delete a (base index 0).
        r.add(entry(
            json!({"kind":1,"sequenceID":4,"operationID":3,"removeOld":0,"removeNew":null}),
        ))
        .unwrap();
        let d = generate(&r);
        assert_eq!(urns(&d), vec![urn("b")]);
        assert_eq!(d["deployment"]["resources"][0]["outputs"]["v"], 2);
        assert_eq!(d["deployment"]["pending_operations"][0]["type"], "creating");
        assert_eq!(d["version"], 3);
        // A repeated entry (retried batch) is ignored.
        r.add(entry(
            json!({"kind":1,"sequenceID":2,"operationID":1,"removeOld":1,"removeNew":null,
            "state":res(&urn("b"),json!({"outputs":{"v":2}}))}),
        ))
        .unwrap();
        assert_eq!(urns(&generate(&r)), vec![urn("b")]);
        assert_eq!(r.applied(), 4);
    }

    #[test]
    fn replacement_marks_old_for_deletion_and_keeps_numbers_exact() {
        let text = format!(
            r#"{{"manifest":{{}},"resources":[{{"urn":"{}","custom":true,"type":"t","outputs":{{"n":1.50e3}}}}]}}"#,
            urn("a")
        );
        let mut r = Replayer::new(Base::from_deployment(&text).unwrap());
        r.add(entry(
            json!({"kind":1,"sequenceID":1,"operationID":1,"removeOld":null,"removeNew":null,
            "deleteOld":0,"state":res(&urn("a"),json!({"id":"new"}))}),
        ))
        .unwrap();
        let g = r.generate().unwrap();
        let text = String::from_utf8(g.to_untyped("v", "t")).unwrap();
        assert!(text.contains("1.50e3"), "{text}");
        let d: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(d["deployment"]["resources"][1]["delete"], true);
        assert_eq!(d["deployment"]["resources"][0]["id"], "new");
        assert_eq!(
            d["deployment"]["manifest"]["magic"],
            json!(sha256_hex(b"v"))
        );
    }

    #[test]
    fn dangling_new_references_are_refused() {
        let mut r = Replayer::new(Base::default());
        let e = r.add(entry(json!({"kind":1,"sequenceID":1,"operationID":1,"removeOld":null,"removeNew":null,"deleteNew":7})));
        assert!(e.is_err());
    }

    #[test]
    fn refresh_rebuilds_dependencies_and_parents() {
        let base = base_of(vec![
            res(&urn("gone"), json!({})),
            res(
                &urn("child"),
                json!({"parent": urn("gone"), "dependencies": [urn("gone")],
                "propertyDependencies": {"x": [urn("gone")]}}),
            ),
        ]);
        let mut r = Replayer::new(base);
        r.add(entry(json!({"kind":3,"sequenceID":1,"operationID":1,"removeOld":0,"removeNew":null,"isRefresh":true}))).unwrap();
        let d = generate(&r);
        let child = &d["deployment"]["resources"][0];
        assert_eq!(child["urn"], json!(urn("child")));
        assert!(child.get("parent").is_none(), "{child}");
        assert!(child.get("dependencies").is_none(), "{child}");
        assert!(child.get("propertyDependencies").is_none(), "{child}");
    }

    #[test]
    fn aliases_are_normalized() {
        let base = base_of(vec![
            res(&urn("new"), json!({"aliases": [urn("old")]})),
            res(
                &urn("user"),
                json!({"dependencies": [urn("old")], "provider": format!("{}::id1", urn("old"))}),
            ),
        ]);
        let r = Replayer::new(base);
        let d = generate(&r);
        let rs = &d["deployment"]["resources"];
        assert!(rs[0].get("aliases").is_none());
        assert_eq!(rs[1]["dependencies"][0], json!(urn("new")));
        assert_eq!(rs[1]["provider"], json!(format!("{}::id1", urn("new"))));
    }

    #[test]
    fn secrets_snippets_extensions_write_and_rebuilt_base() {
        let mut r = Replayer::new(base_of(vec![res(&urn("a"), json!({}))]));
        r.add(entry(
            json!({"kind":6,"sequenceID":1,"operationID":0,"removeOld":null,"removeNew":null,
            "secretsProvider":{"type":"service","state":{"stack":"dev"}}}),
        ))
        .unwrap();
        r.add(entry(
            json!({"kind":8,"sequenceID":2,"operationID":0,"removeOld":null,"removeNew":null,
            "extensionRef":"ext1","extension":{"name":"n","version":"1","value":"AA=="}}),
        ))
        .unwrap();
        r.add(entry(
            json!({"kind":9,"sequenceID":3,"operationID":0,"removeOld":null,"removeNew":null,
            "snippets":[{"uuid":"u","name":"n","type":"t","code":"c","descriptor":{"name":"p"}}]}),
        ))
        .unwrap();
        let d = generate(&r);
        assert_eq!(d["deployment"]["secrets_providers"]["type"], "service");
        assert_eq!(d["deployment"]["extensions"]["ext1"]["name"], "n");
        assert_eq!(d["features"], json!(["snippets-prototype"]));
        assert_eq!(d["version"], 4);

        // A write (always the first resource-related entry) replaces the base outright.
        let mut r = Replayer::new(base_of(vec![res(&urn("a"), json!({}))]));
        r.add(entry(
            json!({"kind":5,"sequenceID":7,"operationID":0,"removeOld":null,"removeNew":null,
            "newSnapshot":{"manifest":{},"resources":[res(&urn("z"),json!({}))]}}),
        ))
        .unwrap();
        r.add(entry(
            json!({"kind":1,"sequenceID":8,"operationID":1,"removeOld":0,"removeNew":null,
            "state":res(&urn("z"),json!({"outputs":{"v":1}}))}),
        ))
        .unwrap();
        let d = generate(&r);
        assert_eq!(urns(&d), vec![urn("z")]);
        assert_eq!(d["deployment"]["resources"][0]["outputs"]["v"], 1);
    }
    fn e7(seq: i64) -> Entry {
        entry(json!({"kind":7,"sequenceID":seq,"operationID":0,"removeOld":null,"removeNew":null}))
    }

    #[test]
    fn rebuilt_base_state_folds_then_old_indices_follow() {
        let mut r = Replayer::new(base_of(vec![
            res(&urn("a"), json!({})),
            res(&urn("b"), json!({})),
            res(&urn("c"), json!({})),
        ]));
        // A refresh finds a gone and rewrites c.
        r.add(entry(json!({"kind":3,"sequenceID":1,"operationID":1,"removeOld":0,"removeNew":null,"isRefresh":true}))).unwrap();
        r.add(entry(json!({"kind":3,"sequenceID":2,"operationID":2,"removeOld":2,"removeNew":null,"isRefresh":true,
            "state":res(&urn("c"),json!({"outputs":{"v":9}}))}))).unwrap();
        r.add(e7(3)).unwrap();
        // Repeated folds with nothing new cost nothing and count for nothing.
        for seq in 4..100 {
            r.add(e7(seq)).unwrap();
        }
        assert_eq!(r.rebuilds, 1);
        assert_eq!(urns(&generate(&r)), vec![urn("b"), urn("c")]);
        // Old indices now refer to the rebuilt base: 1 is c.
        r.add(entry(
            json!({"kind":1,"sequenceID":100,"operationID":3,"removeOld":1,"removeNew":null}),
        ))
        .unwrap();
        let d = generate(&r);
        assert_eq!(urns(&d), vec![urn("b")]);
    }

    #[test]
    fn a_rebuild_after_new_resources_ends_the_journal() {
        let mut r = Replayer::new(base_of(vec![res(&urn("a"), json!({}))]));
        r.add(entry(
            json!({"kind":1,"sequenceID":1,"operationID":1,"removeOld":null,"removeNew":null,
            "state":res(&urn("b"),json!({}))}),
        ))
        .unwrap();
        r.add(e7(2)).unwrap();
        assert_eq!(urns(&generate(&r)), vec![urn("b"), urn("a")]);
        r.add(e7(3)).unwrap();
        assert!(
            r.add(entry(
                json!({"kind":1,"sequenceID":4,"operationID":2,"removeOld":0,"removeNew":null})
            ))
            .is_err()
        );
    }

    #[test]
    fn rebuilds_that_fold_work_are_capped() {
        let mut r = Replayer::new(base_of(vec![res(&urn("a"), json!({}))]));
        let mut seq = 0;
        let mut next = || {
            seq += 1;
            seq
        };
        for i in 0..MAX_BASE_REBUILDS {
            r.add(entry(json!({"kind":0,"sequenceID":next(),"operationID":i+1,"removeOld":null,"removeNew":null}))).unwrap();
            r.add(entry(json!({"kind":2,"sequenceID":next(),"operationID":i+1,"removeOld":null,"removeNew":null}))).unwrap();
            r.add(e7(next())).unwrap();
        }
        r.add(entry(json!({"kind":0,"sequenceID":next(),"operationID":999,"removeOld":null,"removeNew":null}))).unwrap();
        assert!(r.add(e7(next())).is_err());
    }

    fn migration(seq: i64, v: Value) -> Entry {
        let mut e = json!({"version":2,"kind":10,"sequenceID":seq,"operationID":0,"removeOld":null,"removeNew":null});
        if let (Value::Object(m), Value::Object(x)) = (&mut e, v) {
            m.extend(x);
        }
        entry(e)
    }

    #[test]
    fn state_migration_rebuilds_the_base_and_remaps_indices() {
        let base = base_of(vec![
            res(&urn("a"), json!({"id":"a"})),
            res(&urn("b"), json!({"id":"b"})),
            res(&urn("c"), json!({"id":"c"})),
        ]);
        let mut r = Replayer::with_version(base, 2);
        // Operation 7 created n earlier in this update.
        r.add(entry(json!({"version":1,"kind":1,"sequenceID":1,"operationID":7,"removeOld":null,"removeNew":null,
            "state":res(&urn("n"),json!({"id":"n1"}))}))).unwrap();
        // Mark c (old index 2) for deletion before the migration.
        r.add(entry(json!({"kind":1,"sequenceID":2,"operationID":8,"removeOld":null,"removeNew":null,"deleteOld":2,
            "state":res(&urn("c2"),json!({"id":"c2"}))}))).unwrap();
        // The migration drops b, inserts x after a, rewrites c and n.
        r.add(migration(3, json!({
            "layout":[{"baseIndex":0},{"stateIndex":0},{"baseIndex":2}],
            "states":[res(&urn("x"),json!({"id":"x"}))],
            "baseStatePatches":[{"index":2,"state":res(&urn("c"),json!({"id":"c","outputs":{"m":1}}))}],
            "newStatePatches":[{"operationID":7,"state":res(&urn("n"),json!({"id":"n2"}))}]
        }))).unwrap();
        let d = generate(&r);
        assert_eq!(
            urns(&d),
            vec![urn("n"), urn("c2"), urn("a"), urn("x"), urn("c")]
        );
        let rs = &d["deployment"]["resources"];
        assert_eq!(rs[0]["id"], "n2");
        assert_eq!(rs[4]["outputs"]["m"], 1);
        // The delete mark followed c to its new position (2).
        assert_eq!(rs[4]["delete"], true);
        // Later Old indices address the migrated base: 1 is x.
        r.add(entry(
            json!({"kind":1,"sequenceID":4,"operationID":9,"removeOld":1,"removeNew":null}),
        ))
        .unwrap();
        assert_eq!(
            urns(&generate(&r)),
            vec![urn("n"), urn("c2"), urn("a"), urn("c")]
        );
    }

    #[test]
    fn bad_state_migrations_are_refused() {
        let base = || {
            base_of(vec![
                res(&urn("a"), json!({"id":"a"})),
                res(&urn("b"), json!({"id":"b"})),
            ])
        };
        let x = || res(&urn("x"), json!({"id":"x"}));
        let cases = vec![
            (
                2,
                json!({"layout":[{"baseIndex":0},{"stateIndex":0}],"states":[]}),
            ),
            (2, json!({"layout":[{"baseIndex":0}],"states":[x()]})),
            (
                2,
                json!({"layout":[{"baseIndex":0},{"baseIndex":0},{"stateIndex":0}],"states":[x()]}),
            ),
            (
                2,
                json!({"layout":[{"baseIndex":5},{"stateIndex":0}],"states":[x()]}),
            ),
            (
                2,
                json!({"layout":[{"baseIndex":0,"stateIndex":0}],"states":[x()]}),
            ),
            (
                2,
                json!({"layout":[{"baseIndex":0},{"stateIndex":0}],"states":[x()],
                "baseStatePatches":[{"index":1,"state":x()}]}),
            ),
            (
                2,
                json!({"layout":[{"stateIndex":0}],"states":[res(&urn("x"),json!({}))]}),
            ),
            (
                2,
                json!({"layout":[{"stateIndex":0}],"states":[res(&urn("x"),json!({"id":"x","type":"other"}))]}),
            ),
            (
                2,
                json!({"layout":[{"stateIndex":0}],"states":[x()],
                "newStatePatches":[{"operationID":3,"state":x()}]}),
            ),
        ];
        for (journal, v) in cases {
            let mut r = Replayer::with_version(base(), journal);
            assert!(r.add(migration(1, v.clone())).is_err(), "{v}");
        }
        // Version 1 journals carry no migrations, and migrations must say version 2.
        let ok = json!({"layout":[{"stateIndex":0}],"states":[x()]});
        assert!(
            Replayer::with_version(base(), 1)
                .add(migration(1, ok.clone()))
                .is_err()
        );
        let mut e = migration(1, ok.clone());
        e.version = 1;
        assert!(Replayer::with_version(base(), 2).add(e).is_err());
        let mut r = Replayer::with_version(base(), 2);
        r.add(migration(1, ok)).unwrap();
        assert_eq!(urns(&generate(&r)), vec![urn("x")]);
    }
}
