//! docs/config.md, the configuration file reference, generated from the
//! model's own schema (the types in [`super::model`] and their doc
//! comments, as the control API's OpenAPI document carries them), so the
//! file format, the API and the docs cannot drift. The test fails when
//! the file is stale; `UPDATE_DOCS=1 cargo test -p rtgt --lib reference`
//! rewrites it.

use serde_json::Value;
use utoipa::OpenApi;

const HEAD: &str = "# Configuration file reference

`rtgt serve --config FILE` reads this TOML file (`rtgt check FILE` checks
it). The control API's JSON (`GET /api/v1/config`) is the same model, so
what is said here holds for both. This file is generated from the model's
types (`crates/rtgt/src/config/model.rs`); the rules that span several
values are in `crates/rtgt/src/config/validate.rs` and listed at the end.

A bad file is refused with `FILE:LINE: what is wrong` and exit status 2.
";

const RULES: &str = "
## Rules across values

- Backstore names are unique; target IQNs are unique (without case); tpg
  tags are unique within a target and 1..65535; LUN numbers are unique
  within a tpg and 0..16383; an initiator has at most one ACL per tpg;
  mapped LUNs are unique per ACL and name a LUN of the tpg.
- `size` is a non-zero multiple of `block_size`; a ramdisk needs a size,
  fileio and blockio a path; blockio takes neither size nor block_size
  (the device has them); `write_back` is for fileio only.
- `sanitize_rate` is 0 or at least 1M (bytes per second).
- Two LUs never share a `serial` or an `naa` (set or derived).
- CHAP: a secret has 12..255 bytes; inline or in a file, not both; a
  password file is mode 0600 or stricter; a file with inline secrets must
  itself be private (mode 0600); a mutual secret is never the initiator's,
  and no secret authenticates both an initiator and the target anywhere
  in the file (RFC 7143 9.2.1).
- `relative_port_id`s are unique; `demo_read_only` needs `mode = \"demo\"`.
";

/// Tables of the file: (header, schema name).
fn tables(schemas: &serde_json::Map<String, Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![(String::new(), "Doc".to_string(), false)];
    while let Some((path, name, many)) = todo.pop() {
        if !path.is_empty() {
            let header = if many {
                format!("[[{path}]]")
            } else {
                format!("[{path}]")
            };
            out.push((header, name.clone()));
        }
        let Some(props) = schemas[&name]["properties"].as_object() else {
            continue;
        };
        let mut children = Vec::new();
        for (k, p) in props {
            let sub = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if let Some(r) = object_ref(p, schemas) {
                children.push((sub, r, false));
            } else if let Some(r) = p["items"].get("$ref").and_then(Value::as_str) {
                let r = r.rsplit('/').next().unwrap_or("").to_string();
                if schemas[&r]["type"] == "object" {
                    children.push((sub, r, true));
                }
            }
        }
        todo.extend(children.into_iter().rev());
    }
    out
}

/// The object schema a property refers to (directly or as `oneOf` null).
fn object_ref(p: &Value, schemas: &serde_json::Map<String, Value>) -> Option<String> {
    let r = p
        .get("$ref")
        .or_else(|| p["oneOf"].as_array()?.iter().find_map(|x| x.get("$ref")))?;
    let name = r.as_str()?.rsplit('/').next()?.to_string();
    (schemas.get(&name)?["type"] == "object").then_some(name)
}

fn type_of(p: &Value, schemas: &serde_json::Map<String, Value>) -> String {
    let r = p
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next());
    if let Some(name) = r {
        if let Some(e) = schemas[name]["enum"].as_array() {
            let v: Vec<String> = e
                .iter()
                .map(|x| format!("`\"{}\"`", x.as_str().unwrap_or("")))
                .collect();
            return v.join(" \\| ");
        }
    }
    match &p["type"] {
        Value::String(t) => t.clone(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join("/"),
        _ => "table".into(),
    }
    .replace(
        "array",
        &format!(
            "list of {}",
            p["items"]["type"].as_str().unwrap_or("tables")
        ),
    )
}

/// The configuration reference (docs/config.md) as Markdown.
pub fn render() -> String {
    let api = serde_json::to_value(crate::control::api::ApiDoc::openapi()).unwrap_or_default();
    let schemas = api["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut out = String::from(HEAD);
    for (header, name) in tables(&schemas) {
        let s = &schemas[&name];
        out.push_str(&format!("\n## `{header}`\n\n"));
        if let Some(d) = s["description"].as_str() {
            out.push_str(&format!("{d}\n\n"));
        }
        out.push_str("| key | type | required | meaning |\n| --- | --- | --- | --- |\n");
        let required: Vec<&str> = s["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (k, p) in s["properties"].as_object().into_iter().flatten() {
            let nested = object_ref(p, &schemas).is_some() || p["items"].get("$ref").is_some();
            if nested {
                continue;
            }
            let mut meaning = p["description"].as_str().unwrap_or("").replace('\n', " ");
            if let Some(pat) = p["pattern"].as_str() {
                meaning.push_str(&format!(" (pattern `{pat}`)"));
            }
            out.push_str(&format!(
                "| `{k}` | {} | {} | {} |\n",
                type_of(p, &schemas),
                if required.contains(&k.as_str()) {
                    "yes"
                } else {
                    ""
                },
                meaning.replace('|', "\\|")
            ));
        }
    }
    out.push_str(RULES);
    out
}

/// The check every generated document shares: `docs/NAME` (of the
/// repository) is `want`, or, with `UPDATE_DOCS` set, becomes it. `update`
/// is the command that regenerates it, named when the file is stale.
#[doc(hidden)]
pub fn check_generated_doc(name: &str, want: &str, update: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(name);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/{name} is stale: run UPDATE_DOCS=1 {update}"
    );
}

#[test]
fn config_reference_is_current() {
    check_generated_doc("config.md", &render(), "cargo test -p rtgt --lib reference");
}
