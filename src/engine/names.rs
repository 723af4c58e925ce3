//! Validation of the names that appear in URLs and tags. The CLI validates the same rules
//! before it calls; a server must still refuse anything else, since names become part of
//! stored keys and of the paths the CLI later builds from them.

use crate::engine::error::{EngineError, EngineResult};
use crate::store::{StackKey, Tags};

fn name_chars_ok(s: &str, extra: &[u8]) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || extra.contains(&b))
}

/// Organization names: an alphanumeric first character, then alphanumerics, `-`, `_`, `.`;
/// at most 100 characters.
pub fn check_org(org: &str) -> EngineResult<()> {
    let ok = !org.is_empty()
        && org.len() <= 100
        && org.as_bytes()[0].is_ascii_alphanumeric()
        && name_chars_ok(org, b".");
    if ok {
        Ok(())
    } else {
        Err(EngineError::Invalid(format!(
            "invalid organization name {org:?}: use letters, digits, '-', '_' and '.', \
             starting with a letter or digit"
        )))
    }
}

fn check_segment(kind: &str, s: &str) -> EngineResult<()> {
    let ok = !s.is_empty() && s.len() <= 100 && s != "." && s != ".." && name_chars_ok(s, b".");
    if ok {
        Ok(())
    } else {
        Err(EngineError::Invalid(format!(
            "invalid {kind} name {s:?}: use 1 to 100 letters, digits, '-', '_' and '.'"
        )))
    }
}

pub fn check_project(project: &str) -> EngineResult<()> {
    check_segment("project", project)
}

pub fn check_stack(stack: &str) -> EngineResult<()> {
    check_segment("stack", stack)
}

pub fn check_key(key: &StackKey) -> EngineResult<()> {
    check_org(&key.org)?;
    check_project(&key.project)?;
    check_stack(&key.stack)
}

/// Most tags a stack may carry.
pub const MAX_TAGS: usize = 200;

/// At most [`MAX_TAGS`] tags; names `[A-Za-z0-9-_.:]{1,40}`, values at most 256 characters.
pub fn check_tags(tags: &Tags) -> EngineResult<()> {
    if tags.len() > MAX_TAGS {
        return Err(EngineError::Invalid(format!(
            "a stack may have at most {MAX_TAGS} tags ({} given)",
            tags.len()
        )));
    }
    for (name, value) in tags {
        if name.is_empty() || name.len() > 40 || !name_chars_ok(name, b".:") {
            return Err(EngineError::Invalid(format!(
                "invalid tag name {name:?}: use 1 to 40 letters, digits, '-', '_', '.' and ':'"
            )));
        }
        if value.chars().count() > 256 {
            return Err(EngineError::Invalid(format!(
                "the value of tag {name:?} is longer than 256 characters"
            )));
        }
    }
    Ok(())
}

/// A coherence window id: 1 to 256 printable ASCII characters.
pub fn check_window(w: &str) -> EngineResult<()> {
    if w.is_empty() || w.len() > 256 || !w.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(EngineError::Invalid(
            "invalid coherence window: use 1 to 256 printable ASCII characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_path_tricks() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\\b",
            "a b",
            "a%2fb",
            "ü",
            &"x".repeat(101),
        ] {
            assert!(check_stack(bad).is_err(), "{bad:?}");
            assert!(check_project(bad).is_err(), "{bad:?}");
        }
        assert!(check_org("-lead").is_err());
        assert!(check_org("..").is_err());
        for good in ["dev", "my-stack_1.2", "A"] {
            assert!(check_stack(good).is_ok());
        }
        assert!(check_org("acme-corp").is_ok());
    }

    #[test]
    fn tags() {
        let mut t = Tags::new();
        t.insert("pulumi:project".into(), "p".into());
        assert!(check_tags(&t).is_ok());
        t.insert("bad tag".into(), "x".into());
        assert!(check_tags(&t).is_err());
        let mut t = Tags::new();
        t.insert("k".into(), "v".repeat(257));
        assert!(check_tags(&t).is_err());
    }
}
