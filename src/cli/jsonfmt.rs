//! JSON laid out the way `pulumi stack export` prints it (Go's `json.Encoder` with
//! `SetIndent("", "    ")` and HTML escaping off): insignificant whitespace removed, then
//! four-space indentation, `"key": value`, empty objects and arrays kept as `{}` and `[]`,
//! a trailing newline. String contents, numbers and key order are left exactly as they are.

/// Re-indents valid JSON text.
pub fn go_indent(src: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() + src.len() / 4);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    // The last byte written that opened a container, to keep `{}` and `[]` compact.
    let mut just_opened = false;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        for _ in 0..depth {
            out.extend_from_slice(b"    ");
        }
    };
    for &c in src {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            continue;
        }
        if c.is_ascii_whitespace() {
            continue;
        }
        if just_opened {
            just_opened = false;
            if c == b'}' || c == b']' {
                depth -= 1;
                out.push(c);
                continue;
            }
            newline(&mut out, depth);
        }
        match c {
            b'{' | b'[' => {
                out.push(c);
                depth += 1;
                just_opened = true;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            b',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            b'"' => {
                out.push(c);
                in_string = true;
            }
            _ => out.push(c),
        }
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_go_layout() {
        let src = br#"{"version":3,"deployment":{"a":[],"b":{},"c":[1, 2.50e3],"d":"x:{,}\"y"}}"#;
        let want = "{\n    \"version\": 3,\n    \"deployment\": {\n        \"a\": [],\n        \"b\": {},\n        \"c\": [\n            1,\n            2.50e3\n        ],\n        \"d\": \"x:{,}\\\"y\"\n    }\n}\n";
        assert_eq!(String::from_utf8(go_indent(src)).unwrap(), want);
    }
}
