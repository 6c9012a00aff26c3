//! The binary with a schema of the user's own: the official JSON Schema
//! Test Suite (draft 2020-12), a schema and corpus the project did not
//! write, goes through `sluicegate run --schema` on the real broker, and
//! the outcome is reconciled from the broker and the table, never from the
//! binary's counters: exactly the instances the suite marks valid are
//! stored (and produced), exactly the invalid ones are dead-lettered, each
//! with a reason naming a path that exists in the instance and a keyword
//! the schema uses, and the group committed everything. Also: a schema that
//! cannot be used exits 3 naming `validate.schema`, and the transform's
//! fields come from the settings.
//!
//! The suite comes from PyPI through `scripts/json-schema-suite` (cached).
//! Each suite schema is one run of the binary, a few seconds each, so by
//! default the runs cover the files in [`DEFAULT_FILES`] (every schema and
//! case in them); `SLUICEGATE_SCHEMA_SUITE=all` runs every required file.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use sluicegate_stages::validate::{SchemaError, SchemaValidator};

/// The suite files run by default: the keyword families a record schema
/// uses most (types, required and additional properties, numbers, strings,
/// enumerations, arrays, combinators, conditionals, references, boolean
/// schemas and unevaluated properties).
const DEFAULT_FILES: &[&str] = &[
    "additionalProperties.json",
    "anyOf.json",
    "boolean_schema.json",
    "enum.json",
    "if-then-else.json",
    "items.json",
    "maximum.json",
    "minLength.json",
    "oneOf.json",
    "pattern.json",
    "properties.json",
    "ref.json",
    "required.json",
    "type.json",
    "unevaluatedProperties.json",
];

/// Binaries running at once (each mostly waits on the broker; a run takes
/// about a second).
const PARALLEL: usize = 6;

/// The suite's directory (with `tests/` and `remotes/`), fetched if needed.
fn suite_dir() -> PathBuf {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/json-schema-suite"
    );
    let out = Command::new(script)
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

/// One schema of the suite and its cases.
struct Group {
    name: String,
    schema: Value,
    /// (instance, valid) in the suite's order.
    cases: Vec<(Value, bool)>,
}

/// The selected groups, and how many were left out because their schema
/// references documents on the suite's own web server (the binary fetches
/// nothing; that refusal is checked below).
fn groups() -> (Vec<Group>, usize) {
    let dir = suite_dir().join("tests/draft2020-12");
    let all = std::env::var("SLUICEGATE_SCHEMA_SUITE").is_ok_and(|v| v == "all");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json") && n != "refRemote.json")
        .filter(|n| all || DEFAULT_FILES.contains(&n.as_str()))
        .collect();
    files.sort();
    if !all {
        assert_eq!(
            files.len(),
            DEFAULT_FILES.len(),
            "suite files in {}",
            dir.display()
        );
    }
    let mut groups = Vec::new();
    let mut remote = 0;
    for file in files {
        let text = std::fs::read_to_string(dir.join(&file)).expect("suite file");
        let suite: Vec<Value> = serde_json::from_str(&text).expect("suite file is JSON");
        for g in suite {
            if matches!(
                SchemaValidator::new(&g["schema"]),
                Err(SchemaError::Reference { ref message, .. }) if message.contains("http://localhost:1234/")
            ) {
                remote += 1;
                continue;
            }
            groups.push(Group {
                name: format!("{file}: {}", g["description"]),
                schema: g["schema"].clone(),
                cases: g["tests"]
                    .as_array()
                    .expect("tests")
                    .iter()
                    .map(|t| (t["data"].clone(), t["valid"].as_bool().expect("valid")))
                    .collect(),
            });
        }
    }
    (groups, remote)
}

/// Whether `key` is a key of some object anywhere in `v`.
fn uses_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(m) => m.contains_key(key) || m.values().any(|x| uses_key(x, key)),
        Value::Array(a) => a.iter().any(|x| uses_key(x, key)),
        _ => false,
    }
}

/// Whether `v` has the boolean schema `false` anywhere.
fn has_false(v: &Value) -> bool {
    match v {
        Value::Bool(false) => true,
        Value::Object(m) => m.values().any(has_false),
        Value::Array(a) => a.iter().any(has_false),
        _ => false,
    }
}

/// Whether `v` refers to the specification's own documents (meta-schemas),
/// whose keywords can then fail too.
fn refers_to_meta_schemas(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains("json-schema.org"),
        Value::Object(m) => m.values().any(refers_to_meta_schemas),
        Value::Array(a) => a.iter().any(refers_to_meta_schemas),
        _ => false,
    }
}

