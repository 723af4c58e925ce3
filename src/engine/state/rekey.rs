//! Moving a deployment between stacks of this instance: its secret values are encrypted with
//! the source stack's key, and its secrets provider names the source stack. When such a
//! deployment is imported into another stack, every ciphertext is re-encrypted with the target
//! stack's key and the provider is pointed at the target, so the state reads back with any CLI
//! version and keeps working after the source stack is gone.

use serde::Deserialize;

use crate::engine::crypto::StackSecretKey;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::state::rawjson::RawObject;
use crate::store::StackKey;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

#[derive(Deserialize)]
struct ProviderState {
    #[serde(default)]
    owner: String,
    #[serde(default)]
    project: String,
    #[serde(default)]
    stack: String,
}

#[derive(Deserialize)]
struct Provider {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    state: Option<ProviderState>,
}

#[derive(Deserialize)]
struct DeploymentHead {
    #[serde(default)]
    secrets_providers: Option<Provider>,
}

#[derive(Deserialize)]
struct UntypedHead {
    #[serde(default)]
    deployment: Option<DeploymentHead>,
}

/// The stack named by a deployment's "service" secrets provider, if it has one.
pub fn service_provider_stack(json: &[u8]) -> Option<StackKey> {
    let head: UntypedHead = serde_json::from_slice(json).ok()?;
    let p = head.deployment?.secrets_providers?;
    if p.kind != "service" {
        return None;
    }
    let s = p.state?;
    (!s.owner.is_empty() && !s.project.is_empty() && !s.stack.is_empty()).then_some(StackKey {
        org: s.owner,
        project: s.project,
        stack: s.stack,
    })
}

