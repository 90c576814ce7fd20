//! The model written as the TOML file `rtgt serve --config` reads.

use super::model::Doc;

impl Doc {
    /// The document as the TOML file `rtgt serve --config` reads. Without
    /// `secrets`, inline CHAP secrets are left out (files are named).
    pub fn to_toml(&self, secrets: bool) -> String {
        let shown;
        let doc = if secrets {
            self
        } else {
            shown = self.redacted();
            &shown
        };
        let mut body = String::new();
        if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(doc) {
            write_table(&mut body, "", &m);
        }
        let hidden = !secrets && *doc != *self;
        let mut out = String::from(
            "# rtgt configuration (written by rtgt; `rtgt serve --config` reads it)\n",
        );
        if hidden {
            out.push_str(
                "# Inline CHAP secrets are left out; `rtgt config dump --secrets` shows them.\n",
            );
        }
        out.push_str(&body);
        out
    }
}

// The document is written as TOML here rather than by the `toml` crate's
// serializer, which takes about 10 ms for a thousand LUNs: the file is
// rewritten after every change, so that would be most of the cost of one.
// It goes through serde_json's value tree (field order kept), and the
// tests read what it writes back with the real parser.

/// Write the keys of `m`: plain values first, then tables, then arrays
/// of tables, so that every key lands in the table it belongs to.
fn write_table(out: &mut String, path: &str, m: &serde_json::Map<String, serde_json::Value>) {
    use serde_json::Value;
    let is_tables = |v: &Value| match v {
        Value::Array(a) => !a.is_empty() && a.iter().all(Value::is_object),
        _ => false,
    };
    for (k, v) in m {
        if v.is_null() || v.is_object() || is_tables(v) {
            continue;
        }
        out.push_str(&toml_key(k));
        out.push_str(" = ");
        write_value(out, v);
        out.push('\n');
    }
    let sub = |k: &str| {
        if path.is_empty() {
            toml_key(k)
        } else {
            format!("{path}.{}", toml_key(k))
        }
    };
    for (k, v) in m {
        if let Value::Object(t) = v {
            out.push_str(&format!("\n[{}]\n", sub(k)));
            write_table(out, &sub(k), t);
        }
    }
    for (k, v) in m {
        if let (true, Value::Array(a)) = (is_tables(v), v) {
            for t in a.iter().filter_map(Value::as_object) {
                out.push_str(&format!("\n[[{}]]\n", sub(k)));
                write_table(out, &sub(k), t);
            }
        }
    }
}

fn write_value(out: &mut String, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => toml_string(out, s),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, x);
            }
            out.push(']');
        }
        // Tables inside arrays of values do not occur in the document.
        Value::Object(_) | Value::Null => out.push_str("{}"),
    }
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        let mut s = String::new();
        toml_string(&mut s, k);
        s
    }
}

/// A TOML basic string.
fn toml_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