/// The path and keyword of a reason's first violation:
/// `path "<JSON Pointer>": keyword <keyword>: <message>`.
fn first_violation(reason: &str) -> Option<(String, String)> {
    let rest = reason.strip_prefix("path ")?;
    let mut strings = serde_json::Deserializer::from_str(rest).into_iter::<String>();
    let path = strings.next()?.ok()?;
    let rest = rest[strings.byte_offset()..].strip_prefix(": keyword ")?;
    let (keyword, _) = rest.split_once(": ")?;
    Some((path, keyword.to_string()))
}

/// Rows of the `events` table of the SQLite file at `db`: origin → payload.
fn sqlite_rows_by_origin(db: &Path) -> BTreeMap<(i32, i64), Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys\nfor (p,o,j) in sqlite3.connect(sys.argv[1]).execute('select \"partition\",\"offset\",payload from events'): print(p, o, j, sep='\\t')",
        ])
        .arg(db)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "reading {}: {}",
        db.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let mut next = || f.next().unwrap_or_else(|| panic!("a row: {l:?}"));
            let p = next().parse().expect("partition");
            let o = next().parse().expect("offset");
            let v = serde_json::from_str(next()).expect("payload is JSON");
            ((p, o), v)
        })
        .collect()
}

/// A stored or produced record without what the transform adds (with no
/// fields to pseudonymise or convert, only the fingerprint of an object).
fn untransformed(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        assert!(
            m.remove("fingerprint").is_some(),
            "an object without its fingerprint: {v}"
        );
    }
    v
}

/// Produces each topic's payloads to its partition 0, with one producer;
/// their offsets, per topic.
fn produce(brokers: &str, batches: &[(&str, Vec<String>)]) -> Vec<Vec<i64>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    runtime.block_on(async {
        // All sent at once (idempotent: in order, no duplicates), then awaited.
        let sent: Vec<Vec<_>> = batches
            .iter()
            .map(|(topic, payloads)| {
                payloads
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let key = format!("case-{i}");
                        producer
                            .send_result(FutureRecord::to(topic).partition(0).key(&key).payload(p))
                            .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"))
                    })
                    .collect()
            })
            .collect();
        let mut offsets = Vec::new();
        for (deliveries, (topic, _)) in sent.into_iter().zip(batches) {
            let mut topic_offsets = Vec::new();
            for delivery in deliveries {
                let delivery = delivery
                    .await
                    .expect("the producer is alive")
                    .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
                topic_offsets.push(delivery.offset);
            }
            offsets.push(topic_offsets);
        }
        offsets
    })
}

