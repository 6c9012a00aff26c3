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

#[path = "../crates/stages/tests/support/json_schema_suite.rs"]
mod json_schema_suite;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use json_schema_suite::{has_false, refers_to_meta_schemas, suite_dir, uses_key};
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

#[test]
fn a_schema_that_cannot_be_used_exits_3_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let missing = dir.path().join("missing.json").display().to_string();
    let not_json = file("broken.json", "{\"type\": \"object\",}");
    let invalid = file(
        "invalid.json",
        r#"{"properties": {"amount": {"minimum": "zero"}}}"#,
    );
    let remote = file(
        "remote.json",
        r#"{"$ref": "https://example.com/order.json"}"#,
    );
    let config = file(
        "config.toml",
        &format!("[validate]\nschema = {invalid:?}\n"),
    );
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--schema", &missing],
            format!("invalid setting validate.schema: cannot read schema file {missing}: "),
        ),
        (
            vec!["--schema", &not_json],
            format!(
                "invalid setting validate.schema: {not_json}: not JSON: trailing comma at line 1 column 19"
            ),
        ),
        (
            vec!["--schema", &invalid],
            format!(
                r#"invalid setting validate.schema: {invalid}: not a valid draft 2020-12 schema: at "/properties/amount/minimum": "zero" is not of type "number""#
            ),
        ),
        (
            vec!["--config", &config],
            format!(
                r#"invalid setting validate.schema: {invalid}: not a valid draft 2020-12 schema: at "/properties/amount/minimum""#
            ),
        ),
        (
            vec!["--schema", &remote],
            format!(
                "invalid setting validate.schema: {remote}: unresolvable reference: Resource 'https://example.com/order.json'"
            ),
        ),
        (
            vec!["--max-payload-bytes", "0"],
            "invalid setting validate.max_payload_bytes: must be at least 1".into(),
        ),
        (
            vec!["--cents-field", "email"],
            "invalid setting transform.cents_field: \"email\" would overwrite a field the transform reads".into(),
        ),
    ];
    for (flags, want) in cases {
        // No --brokers: the embedded default, which would generate its
        // input first; a bad schema stops the run before that.
        let mut args = vec!["run", "--http", "off", "--records", "1000"];
        args.extend(&flags);
        let out = run(&args, "a bad schema");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{flags:?}: {err}");
        assert!(
            err.contains(&want),
            "{flags:?}: the error says {want:?}:\n{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{flags:?}: one line:\n{err}");
    }
}

/// A tiny HTTP/1.1 GET on loopback; the body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // Chunked: size line, data, ..., 0.
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_string()
    }
}

