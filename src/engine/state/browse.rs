//! What a person browsing a stack reads (the web console): a version's resources with their
//! inputs and outputs, secrets masked, and what changed between two versions. The console
//! is one more client of these rules; it never reads a state itself.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::engine::blocking::run_sized;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::state::deployment::gunzip_stored;
use crate::engine::state::reveal;
use crate::engine::views::UpdateView;
use crate::engine::{Engine, Identity};
use crate::store::StackKey;
use crate::types::StackPermission;

/// What a masked secret reads as. Ciphertexts never leave the engine for a page: a viewer
/// who wants a secret in clear uses the CLI, whose decryption is audited.
pub const MASKED: &str = "[secret]";

/// The marker key and value of a secret in a Pulumi state.
const SIG_KEY: &str = "4dabf18193072939515e22adb298388d";
const SIG_SECRET: &str = "1b47061264138c4ac30d75fd1eb44270";

/// One resource of a state.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceView {
    pub urn: String,
    pub ty: String,
    /// The last component of the URN.
    pub name: String,
    pub id: Option<String>,
    pub parent: Option<String>,
    pub custom: bool,
    pub protect: bool,
    /// JSON objects, secrets replaced by [`MASKED`].
    pub inputs: Value,
    pub outputs: Value,
}

/// A version of a stack, as the console shows it.
#[derive(Debug, Clone, Default)]
pub struct StateView {
    /// In state order (parents before children).
    pub resources: Vec<ResourceView>,
    /// The stack's outputs (those of its `pulumi:pulumi:Stack` resource), masked.
    pub outputs: Value,
}