/// Finds every `"ciphertext": "<base64>"` member and replaces its value with `f(value)` when
/// `f` returns one. Only real object members match: inside a JSON string the quotes of such a
/// text would be escaped.
fn replace_ciphertexts(
    json: &[u8],
    mut f: impl FnMut(&str) -> EngineResult<Option<String>>,
) -> EngineResult<(Vec<u8>, usize)> {
    const KEY: &[u8] = b"\"ciphertext\"";
    let mut out = Vec::with_capacity(json.len() + json.len() / 16);
    let mut count = 0;
    let mut i = 0;
    while let Some(pos) = find(&json[i..], KEY) {
        let key_end = i + pos + KEY.len();
        let mut j = skip_ws(json, key_end);
        if json.get(j) != Some(&b':') {
            out.extend_from_slice(&json[i..key_end]);
            i = key_end;
            continue;
        }
        j = skip_ws(json, j + 1);
        if json.get(j) != Some(&b'"') {
            out.extend_from_slice(&json[i..key_end]);
            i = key_end;
            continue;
        }
        let start = j + 1;
        let Some(len) = json[start..].iter().position(|b| *b == b'"' || *b == b'\\') else {
            break;
        };
        let end = start + len;
        if json[end] == b'\\' {
            out.extend_from_slice(&json[i..key_end]);
            i = key_end;
            continue;
        }
        let value = std::str::from_utf8(&json[start..end]).unwrap_or("");
        out.extend_from_slice(&json[i..start]);
        match f(value)? {
            Some(new) => {
                out.extend_from_slice(new.as_bytes());
                count += 1;
            }
            None => out.extend_from_slice(value.as_bytes()),
        }
        i = end;
    }
    out.extend_from_slice(&json[i..]);
    Ok((out, count))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Re-encrypts the deployment's secrets from `from` to `to` and points its secrets provider
/// at `target`. Returns the new text and how many values were re-encrypted. A value that does
/// not open with `from` is refused: it would be unreadable afterwards.
pub fn rekey(
    json: &[u8],
    from: &StackSecretKey,
    to: &StackSecretKey,
    target: &StackKey,
) -> EngineResult<(Vec<u8>, usize)> {
    let (text, count) = replace_ciphertexts(json, |value| {
        let Ok(ct) = B64.decode(value) else {
            return Ok(None);
        };
        match from.decrypt(&ct) {
            Some(plain) => Ok(Some(B64.encode(to.encrypt(&plain)))),
            None => Err(EngineError::Invalid(
                "the deployment holds a secret that its secrets provider's stack cannot decrypt"
                    .into(),
            )),
        }
    })?;
    let text = point_provider_at(&text, target)?;
    Ok((text, count))
}

/// Rewrites `deployment.secrets_providers.state` to name `target`, keeping its other fields.
pub fn point_provider_at(json: &[u8], target: &StackKey) -> EngineResult<Vec<u8>> {
    let bad =
        |e: serde_json::Error| EngineError::Invalid(format!("the deployment is not valid: {e}"));
    let text = std::str::from_utf8(json)
        .map_err(|_| EngineError::Invalid("the deployment is not UTF-8".into()))?;
    let mut top = RawObject::parse(text).map_err(bad)?;
    let Some(dep) = top.get("deployment") else {
        return Ok(json.to_vec());
    };
    let mut dep = RawObject::parse(dep.get()).map_err(bad)?;
    let Some(sp) = dep.get("secrets_providers") else {
        return Ok(json.to_vec());
    };
    let mut sp = RawObject::parse(sp.get()).map_err(bad)?;
    let mut state = match sp.get("state") {
        Some(s) => RawObject::parse(s.get()).map_err(bad)?,
        None => RawObject::parse("{}").map_err(bad)?,
    };
    state.set("owner", &target.org);
    state.set("project", &target.project);
    state.set("stack", &target.stack);
    sp.set_raw("state", state.to_raw());
    dep.set_raw("secrets_providers", sp.to_raw());
    top.set_raw("deployment", dep.to_raw());
    let mut out = Vec::with_capacity(json.len());
    top.write_to(&mut out);
    Ok(out)
}

/// The index of the first byte at or after `i` that is not JSON whitespace.
fn skip_ws(json: &[u8], i: usize) -> usize {
    i + json.get(i..).map_or(0, |rest| {
        rest.iter().take_while(|b| b.is_ascii_whitespace()).count()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rekeys_every_ciphertext_and_the_provider() {
        let a = StackSecretKey::generate();
        let b = StackSecretKey::generate();
        let c1 = B64.encode(a.encrypt(b"one"));
        let c2 = B64.encode(a.encrypt(b"two"));
        let json = format!(
            r#"{{"version":3,"deployment":{{"manifest":{{}},"secrets_providers":{{"type":"service","state":{{"url":"u","owner":"o","project":"p","stack":"a"}}}},
            "resources":[{{"urn":"x","type":"t","outputs":{{"s":{{"4dabf18193072939515e22adb298388d":"1b47061264138c4ac30d75fd1eb44270","ciphertext": "{c1}"}},
            "n":1.0e2,"text":"\"ciphertext\":\"not-a-secret\"","t":{{"4dabf18193072939515e22adb298388d":"1b47061264138c4ac30d75fd1eb44270","ciphertext":"{c2}"}}}}}}]}}}}"#
        );
        assert_eq!(
            service_provider_stack(json.as_bytes()),
            Some(StackKey {
                org: "o".into(),
                project: "p".into(),
                stack: "a".into()
            })
        );
        let target = StackKey {
            org: "o".into(),
            project: "q".into(),
            stack: "b".into(),
        };
        let (out, n) = rekey(json.as_bytes(), &a, &b, &target).unwrap();
        assert_eq!(n, 2);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("1.0e2"));
        assert!(text.contains(r#"\"ciphertext\":\"not-a-secret\""#));
        assert_eq!(service_provider_stack(text.as_bytes()), Some(target));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let new = v["deployment"]["resources"][0]["outputs"]["s"]["ciphertext"]
            .as_str()
            .unwrap();
        assert_eq!(b.decrypt(&B64.decode(new).unwrap()).unwrap(), b"one");
        assert_eq!(v["deployment"]["secrets_providers"]["state"]["url"], "u");
        // A value the source key cannot open is refused.
        let foreign = json.replace(&c1, &B64.encode(b.encrypt(b"x")));
        assert!(
            rekey(
                foreign.as_bytes(),
                &a,
                &b,
                &StackKey {
                    org: "o".into(),
                    project: "q".into(),
                    stack: "b".into()
                }
            )
            .is_err()
        );
    }
}
