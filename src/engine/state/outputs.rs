//! Stack outputs without the rest of the deployment (capability `stack-outputs`), and the
//! coherence windows that decide which outputs a reader in a window sees
//! (capability `coherence-windows`).
//!
//! A coherence window is a group of updates across stacks, named by the CLI
//! (`--coherence-window`), whose stack references must see each other consistently. A read
//! made by an update in window W (`?readingUpdateID=`) of a stack S answers:
//! 1. `pending` while S has an update or refresh in W that has not finished (the reader waits:
//!    it never reads a state S is still changing);
//! 2. otherwise, when the newest finished member of W on S is a preview, the outputs that
//!    preview recorded at `complete`, or `unknown` when it recorded none (it failed before
//!    reporting outputs), so a previewed wave of updates sees projected values;
//! 3. otherwise S's current state, as any other read.
//!
//! Reads without a window, or by an update in no window, are case 3.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::engine::blocking::run_sized;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::state::deployment::gunzip_stored;
use crate::engine::{Engine, Identity};
use crate::store::{StackKey, UpdateStatus};

/// What `GET …/outputs` answers: JSON texts, absent for a stack without state.
#[derive(Debug, Default)]
pub struct StackOutputs {
    pub outputs: Option<String>,
    pub secrets_providers: Option<String>,
    /// The values are placeholders (a preview in the window reported none).
    pub unknown: bool,
    /// The reader must ask again: the stack is changing inside the reader's window.
    pub pending: bool,
}

#[derive(Deserialize)]
struct Untyped<'a> {
    #[serde(borrow, default)]
    deployment: Option<Deployment<'a>>,
}

#[derive(Deserialize)]
struct Deployment<'a> {
    #[serde(borrow, default)]
    secrets_providers: Option<&'a RawValue>,
    #[serde(borrow, default)]
    resources: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", default)]
    kind: &'a str,
    #[serde(default)]
    parent: Option<&'a str>,
    #[serde(borrow, default)]
    outputs: Option<&'a RawValue>,
}

/// The root stack resource's outputs and the secrets providers of a deployment text (the
/// CLI's rule: the first `pulumi:pulumi:Stack` resource without a parent).
pub fn outputs_of(json: &[u8]) -> EngineResult<StackOutputs> {
    let u: Untyped<'_> = serde_json::from_slice(json)
        .map_err(|e| EngineError::Internal(format!("stored deployment: {e}")))?;
    let Some(d) = u.deployment else {
        return Ok(StackOutputs::default());
    };
    let mut outputs = None;
    for r in d.resources.unwrap_or_default() {
        let h: Head<'_> = serde_json::from_str(r.get())
            .map_err(|e| EngineError::Internal(format!("stored resource: {e}")))?;
        if h.kind == "pulumi:pulumi:Stack" && h.parent.is_none_or(str::is_empty) {
            outputs = Some(
                h.outputs
                    .map_or_else(|| "{}".to_owned(), |o| o.get().to_owned()),
            );
            break;
        }
    }
    Ok(StackOutputs {
        outputs: Some(outputs.unwrap_or_else(|| "{}".to_owned())),
        secrets_providers: d
            .secrets_providers
            .filter(|s| s.get() != "null")
            .map(|s| s.get().to_owned()),
        unknown: false,
        pending: false,
    })
}

impl Engine {
    pub async fn stack_outputs(
        &self,
        caller: &Identity,
        key: &StackKey,
        reading_update: Option<&str>,
    ) -> EngineResult<StackOutputs> {
        let stack = self.stack(caller, key).await?;
        let window = match reading_update {
            Some(r) => self.store.update_window(r).await?,
            None => None,
        };
        let mut unknown = false;
        if let Some(w) = window {
            let members = self.store.window_members(stack.id, &w).await?;
            let changing = members.iter().any(|m| {
                !m.dry_run
                    && Some(m.update_id.as_str()) != reading_update
                    && matches!(m.status, UpdateStatus::NotStarted | UpdateStatus::Running)
            });
            if changing {
                tracing::debug!(stack = %key, window = %w, "coherence window: outputs pending");
                return Ok(StackOutputs {
                    pending: true,
                    ..StackOutputs::default()
                });
            }
            // Members come in the order they joined; of those finished in the same second,
            // the one that joined last counts as the newest.
            let newest = members
                .iter()
                .filter(|m| m.status.is_finished())
                .max_by_key(|m| m.ended_at.unwrap_or(0));
            if let Some(m) = newest.filter(|m| m.dry_run) {
                match m
                    .recorded
                    .clone()
                    .filter(|_| m.status == UpdateStatus::Succeeded)
                {
                    Some(r) => {
                        return Ok(StackOutputs {
                            outputs: Some(r.outputs.unwrap_or_else(|| "{}".to_owned())),
                            secrets_providers: r.secrets_providers,
                            unknown: false,
                            pending: false,
                        });
                    }
                    None => unknown = true,
                }
            }
        }
        let export = self.export(caller, key, None).await?;
        let mut out = match (export.gz, export.plain) {
            (Some(gz), _) => run_sized(gz.len(), move || outputs_of(&gunzip_stored(&gz)?)).await?,
            (None, _) => StackOutputs::default(),
        };
        out.unknown = unknown && out.outputs.is_some();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_stack_outputs_are_taken_verbatim() {
        let d = br#"{"version":3,"deployment":{"secrets_providers":{"type":"service"},"resources":[
            {"urn":"u1","type":"pulumi:providers:x","outputs":{"no":1}},
            {"urn":"u2","type":"pulumi:pulumi:Stack","outputs":{"a":1.50e3,"s":{"4dabf18193072939515e22adb298388d":"1b47061264138c4ac30d75fd1eb44270","ciphertext":"x"}}}]}}"#;
        let o = outputs_of(d).unwrap();
        assert_eq!(
            o.outputs.unwrap(),
            r#"{"a":1.50e3,"s":{"4dabf18193072939515e22adb298388d":"1b47061264138c4ac30d75fd1eb44270","ciphertext":"x"}}"#
        );
        assert_eq!(o.secrets_providers.unwrap(), r#"{"type":"service"}"#);
        let empty = outputs_of(br#"{"version":3,"deployment":{"manifest":{}}}"#).unwrap();
        assert_eq!(empty.outputs.as_deref(), Some("{}"));
        assert!(outputs_of(br#"{"version":3}"#).unwrap().outputs.is_none());
    }
}