/// How a resource differs between two versions.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Added,
    Removed,
    /// The properties (`inputs.x`, `outputs.y`, `id`, ...) whose values differ, with the old
    /// and new values (masked).
    Changed(Vec<PropertyChange>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PropertyChange {
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceChange {
    pub urn: String,
    pub ty: String,
    pub change: Change,
}

#[derive(Deserialize)]
struct Untyped {
    #[serde(default)]
    deployment: Option<Deployment>,
}

#[derive(Deserialize)]
struct Deployment {
    #[serde(default)]
    resources: Vec<RawResource>,
}

#[derive(Deserialize)]
struct RawResource {
    #[serde(default)]
    urn: String,
    #[serde(default, rename = "type")]
    ty: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    custom: bool,
    #[serde(default)]
    protect: bool,
    #[serde(default)]
    inputs: Option<Value>,
    #[serde(default)]
    outputs: Option<Value>,
}

/// Replaces every secret of `v` by [`MASKED`], or, with `reveal`, a decrypted one (its
/// `plaintext`, JSON text) by its value.
pub fn mask(v: &mut Value, reveal: bool) {
    match v {
        Value::Object(map) => {
            if map.get(SIG_KEY).and_then(Value::as_str) == Some(SIG_SECRET) {
                let plain = map
                    .get("plaintext")
                    .and_then(Value::as_str)
                    .filter(|_| reveal);
                *v = match plain {
                    Some(text) => serde_json::from_str(text)
                        .unwrap_or_else(|_| Value::String(text.to_owned())),
                    None => Value::String(MASKED.into()),
                };
                return;
            }
            map.values_mut().for_each(|x| mask(x, reveal));
        }
        Value::Array(items) => items.iter_mut().for_each(|x| mask(x, reveal)),
        _ => {}
    }
}

fn object(v: Option<Value>, reveal: bool) -> Value {
    let mut v = match v {
        Some(v @ Value::Object(_)) => v,
        _ => Value::Object(Default::default()),
    };
    mask(&mut v, reveal);
    v
}

/// Reads a state (the untyped deployment `{version, deployment}` as stored), every secret
/// masked.
pub fn state_view(json: &[u8]) -> EngineResult<StateView> {
    read_state(json, false)
}

/// Reads a state whose secrets were decrypted ([`reveal::reveal`]), showing their values.
fn read_state(json: &[u8], reveal: bool) -> EngineResult<StateView> {
    let u: Untyped = serde_json::from_slice(json)
        .map_err(|e| EngineError::Internal(format!("a stored state does not parse: {e}")))?;
    let mut view = StateView {
        resources: Vec::new(),
        outputs: Value::Object(Default::default()),
    };
    for r in u.deployment.map(|d| d.resources).unwrap_or_default() {
        let name = r.urn.rsplit("::").next().unwrap_or_default().to_owned();
        let res = ResourceView {
            name,
            inputs: object(r.inputs, reveal),
            outputs: object(r.outputs, reveal),
            urn: r.urn,
            ty: r.ty,
            id: r.id.filter(|i| !i.is_empty()),
            parent: r.parent.filter(|p| !p.is_empty()),
            custom: r.custom,
            protect: r.protect,
        };
        if res.ty == "pulumi:pulumi:Stack" && res.parent.is_none() {
            view.outputs = res.outputs.clone();
        }
        view.resources.push(res);
    }
    Ok(view)
}

/// Stacks one "referenced by" question reads at most.
pub const MAX_REFERENCE_SCAN: usize = 2000;

/// The stacks a state reads through `pulumi:pulumi:StackReference` resources (their `name`
/// input, as the program gave it), sorted, once each.
pub fn references_out(view: &StateView) -> Vec<String> {
    let mut out: Vec<String> = view
        .resources
        .iter()
        .filter(|r| r.ty == "pulumi:pulumi:StackReference")
        .filter_map(|r| {
            r.inputs
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn diff_object(prefix: &str, old: &Value, new: &Value, out: &mut Vec<PropertyChange>) {
    let empty = serde_json::Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let keys: std::collections::BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    for k in keys {
        let (a, b) = (o.get(k), n.get(k));
        if a != b {
            out.push(PropertyChange {
                path: format!("{prefix}.{k}"),
                old: a.cloned(),
                new: b.cloned(),
            });
        }
    }
}

/// What changed from `old` to `new`, in the order of `new` (then what was removed).
pub fn changes(old: &StateView, new: &StateView) -> Vec<ResourceChange> {
    let before: BTreeMap<&str, &ResourceView> =
        old.resources.iter().map(|r| (r.urn.as_str(), r)).collect();
    let after: BTreeMap<&str, &ResourceView> =
        new.resources.iter().map(|r| (r.urn.as_str(), r)).collect();
    let mut out = Vec::new();
    for r in &new.resources {
        let change = match before.get(r.urn.as_str()) {
            None => Change::Added,
            Some(o) => {
                let mut props = Vec::new();
                if o.id != r.id {
                    props.push(PropertyChange {
                        path: "id".into(),
                        old: o.id.clone().map(Value::String),
                        new: r.id.clone().map(Value::String),
                    });
                }
                diff_object("inputs", &o.inputs, &r.inputs, &mut props);
                diff_object("outputs", &o.outputs, &r.outputs, &mut props);
                if props.is_empty() {
                    continue;
                }
                Change::Changed(props)
            }
        };
        out.push(ResourceChange {
            urn: r.urn.clone(),
            ty: r.ty.clone(),
            change,
        });
    }
    for r in &old.resources {
        if !after.contains_key(r.urn.as_str()) {
            out.push(ResourceChange {
                urn: r.urn.clone(),
                ty: r.ty.clone(),
                change: Change::Removed,
            });
        }
    }
    out
}

impl Engine {
    /// A version of a stack's state (`None`: the current one, live while an update runs),
    /// read for display. Needs what an export needs.
    pub async fn state_view(
        &self,
        caller: &Identity,
        key: &StackKey,
        version: Option<i64>,
    ) -> EngineResult<StateView> {
        let export = self.export(caller, key, version).await?;
        match export.gz {
            None => Ok(StateView {
                resources: Vec::new(),
                outputs: Value::Object(Default::default()),
            }),
            Some(gz) => {
                run_sized(gz.len().saturating_mul(8), move || {
                    state_view(&gunzip_stored(&gz)?)
                })
                .await
            }
        }
    }

    /// The same with its secrets in clear, for a viewer who asked: reading a stack includes
    /// its secrets (the API's decrypt routes need read, too), and each such view is audited
    /// as `secrets-decrypted`.
    pub async fn state_view_revealed(
        &self,
        caller: &Identity,
        key: &StackKey,
        version: Option<i64>,
    ) -> EngineResult<StateView> {
        let stack = self.stack(caller, key).await?;
        self.require_stack(caller, &stack, StackPermission::Read)
            .await?;
        let export = self.export(caller, key, version).await?;
        let Some(gz) = export.gz else {
            return Ok(StateView::default());
        };
        let secret_key = self.stack_secret_key(stack.id).await?;
        let view = run_sized(gz.len().saturating_mul(8), move || {
            let json = gunzip_stored(&gz)?;
            let (json, _) = reveal::reveal(&json, &secret_key)?;
            read_state(&json, true)
        })
        .await?;
        self.note_decryption(caller, key, "web console").await?;
        Ok(view)
    }

    /// The stacks of `key`'s organization, visible to the caller, whose current state reads
    /// `key` through a `StackReference` (named in full, or as `project/stack` within the
    /// organization). Reads every such state, so the console asks only on request; at most
    /// [`MAX_REFERENCE_SCAN`] stacks are read.
    pub async fn referenced_by(
        &self,
        caller: &Identity,
        key: &StackKey,
    ) -> EngineResult<Vec<StackKey>> {
        self.stack(caller, key).await?;
        let stacks = self
            .list_all_stacks(
                caller,
                crate::engine::StackListQuery {
                    org: Some(key.org.clone()),
                    project: None,
                    tag_name: None,
                    tag_value: None,
                    continuation: None,
                },
            )
            .await?
            .stacks;
        let names = [key.to_string(), format!("{}/{}", key.project, key.stack)];
        let mut out = Vec::new();
        for s in stacks.into_iter().take(MAX_REFERENCE_SCAN) {
            if s.key == *key {
                continue;
            }
            let Some(gz) = self.export(caller, &s.key, None).await?.gz else {
                continue;
            };
            let names = names.clone();
            let reads = run_sized(gz.len().saturating_mul(8), move || {
                let json = gunzip_stored(&gz)?;
                // Most states reference nothing: only those that do are parsed.
                if memchr::memmem::find(&json, b"pulumi:pulumi:StackReference").is_none() {
                    return Ok(false);
                }
                let view = state_view(&json)?;
                Ok(references_out(&view).iter().any(|r| names.contains(r)))
            })
            .await?;
            if reads {
                out.push(s.key);
            }
        }
        Ok(out)
    }

    /// What changed in a stack from version `from` to version `to`.
    pub async fn version_changes(
        &self,
        caller: &Identity,
        key: &StackKey,
        from: i64,
        to: i64,
    ) -> EngineResult<Vec<ResourceChange>> {
        let old = self.state_view(caller, key, Some(from)).await?;
        let new = self.state_view(caller, key, Some(to)).await?;
        let size = old.resources.len() + new.resources.len();
        // Comparing every property of two large states is CPU work: off the async workers.
        run_sized(size.saturating_mul(1024), move || Ok(changes(&old, &new))).await
    }

    /// One update of a stack by its id (a preview has no version to look it up by).
    pub async fn update_by_id(
        &self,
        caller: &Identity,
        key: &StackKey,
        update_id: &str,
    ) -> EngineResult<UpdateView> {
        let stack = self.stack(caller, key).await?;
        Ok(self.update_of(stack.id, update_id).await?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(resources: Value) -> Vec<u8> {
        serde_json::to_vec(
            &serde_json::json!({"version": 3, "deployment": {"resources": resources}}),
        )
        .unwrap()
    }

    #[test]
    fn secrets_are_masked_wherever_they_are() {
        let secret = serde_json::json!({SIG_KEY: SIG_SECRET, "ciphertext": "v1:abc"});
        let json = state(serde_json::json!([
            {"urn": "urn:pulumi:s::p::pulumi:pulumi:Stack::p-s", "type": "pulumi:pulumi:Stack",
             "outputs": {"pw": secret.clone(), "plain": 1}},
            {"urn": "urn:pulumi:s::p::x:y:Z::r", "type": "x:y:Z", "id": "i-1", "custom": true,
             "inputs": {"list": [secret.clone()]}, "outputs": {"nested": {"a": secret}}},
        ]));
        let v = state_view(&json).unwrap();
        let text = format!("{v:?}");
        assert!(
            !text.contains("ciphertext") && !text.contains("v1:abc"),
            "{text}"
        );
        assert_eq!(v.outputs["pw"], MASKED);
        assert_eq!(v.outputs["plain"], 1);
        assert_eq!(v.resources[1].inputs["list"][0], MASKED);
        assert_eq!(v.resources[1].name, "r");
        assert_eq!(v.resources[1].id.as_deref(), Some("i-1"));
    }

    #[test]
    fn decrypted_secrets_show_their_values_only_when_revealed() {
        let secret = serde_json::json!({SIG_KEY: SIG_SECRET, "plaintext": "\"pw\""});
        let json = state(serde_json::json!([
            {"urn": "u:a", "type": "t", "outputs": {"s": secret, "n": {SIG_KEY: SIG_SECRET, "plaintext": "42"}}},
        ]));
        let shown = read_state(&json, true).unwrap();
        assert_eq!(shown.resources[0].outputs["s"], "pw");
        assert_eq!(shown.resources[0].outputs["n"], 42);
        let masked = read_state(&json, false).unwrap();
        assert_eq!(masked.resources[0].outputs["s"], MASKED);
    }

    #[test]
    fn changes_name_added_removed_and_changed_properties() {
        let old = state_view(&state(serde_json::json!([
            {"urn": "u:a", "type": "t", "inputs": {"v": 1, "same": true}},
            {"urn": "u:b", "type": "t"},
        ])))
        .unwrap();
        let new = state_view(&state(serde_json::json!([
            {"urn": "u:a", "type": "t", "inputs": {"v": 2, "same": true}},
            {"urn": "u:c", "type": "t"},
        ])))
        .unwrap();
        let c = changes(&old, &new);
        assert_eq!(c.len(), 3);
        assert_eq!(
            c[0].change,
            Change::Changed(vec![PropertyChange {
                path: "inputs.v".into(),
                old: Some(1.into()),
                new: Some(2.into()),
            }])
        );
        assert_eq!((c[1].urn.as_str(), &c[1].change), ("u:c", &Change::Added));
        assert_eq!((c[2].urn.as_str(), &c[2].change), ("u:b", &Change::Removed));
    }
}
