//! JSON objects edited without re-encoding what is not edited.
//!
//! Resources are stored as the exact text the CLI sent. When the engine must change a field
//! (mark a resource for deletion, rewrite an aliased URN, prune dependencies after a refresh),
//! it parses only the top level of the object into raw values, replaces the fields it changes,
//! and writes the rest back byte for byte: numbers, escapes and key order elsewhere survive.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// The top level of a JSON object: keys in their original order, values as raw text.
pub struct RawObject {
    fields: Vec<(String, Box<RawValue>)>,
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    fields.push((k, v));
                }
                Ok(RawObject { fields })
            }
        }
        d.deserialize_map(V)
    }
}

impl RawObject {
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The fields in their original order.
    pub fn fields(&self) -> impl Iterator<Item = (&String, &RawValue)> {
        self.fields.iter().map(|(k, v)| (k, v.as_ref()))
    }

    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// Sets `key` to the JSON text `value` (appending the key when absent).
    pub fn set_raw(&mut self, key: &str, value: Box<RawValue>) {
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.fields.push((key.to_owned(), value)),
        }
    }

    /// Sets `key` to the JSON encoding of `value`.
    pub fn set<T: serde::Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        let text = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
        // Serialising a value always yields valid JSON.
        if let Ok(raw) = RawValue::from_string(text) {
            self.set_raw(key, raw);
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.fields.retain(|(k, _)| k != key);
    }

    /// Writes the object back: untouched values are copied verbatim.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // Keys came from valid JSON and re-encode to valid JSON.
            out.extend_from_slice(
                serde_json::to_string(k)
                    .unwrap_or_else(|_| "\"\"".into())
                    .as_bytes(),
            );
            out.push(b':');
            out.extend_from_slice(v.get().as_bytes());
        }
        out.push(b'}');
    }

    pub fn to_raw(&self) -> Box<RawValue> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        // The text is a well-formed object built from well-formed parts.
        RawValue::from_string(String::from_utf8(out).unwrap_or_else(|_| "{}".into()))
            .unwrap_or_else(|_| RawValue::from_string("{}".into()).expect("valid JSON"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_leave_everything_else_byte_exact() {
        let text = r#"{"urn":"a","n":1.50e3,"s":"\u00e9\n","nested":{"b":2,"a":1}}"#;
        let mut o = RawObject::parse(text).unwrap();
        o.set("delete", &true);
        o.set("urn", "b");
        let mut out = Vec::new();
        o.write_to(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"urn":"b","n":1.50e3,"s":"\u00e9\n","nested":{"b":2,"a":1},"delete":true}"#
        );
        o.remove("n");
        assert!(o.get("n").is_none());
        assert_eq!(o.get("nested").unwrap().get(), r#"{"b":2,"a":1}"#);
    }
}
