//! The `sluicegate` binary as a user runs it: the embedded default, bad
//! input of every kind (flags, config, brokers, topics, databases), signals,
//! a panicking stage, and two processes sharing one consumer group.
//!
//! Clusters here are librdkafka's mock cluster, started in the test process;
//! the binary talks to it over TCP like to any broker.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use sluicegate_runner::embedded::produce_generated;
use sluicegate_runner::generate::{count_malformed, is_malformed};

const BIN: &str = env!("CARGO_BIN_EXE_sluicegate");
/// Longest any one command may take before the test gives up on it.
const PATIENCE: Duration = Duration::from_secs(90);

/// The binary with no SLUICEGATE_* variables from the environment, no live
/// view, no HTTP server, and only warnings logged.
fn sluicegate(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("SLUICEGATE_") {
            cmd.env_remove(k);
        }
    }
    // TEST_RUST_LOG shows the binary's logs (of the restart, below).
    cmd.env(
        "RUST_LOG",
        std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into()),
    )
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// Reads a child's pipe to the end on a thread (a full pipe would block
/// the child).
fn drain_pipe(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits for `child` to exit, killing it and failing after `limit`.
fn finish(mut child: Child, limit: Duration, what: &str) -> Output {
    let stdout = drain_pipe(child.stdout.take());
    let stderr = drain_pipe(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(status) => break status,
            None if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                let err = stderr.join().unwrap_or_default();
                panic!(
                    "{what}: still running after {limit:?}; stderr:\n{}",
                    String::from_utf8_lossy(&err)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn run(args: &[&str], what: &str) -> Output {
    let child = sluicegate(args).spawn().expect("spawn sluicegate");
    finish(child, PATIENCE, what)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn summary(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("summary file written");
    serde_json::from_str(&text).expect("summary is JSON")
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("summary has no number {key}: {v}"))
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig} failed");
}

/// A mock cluster in this process with the pipeline's topics.
struct Cluster {
    _cluster: MockCluster<'static, DefaultProducerContext>,
    brokers: String,
}

impl Cluster {
    fn new(partitions: i32, records: u64, malformed: f64) -> Cluster {
        let cluster = MockCluster::new(1).expect("mock cluster");
        for t in ["events", "events-clean", "events-dlq"] {
            cluster.create_topic(t, partitions, 1).expect("topic");
        }
        let brokers = cluster.bootstrap_servers();
        produce_generated(&brokers, "events", 0, records, malformed).expect("input produced");
        Cluster {
            _cluster: cluster,
            brokers,
        }
    }

    /// Offsets the group committed on `events`, summed.
    fn committed(&self, group: &str, partitions: i32) -> i64 {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition("events", p);
        }
        c.committed_offsets(tpl, Duration::from_secs(5))
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .map(|e| match e.offset() {
                        Offset::Offset(o) => o,
                        _ => 0,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    fn wait_committed(&self, group: &str, partitions: i32, at_least: i64) {
        let start = Instant::now();
        while self.committed(group, partitions) < at_least {
            assert!(
                start.elapsed() < PATIENCE,
                "group {group} did not commit {at_least} records within {PATIENCE:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn sqlite_rows(path: &Path) -> u64 {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from events').fetchone()[0])",
        ])
        .arg(path)
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("counting rows: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn embedded_default_runs_to_completion_and_reconciles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("summary.json");
    let out = run(
        &[
            "run",
            "--records",
            "3000",
            "--http",
            "off",
            "--summary-file",
            file.to_str().expect("utf-8 path"),
        ],
        "embedded run",
    );
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", stderr(&out));
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

/// Lines of a child's stderr, collected as they come.
struct StderrLog(std::sync::Arc<std::sync::Mutex<String>>);

fn watch_stderr(child: &mut Child) -> StderrLog {
    let mut pipe = child.stderr.take().expect("stderr piped");
    let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut t) = sink.lock() {
                t.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    StderrLog(text)
}

impl StderrLog {
    fn text(&self) -> String {
        self.0.lock().map(|t| t.clone()).unwrap_or_default()
    }

    fn wait_for(&self, needle: &str) {
        let start = Instant::now();
        while !self.text().contains(needle) {
            assert!(
                start.elapsed() < PATIENCE,
                "no {needle:?} on stderr within {PATIENCE:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
