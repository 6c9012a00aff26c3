//! The `sluicegate` binary as a user runs it: the embedded default, bad
//! input of every kind (flags, config, brokers, topics, databases), signals
//! and a panicking stage.
//!
//! Clusters here are librdkafka's mock cluster, started in the test process;
//! the binary talks to it over TCP like to any broker.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use serde_json::Value;
use sluicegate_runner::generate::{self, count_malformed, is_malformed};

#[test]
fn embedded_default_runs_to_completion_and_reconciles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("summary.json");
    let db = dir.path().join("embedded.db");
    let store = format!("sqlite://{}", db.display());
    let out = run(
        &[
            "run",
            "--records",
            "3000",
            "--http",
            "off",
            "--store",
            &store,
            "--summary-file",
            file.to_str().expect("utf-8 path"),
        ],
        "embedded run",
    );
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    // The rows, read from the file: exactly the good records' ids. (The
    // topics lived in the binary's own mock cluster and went with it.)
    let good: BTreeSet<String> = (0..3000)
        .filter(|&i| is_malformed(i, 0.02).is_none())
        .map(generate::id)
        .collect();
    assert_eq!(sqlite_ids(&db), good, "one row per good record, no other");
    let s = summary(&file);
    let bad = count_malformed(0, 3000, 0.02);
    assert!(bad > 0, "the default stream has malformed records");
    assert_eq!(n(&s, "records_in"), 3000, "{s}");
    assert_eq!(n(&s, "stored"), 3000 - bad, "{s}");
    assert_eq!(n(&s, "produced"), 3000 - bad, "{s}");
    assert_eq!(n(&s, "dead_lettered"), bad, "{s}");
    assert_eq!(n(&s, "failed"), 0, "{s}");
    assert_eq!(n(&s, "duplicates"), 0, "{s}");
    assert_eq!(s["clean"], Value::Bool(true), "{s}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("unaccounted                0"), "{stdout}");
    assert!(
        stdout.contains("every input record is committed"),
        "{stdout}"
    );
}

#[test]
fn a_panicking_stage_dead_letters_its_records_and_the_rest_are_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("summary.json");
    let db = dir.path().join("panic.db");
    let store = format!("sqlite://{}", db.display());
    let records = 2000u64;
    let out = run(
        &[
            "run",
            "--records",
            "2000",
            "--http",
            "off",
            "--panic-on-id-suffix",
            "7",
            "--store",
            &store,
            "--summary-file",
            file.to_str().expect("utf-8 path"),
        ],
        "run with a panicking transform",
    );
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
    let s = summary(&file);
    let panicking = (0..records)
        .filter(|&i| i % 10 == 7 && is_malformed(i, 0.02).is_none())
        .count() as u64;
    let bad = count_malformed(0, records, 0.02);
    assert_eq!(n(&s["failed_by_stage"], "transform"), panicking, "{s}");
    assert_eq!(n(&s, "dead_lettered"), bad + panicking, "{s}");
    assert_eq!(n(&s, "stored"), records - bad - panicking, "{s}");
    assert_eq!(n(&s, "failed"), 0, "{s}");
    let stored: BTreeSet<String> = (0..records)
        .filter(|&i| i % 10 != 7 && is_malformed(i, 0.02).is_none())
        .map(generate::id)
        .collect();
    assert_eq!(sqlite_ids(&db), stored, "the rows, read from the file");
}