/// Runs one suite schema through the binary and reconciles; the number of
/// cases checked.
fn run_group(
    g: &Group,
    topics: &(String, String, String),
    offsets: &[i64],
    dir: &Path,
    i: usize,
) -> usize {
    let (input, output, dead_letters) = topics;
    let by_origin: BTreeMap<(i32, i64), usize> = offsets
        .iter()
        .enumerate()
        .map(|(c, &o)| ((0, o), c))
        .collect();

    let schema = dir.join(format!("schema-{i}.json"));
    std::fs::write(&schema, g.schema.to_string()).expect("schema file");
    let db = dir.join(format!("suite-{i}.db"));
    let store = format!("sqlite://{}", db.display());
    let group = format!("schema-suite-{}-{i}", std::process::id());
    let args = [
        "run",
        "--brokers",
        REAL_BROKER,
        "--group",
        &group,
        "--input-topic",
        input,
        "--output-topic",
        output,
        "--dead-letter-topic",
        dead_letters,
        "--store",
        &store,
        "--schema",
        schema.to_str().expect("utf-8 path"),
        "--pseudonymise",
        "",
        "--cents",
        "",
        "--until-caught-up",
        "--http",
        "off",
        "--quiet",
        "--commit-interval-ms",
        "100",
    ];
    let out = run(&args, &g.name);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}: stderr:\n{}",
        g.name,
        stderr(&out)
    );

    // Expected, from the suite.
    let want_stored: BTreeSet<(i32, i64)> = by_origin
        .iter()
        .filter(|(_, c)| g.cases[**c].1)
        .map(|(at, _)| *at)
        .collect();
    let want_dead: BTreeSet<(i32, i64)> = by_origin
        .keys()
        .filter(|at| !want_stored.contains(at))
        .copied()
        .collect();

    // The table: exactly the valid instances, as they were.
    let rows = sqlite_rows_by_origin(&db);
    let stored: BTreeSet<(i32, i64)> = rows.keys().copied().collect();
    assert_eq!(stored, want_stored, "{}: the stored origins", g.name);
    for (at, payload) in &rows {
        let want = &g.cases[by_origin[at]].0;
        assert_eq!(
            &untransformed(payload.clone()),
            want,
            "{}: the row at {at:?}",
            g.name
        );
    }

    // The dead letters: exactly the invalid instances, each with a reason
    // naming a path in the instance and a keyword of the schema.
    let dead_msgs = read_topic(REAL_BROKER, dead_letters, "read_uncommitted", PATIENCE);
    let mut dead = BTreeSet::new();
    for d in &dead_msgs {
        let at = d.origin();
        let case = &g.cases[*by_origin
            .get(&at)
            .unwrap_or_else(|| panic!("{}: a dead letter of no input: {d:?}", g.name))];
        assert_eq!(
            d.headers.get("sluicegate.stage").map(String::as_str),
            Some("validate"),
            "{}: {d:?}",
            g.name
        );
        let reason = d
            .headers
            .get("sluicegate.error")
            .cloned()
            .unwrap_or_default();
        let (path, keyword) = first_violation(&reason)
            .unwrap_or_else(|| panic!("{}: a reason without path and keyword: {reason:?}", g.name));
        assert!(
            case.0.pointer(&path).is_some(),
            "{}: the reason's path {path:?} is not in the instance {}: {reason}",
            g.name,
            case.0
        );
        assert!(
            uses_key(&g.schema, &keyword)
                || (keyword == "falseSchema" && has_false(&g.schema))
                || refers_to_meta_schemas(&g.schema),
            "{}: the reason's keyword {keyword:?} is not in the schema {}: {reason}",
            g.name,
            g.schema
        );
        dead.insert(at);
    }
    assert_eq!(dead, want_dead, "{}: the dead-lettered origins", g.name);

    // The output topic: the valid instances again (as a multiset).
    let canonical = |v: &Value| v.to_string();
    let mut produced: Vec<String> = read_topic(REAL_BROKER, output, "read_uncommitted", PATIENCE)
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_slice(&m.payload).expect("output is JSON");
            canonical(&untransformed(v))
        })
        .collect();
    let mut want_produced: Vec<String> = g
        .cases
        .iter()
        .filter(|(_, valid)| *valid)
        .map(|(d, _)| canonical(d))
        .collect();
    produced.sort();
    want_produced.sort();
    assert_eq!(produced, want_produced, "{}: the output topic", g.name);

    assert_eq!(
        committed_offsets(REAL_BROKER, &group, input),
        end_offsets(REAL_BROKER, input),
        "{}: the group committed everything",
        g.name
    );
    g.cases.len()
}

#[test]
fn the_json_schema_test_suite_through_the_binary_reconciles() {
    let (groups, remote) = groups();
    let unique = format!(
        "suite-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let topics: Vec<(String, String, String)> = (0..groups.len())
        .map(|i| {
            (
                format!("{unique}-{i}-in"),
                format!("{unique}-{i}-out"),
                format!("{unique}-{i}-dlq"),
            )
        })
        .collect();
    let names: Vec<(&str, i32)> = topics
        .iter()
        .flat_map(|(a, b, c)| [(a.as_str(), 1), (b.as_str(), 1), (c.as_str(), 1)])
        .collect();
    create_topics(REAL_BROKER, &names);
    let inputs: Vec<(&str, Vec<String>)> = groups
        .iter()
        .zip(&topics)
        .map(|(g, (input, _, _))| {
            (
                input.as_str(),
                g.cases.iter().map(|(d, _)| d.to_string()).collect(),
            )
        })
        .collect();
    let offsets = produce(REAL_BROKER, &inputs);
    let dir = tempfile::tempdir().expect("tempdir");

    let next = Mutex::new(0..groups.len());
    let cases = Mutex::new(0usize);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| {
                loop {
                    let Some(i) = next.lock().expect("lock").next() else {
                        return;
                    };
                    let n = run_group(&groups[i], &topics[i], &offsets[i], dir.path(), i);
                    *cases.lock().expect("lock") += n;
                }
            });
        }
    });
    let cases = cases.into_inner().expect("lock");
    let valid: usize = groups
        .iter()
        .map(|g| g.cases.iter().filter(|c| c.1).count())
        .sum();
    println!(
        "{} suite schemas ({remote} left out: they reference the suite's server), {cases} instances: {valid} stored and produced, {} dead-lettered with a path and keyword; every one as the suite says",
        groups.len(),
        cases - valid
    );
    assert_eq!(cases, groups.iter().map(|g| g.cases.len()).sum::<usize>());
}
