//! The official JSON Schema Test Suite, for the tests that feed it to the
//! validator (crates/stages/tests/schema_suite.rs) and to the binary
//! (tests/schema.rs): where it is, and what its schemas use.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The suite's directory (with `tests/` and `remotes/`), fetched by
/// `scripts/json-schema-suite` if needed (cached after the first time).
pub fn suite_dir() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("scripts/json-schema-suite"))
        .find(|script| script.exists())
        .expect("scripts/json-schema-suite above the package");
    let out = Command::new(&script)
        .output()
        .expect("running scripts/json-schema-suite");
    assert!(
        out.status.success(),
        "scripts/json-schema-suite could not fetch the JSON Schema Test Suite: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("the suite's directory")
            .trim(),
    )
}

/// Whether `key` is a key of some object anywhere in `v`.
pub fn uses_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(m) => m.contains_key(key) || m.values().any(|x| uses_key(x, key)),
        Value::Array(a) => a.iter().any(|x| uses_key(x, key)),
        _ => false,
    }
}

/// Whether `v` has the boolean schema `false` anywhere.
pub fn has_false(v: &Value) -> bool {
    match v {
        Value::Bool(false) => true,
        Value::Object(m) => m.values().any(has_false),
        Value::Array(a) => a.iter().any(has_false),
        _ => false,
    }
}

/// Whether `v` refers to one of the specification's own documents (the
/// meta-schemas), whose keywords can then fail too.
pub fn refers_to_meta_schemas(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains("json-schema.org"),
        Value::Object(m) => m.values().any(refers_to_meta_schemas),
        Value::Array(a) => a.iter().any(refers_to_meta_schemas),
        _ => false,
    }
}