#[test]
fn command_line_mistakes_exit_2_with_one_clear_line() {
    let cases: [(&[&str], &str); 3] = [
        (&["run", "--no-such-flag"], "--no-such-flag"),
        (&["run", "--workers", "many"], "--workers"),
        (&["run", "--transform-order", "sideways"], "sideways"),
    ];
    for (args, names) in cases {
        let out = run(args, "a bad command line");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(names),
            "{args:?}: the error names {names}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn configuration_mistakes_exit_3_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[stages.transform]\ncapacty = 4\n").expect("write");
    let zero = dir.path().join("zero.toml");
    std::fs::write(&zero, "[stages.store]\ncapacity = 0\n").expect("write");
    let missing = dir.path().join("missing.toml");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "run".into(),
                "--config".into(),
                missing.display().to_string(),
            ],
            "cannot read config file",
        ),
        (
            vec![
                "run".into(),
                "--config".into(),
                unknown.display().to_string(),
            ],
            "capacty",
        ),
        (
            vec!["run".into(), "--config".into(), zero.display().to_string()],
            "stages.store.capacity",
        ),
        (
            vec![
                "run".into(),
                "--transform-workers".into(),
                "64".into(),
                "--transform-capacity".into(),
                "8".into(),
            ],
            "stages.transform.workers",
        ),
        (
            vec!["run".into(), "--kafka-property".into(), "linger.ms".into()],
            "KEY=VALUE",
        ),
        (
            vec!["run".into(), "--http".into(), "not-an-address".into()],
            "run.http",
        ),
        (
            vec![
                "run".into(),
                "--store-offsets".into(),
                "--exactly-once".into(),
            ],
            "store.offsets",
        ),
        (
            vec![
                "run".into(),
                "--exactly-once".into(),
                "--output-topic".into(),
                "".into(),
            ],
            "kafka.exactly_once",
        ),
        (
            vec![
                "run".into(),
                "--exactly-once".into(),
                "--workers".into(),
                "2".into(),
            ],
            "kafka.workers",
        ),
        (
            vec![
                "run".into(),
                "--kafka-property".into(),
                "group.protocol=consumer".into(),
                "--kafka-property".into(),
                "session.timeout.ms=6000".into(),
            ],
            "session.timeout.ms",
        ),
        (
            vec!["run".into(), "--retry-delays".into(), "1s,soon".into()],
            "store.retry_delays",
        ),
        (
            vec!["run".into(), "--retry-delays".into(), "0s".into()],
            "store.retry_delays",
        ),
        (
            vec![
                "run".into(),
                "--retry-delays".into(),
                "1s".into(),
                "--store-offsets".into(),
            ],
            "store.retry_delays",
        ),
        (
            vec![
                "run".into(),
                "--retry-delays".into(),
                "1s".into(),
                "--exactly-once".into(),
            ],
            "store.retry_delays",
        ),
        (
            vec![
                "run".into(),
                "--records".into(),
                "1000000".into(),
                "--partitions".into(),
                "2".into(),
            ],
            "--partitions",
        ),
    ];
    for (args, names) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args, "a bad configuration");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(
            err.contains(names),
            "{args:?}: the error names {names}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

/// A status address that cannot be bound is a bad setting (`run.http`):
/// exit 3, like every other one, not 4 (a service unavailable).
#[test]
fn a_status_address_already_taken_exits_3_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = taken.local_addr().expect("its address").to_string();
    let out = run(
        &["run", "--records", "100", "--http", &addr],
        "a status address already taken",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("run.http") && err.contains(&addr), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    drop(taken);
}

#[test]
fn an_unreachable_broker_exits_4_within_the_connect_timeout() {
    let out = run(
        &[
            "run",
            "--brokers",
            "127.0.0.1:1",
            "--connect-timeout-ms",
            "1500",
            "--http",
            "off",
        ],
        "an unreachable broker",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("127.0.0.1:1") && err.contains("unreachable"),
        "{err}"
    );
}

#[test]
fn a_missing_topic_or_database_exits_4_naming_it() {
    let cluster = Cluster::new(2, 10, 0.0);
    let out = run(
        &[
            "run",
            "--brokers",
            &cluster.brokers,
            "--input-topic",
            "no-such-topic",
            "--http",
            "off",
        ],
        "a missing topic",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("no-such-topic"), "{err}");

    let out = run(
        &[
            "run",
            "--brokers",
            &cluster.brokers,
            "--store",
            "postgres://postgres:hunter2@127.0.0.1:1/test",
            "--connect-timeout-ms",
            "1500",
            "--http",
            "off",
        ],
        "an unreachable database",
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(!err.contains("hunter2"), "the password is redacted: {err}");
}

#[test]
fn sigterm_drains_commits_and_exits_0_and_a_restart_finishes_the_rest() {
    let records = 5_000u64;
    let cluster = Cluster::new(4, records, 0.02);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("store.db");
    let store = format!("sqlite://{}", db.display());
    let first_summary = dir.path().join("first.json");
    let args = |summary: &Path, until: bool| {
        let mut a = vec![
            "run".to_string(),
            "--brokers".into(),
            cluster.brokers.clone(),
            "--group".into(),
            "drain".into(),
            "--store".into(),
            store.clone(),
            "--http".into(),
            "off".into(),
            // librdkafka's mock broker rebalances a group whose last member
            // left only after the session timeout less a second (a real
            // broker does at once): keep the restart's wait short.
            "--kafka-property".into(),
            "session.timeout.ms=6000".into(),
            // Slow enough that the signal lands mid-stream.
            "--hash-rounds".into(),
            "200".into(),
            "--transform-workers".into(),
            "1".into(),
            "--summary-file".into(),
            summary.display().to_string(),
        ];
        if until {
            a.push("--until-caught-up".into());
        }
        a
    };
    let a = args(&first_summary, false);
    let child = sluicegate(&a.iter().map(String::as_str).collect::<Vec<_>>())
        .spawn()
        .expect("spawn");
    cluster.wait_committed("drain", 4, 500);
    signal(&child, "TERM");
    let out = finish(child, PATIENCE, "the drain after SIGTERM");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stopped by SIGTERM"),
        "{err}"
    );
    let first = summary(&first_summary);
    assert_eq!(n(&first, "failed"), 0, "{first}");
    let read = n(&first, "records_in");
    assert!(read < records, "the signal came mid-stream: {first}");
    // Everything read was finished and committed before exiting.
    assert_eq!(cluster.committed("drain", 4) as u64, read, "{first}");

    let second_summary = dir.path().join("second.json");
    let a = args(&second_summary, true);
    let out = run(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        "the restart",
    );
    if std::env::var("TEST_RUST_LOG").is_ok() {
        eprintln!("{}", stderr(&out));
    }
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let second = summary(&second_summary);
    assert_eq!(
        n(&second, "records_in"),
        records - read,
        "no record read twice: {second}"
    );
    assert_eq!(n(&second, "duplicates"), 0, "{second}");
    let bad = count_malformed(0, records, 0.02);
    assert_eq!(
        sqlite_rows(&db),
        records - bad,
        "every good record stored once"
    );
}

#[test]
fn a_second_signal_forces_exit_130() {
    let cluster = Cluster::new(2, 5_000, 0.0);
    let mut child = sluicegate(&[
        "run",
        "--brokers",
        &cluster.brokers,
        "--group",
        "forced",
        "--http",
        "off",
        "--drain-timeout",
        "600",
        // Very slow records, so the drain takes far longer than the test.
        "--hash-rounds",
        "2000000",
        "--transform-workers",
        "1",
        "--commit-every",
        "1",
    ])
    .env("RUST_LOG", "info,librdkafka=warn")
    .spawn()
    .expect("spawn");
    let log = watch_stderr(&mut child);
    cluster.wait_committed("forced", 2, 1);
    signal(&child, "TERM");
    // The first signal starts a drain that cannot finish soon.
    log.wait_for("stopping: draining");
    signal(&child, "INT");
    let out = finish(child, PATIENCE, "a forced exit");
    let err = log.text();
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("SIGINT while draining: exiting now"), "{err}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let out = sluicegate(&[
        "--log-format",
        "json",
        "run",
        "--records",
        "300",
        "--http",
        "off",
    ])
    .env("RUST_LOG", "info,librdkafka=off")
    .spawn()
    .expect("spawn");
    let out = finish(out, PATIENCE, "a run with JSON logs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "some logs: {err}");
    for line in lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}
