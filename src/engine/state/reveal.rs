//! Secret values inside a deployment, found structurally. A secret is an object whose
//! signature key says so; it carries either `ciphertext` (base64, as stored) or `plaintext`
//! (the JSON text of the value, as `pulumi stack export --show-secrets` writes it).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::value::RawValue;

use crate::engine::crypto::StackSecretKey;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::state::rawjson::RawObject;

pub(crate) const SIG_KEY: &str = "4dabf18193072939515e22adb298388d";
/// The signature value as JSON text (quoted).
pub(crate) const SECRET_SIG: &str = "\"1b47061264138c4ac30d75fd1eb44270\"";

fn invalid(e: impl std::fmt::Display) -> EngineError {
    EngineError::Invalid(format!("the deployment is not valid: {e}"))
}

/// Rewrites every secret object `f` changes; everything else stays byte for byte.
fn walk(
    raw: &RawValue,
    f: &mut dyn FnMut(&RawObject) -> EngineResult<Option<RawObject>>,
) -> EngineResult<Option<Box<RawValue>>> {
    let text = raw.get().trim_start();
    if text.starts_with('{') {
        let mut obj = RawObject::parse(raw.get()).map_err(invalid)?;
        if obj.get(SIG_KEY).is_some_and(|v| v.get() == SECRET_SIG) {
            return Ok(f(&obj)?.map(|o| o.to_raw()));
        }
        let mut changed = Vec::new();
        for (k, v) in obj.fields() {
            if let Some(new) = walk(v, f)? {
                changed.push((k.clone(), new));
            }
        }
        if changed.is_empty() {
            return Ok(None);
        }
        for (k, v) in changed {
            obj.set_raw(&k, v);
        }
        Ok(Some(obj.to_raw()))
    } else if text.starts_with('[') {
        let items: Vec<Box<RawValue>> = serde_json::from_str(raw.get()).map_err(invalid)?;
        let mut any = false;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match walk(&item, f)? {
                Some(new) => {
                    any = true;
                    out.push(new);
                }
                None => out.push(item),
            }
        }
        if !any {
            return Ok(None);
        }
        let text = serde_json::to_string(&out).map_err(EngineError::internal)?;
        Ok(Some(
            RawValue::from_string(text).map_err(EngineError::internal)?,
        ))
    } else {
        Ok(None)
    }
}

fn rewrite(
    json: &[u8],
    f: &mut dyn FnMut(&RawObject) -> EngineResult<Option<RawObject>>,
) -> EngineResult<Vec<u8>> {
    let raw: Box<RawValue> = serde_json::from_slice(json).map_err(invalid)?;
    Ok(match walk(&raw, f)? {
        Some(new) => new.get().as_bytes().to_vec(),
        None => json.to_vec(),
    })
}

fn secret_object(field: &str, value: &str) -> EngineResult<RawObject> {
    let mut o = RawObject::parse(&format!("{{\"{SIG_KEY}\":{SECRET_SIG}}}")).map_err(invalid)?;
    o.set(field, value);
    Ok(o)
}

fn string_field(obj: &RawObject, key: &str) -> EngineResult<Option<String>> {
    obj.get(key)
        .map(|v| serde_json::from_str::<String>(v.get()).map_err(invalid))
        .transpose()
}

/// Replaces every ciphertext with its plaintext (`--show-secrets`).
pub fn reveal(json: &[u8], key: &StackSecretKey) -> EngineResult<(Vec<u8>, usize)> {
    let mut n = 0;
    let out = rewrite(json, &mut |obj| {
        let Some(ct) = string_field(obj, "ciphertext")? else {
            return Ok(None);
        };
        let bytes = B64.decode(ct).map_err(invalid)?;
        let plain = key.decrypt(&bytes).ok_or_else(|| {
            EngineError::Invalid("a secret does not decrypt with its stack's key".into())
        })?;
        let plain = String::from_utf8(plain)
            .map_err(|_| EngineError::Invalid("a decrypted secret is not UTF-8".into()))?;
        n += 1;
        secret_object("plaintext", &plain).map(Some)
    })?;
    Ok((out, n))
}

/// Encrypts every plaintext secret with `key` (importing a `--show-secrets` export).
pub fn conceal(json: &[u8], key: &StackSecretKey) -> EngineResult<(Vec<u8>, usize)> {
    let mut n = 0;
    let out = rewrite(json, &mut |obj| {
        let Some(plain) = string_field(obj, "plaintext")? else {
            return Ok(None);
        };
        n += 1;
        secret_object("ciphertext", &B64.encode(key.encrypt(plain.as_bytes()))).map(Some)
    })?;
    Ok((out, n))
}

/// Checks that every ciphertext opens with `key`; returns how many there are.
pub fn check_ciphertexts(json: &[u8], key: &StackSecretKey) -> EngineResult<usize> {
    let mut n = 0;
    rewrite(json, &mut |obj| {
        if let Some(ct) = string_field(obj, "ciphertext")? {
            let ok = B64.decode(ct).ok().and_then(|b| key.decrypt(&b)).is_some();
            if !ok {
                return Err(EngineError::Invalid(
                    "the deployment holds a secret this stack's key cannot decrypt".into(),
                ));
            }
            n += 1;
        }
        Ok(None)
    })?;
    Ok(n)
}

/// How many ciphertexts the deployment holds.
pub fn count_ciphertexts(json: &[u8]) -> EngineResult<usize> {
    let mut n = 0;
    rewrite(json, &mut |obj| {
        if obj.get("ciphertext").is_some() {
            n += 1;
        }
        Ok(None)
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reveal_and_conceal_round_trip() {
        let k = StackSecretKey::generate();
        let ct = B64.encode(k.encrypt(b"\"hush\""));
        let json = format!(
            r#"{{"a":[1.50,{{"s":{{"{SIG_KEY}":{SECRET_SIG},"ciphertext":"{ct}"}}}}],"b":"x"}}"#
        );
        let (shown, n) = reveal(json.as_bytes(), &k).unwrap();
        assert_eq!(n, 1);
        let text = String::from_utf8(shown.clone()).unwrap();
        assert!(text.contains(r#""plaintext":"\"hush\"""#), "{text}");
        assert!(text.contains("1.50"));
        assert_eq!(check_ciphertexts(&shown, &k).unwrap(), 0);
        let (hidden, n) = conceal(&shown, &k).unwrap();
        assert_eq!(n, 1);
        assert_eq!(check_ciphertexts(&hidden, &k).unwrap(), 1);
        let (again, _) = reveal(&hidden, &k).unwrap();
        assert_eq!(again, shown);
        assert!(check_ciphertexts(&hidden, &StackSecretKey::generate()).is_err());
    }
}