#[test]
fn rejections_per_keyword_and_path_in_status_metrics_and_the_summary() {
    let schema = serde_json::json!({
        "type": "object",
        "required": ["id"],
        "properties": {
            "amount": {"type": "number", "minimum": 0},
            "lines": {"type": "array", "items": {"properties": {"qty": {"type": "integer"}}}}
        }
    });
    let mut payloads: Vec<String> = (0..6)
        .map(|i| format!(r#"{{"id":"ok-{i}","amount":{i}}}"#))
        .collect();
    payloads.extend((0..3).map(|i| format!(r#"{{"amount":{i}}}"#))); // required at ""
    payloads.extend((0..2).map(|i| format!(r#"{{"id":"m-{i}","amount":-{i}.5}}"#))); // minimum at /amount
    payloads.extend(
        (0..4).map(|i| format!(r#"{{"id":"q-{i}","lines":[{{"qty":1}},{{"qty":"{i}"}}]}}"#)),
    ); // type at /lines/*/qty
    payloads.push("[1,2]".into()); // type at ""
    let dir = tempfile::tempdir().expect("tempdir");
    let schema_file = dir.path().join("orders.schema.json");
    std::fs::write(&schema_file, schema.to_string()).expect("write");
    let unique = format!("counters-{}", std::process::id());
    let (input, output, dlq) = (
        format!("{unique}-in"),
        format!("{unique}-out"),
        format!("{unique}-dlq"),
    );
    create_topics(REAL_BROKER, &[(&input, 1), (&output, 1), (&dlq, 1)]);
    let offsets = produce(REAL_BROKER, &[(&input, payloads.clone())]).remove(0);
    let db = dir.path().join("counters.db");
    let store = format!("sqlite://{}", db.display());
    let summary_file = dir.path().join("summary.json");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = sluicegate(&[
        "run",
        "--brokers",
        REAL_BROKER,
        "--group",
        &unique,
        "--input-topic",
        &input,
        "--output-topic",
        &output,
        "--dead-letter-topic",
        &dlq,
        "--store",
        &store,
        "--schema",
        schema_file.to_str().expect("utf-8"),
        "--http",
        &addr,
        "--quiet",
        "--commit-interval-ms",
        "100",
        "--summary-file",
        summary_file.to_str().expect("utf-8"),
    ])
    .env("RUST_LOG", "info,librdkafka=warn")
    .spawn()
    .expect("spawn sluicegate");
    let log = watch_stderr(&mut child);
    // Done when the group committed every record (watched on the broker).
    let total = payloads.len() as i64;
    let start = std::time::Instant::now();
    while committed_offsets(REAL_BROKER, &unique, &input)
        .values()
        .sum::<i64>()
        < total
    {
        assert!(
            start.elapsed() < PATIENCE,
            "not committed; log:\n{}",
            log.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let status: Value = serde_json::from_str(&http_get(&addr, "/status")).expect("status JSON");
    let v = &status["extra"]["validation"];
    assert_eq!(
        v["schema"],
        Value::String(schema_file.display().to_string()),
        "{v}"
    );
    assert_eq!(v["draft"], "2020-12", "{v}");
    assert_eq!(
        (
            v["checked"].as_u64(),
            v["passed"].as_u64(),
            v["rejected"].as_u64()
        ),
        (Some(16), Some(6), Some(10)),
        "{v}"
    );
    let want_keywords = serde_json::json!({"minimum": 2, "required": 3, "type": 5});
    let want_paths = serde_json::json!({
        "": {"required": 3, "type": 1},
        "/amount": {"minimum": 2},
        "/lines/*/qty": {"type": 4}
    });
    assert_eq!(v["by_keyword"], want_keywords, "{v}");
    assert_eq!(v["by_path"], want_paths, "{v}");

    let metrics = http_get(&addr, "/metrics");
    for line in [
        r#"sluicegate_validation_checked_total{graph="sluicegate"} 16"#,
        r#"sluicegate_validation_passed_total{graph="sluicegate"} 6"#,
        r#"sluicegate_validation_rejected_total{graph="sluicegate",keyword="required",path=""} 3"#,
        r#"sluicegate_validation_rejected_total{graph="sluicegate",keyword="type",path=""} 1"#,
        r#"sluicegate_validation_rejected_total{graph="sluicegate",keyword="minimum",path="/amount"} 2"#,
        r#"sluicegate_validation_rejected_total{graph="sluicegate",keyword="type",path="/lines/*/qty"} 4"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "/metrics has {line}:\n{metrics}"
        );
    }

    signal(&child, "TERM");
    let out = finish(child, PATIENCE, "sluicegate after SIGTERM");
    assert_eq!(out.status.code(), Some(0), "log:\n{}", log.text());
    let s = summary(&summary_file);
    assert_eq!(s["rejected_by_keyword"], want_keywords, "{s}");
    assert_eq!(s["rejected_by_path"], want_paths, "{s}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["type", "at", r#""/lines/*/qty""#, "4"]),
        "{stdout}"
    );
    // And from the broker: the 10 rejected records, and only they, are
    // dead letters.
    let dead = read_topic(REAL_BROKER, &dlq, "read_uncommitted", PATIENCE);
    let origins: BTreeSet<(i32, i64)> = dead.iter().map(Msg::origin).collect();
    let want: BTreeSet<(i32, i64)> = offsets[6..].iter().map(|&o| (0, o)).collect();
    assert_eq!(origins, want, "{dead:?}");
}

#[test]
fn the_transform_fields_come_from_the_settings() {
    // Generated events on librdkafka's mock cluster; `user` pseudonymised
    // instead of `email`, `amount` converted into `cents`.
    let cluster = Cluster::new(2, 300, 0.0);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("transform.toml");
    std::fs::write(
        &config,
        "[transform]\npseudonymise = [\"user\"]\ncents = \"amount\"\ncents_field = \"cents\"\n",
    )
    .expect("write");
    let db = dir.path().join("transform.db");
    let store = format!("sqlite://{}", db.display());
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(cluster.args());
    args.extend(
        [
            "--config",
            config.to_str().expect("utf-8"),
            "--store",
            &store,
            "--until-caught-up",
            "--http",
            "off",
            "--quiet",
        ]
        .map(String::from),
    );
    let out = run(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "transform settings",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let produced = read_topic(
        &cluster.brokers,
        &cluster.output,
        "read_uncommitted",
        PATIENCE,
    );
    assert_eq!(produced.len(), 300);
    for m in &produced {
        let v: Value = serde_json::from_slice(&m.payload).expect("JSON");
        let i: u64 = v["id"]
            .as_str()
            .and_then(|id| id.strip_prefix("e-"))
            .and_then(|n| n.parse().ok())
            .expect("id");
        let user = v["user"].as_str().expect("user");
        assert!(
            user.len() == 64 && user.chars().all(|c| c.is_ascii_hexdigit()),
            "{v}"
        );
        assert_eq!(
            v["email"],
            Value::String(format!("user{}@example.com", i % 1_000)),
            "{v}"
        );
        let amount = v["amount"].as_f64().expect("amount");
        assert_eq!(
            v["cents"].as_i64(),
            Some((amount * 100.0).round() as i64),
            "{v}"
        );
        assert!(v.get("amount_cents").is_none(), "{v}");
    }

    // Flags beat the file: nothing pseudonymised, no cents.
    let db2 = dir.path().join("transform2.db");
    let store2 = format!("sqlite://{}", db2.display());
    let cluster = Cluster::new(1, 50, 0.0);
    let mut args: Vec<String> = vec!["run".into()];
    args.extend(cluster.args());
    args.extend(
        [
            "--config",
            config.to_str().expect("utf-8"),
            "--pseudonymise",
            "",
            "--cents",
            "",
            "--store",
            &store2,
            "--until-caught-up",
            "--http",
            "off",
            "--quiet",
        ]
        .map(String::from),
    );
    let out = run(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "transform flags",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for m in read_topic(
        &cluster.brokers,
        &cluster.output,
        "read_uncommitted",
        PATIENCE,
    ) {
        let v: Value = serde_json::from_slice(&m.payload).expect("JSON");
        assert!(
            v["user"].as_str().is_some_and(|u| u.starts_with("u-")),
            "{v}"
        );
        assert!(
            v.get("cents").is_none() && v.get("amount_cents").is_none(),
            "{v}"
        );
        assert!(
            v["fingerprint"].as_str().is_some_and(|f| f.len() == 64),
            "{v}"
        );
    }
}
