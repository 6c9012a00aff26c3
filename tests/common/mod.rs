//! Running the `sluicegate` binary from tests: spawning it clean, reading
//! its pipes, signalling it, and clusters for it to talk to.
#![allow(dead_code, unreachable_pub)]

pub mod reconcile;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use sluicegate_runner::embedded::produce_generated;

/// The `sluicegate` binary, built once per test process.
///
/// It belongs to another package (sluicegate-runner), so cargo gives these
/// suites no `CARGO_BIN_EXE_` path for it: they ask cargo to build it (a
/// no-op when it is up to date, as after `cargo nextest run --workspace`)
/// and take the path cargo reports. A build that fails fails the test.
pub fn bin() -> &'static Path {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "--package",
                "sluicegate-runner",
                "--bin",
                "sluicegate",
                "--message-format",
                "json",
            ])
            .current_dir(WORKSPACE)
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "cargo could not build the sluicegate binary"
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|m| m["target"]["name"] == "sluicegate")
            .find_map(|m| m["executable"].as_str().map(std::path::PathBuf::from))
            .expect("cargo names the sluicegate executable it built")
    })
}

/// The workspace's root directory (scripts, schemas).
pub const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// Longest any one command may take before the test gives up on it.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// The binary with no SLUICEGATE_* variables from the environment, no live
/// view, no HTTP server, and only warnings logged.
pub fn sluicegate(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    // A fresh working directory each time: a run without --store writes
    // SQLite's `sluicegate.db` there, never into the source tree or into
    // another test's file.
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sluicegate-test-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("working directory");
    cmd.current_dir(dir);
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
pub fn drain_pipe(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Waits for `child` to exit, killing it and failing after `limit`.
pub fn finish(mut child: Child, limit: Duration, what: &str) -> Output {
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

pub fn run(args: &[&str], what: &str) -> Output {
    let child = sluicegate(args).spawn().expect("spawn sluicegate");
    finish(child, PATIENCE, what)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn summary(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("summary file written");
    serde_json::from_str(&text).expect("summary is JSON")
}

pub fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("summary has no number {key}: {v}"))
}

pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig} failed");
}

/// A cluster with the pipeline's topics (input, output, dead letters) and
/// the generated input in them: librdkafka's mock cluster in this process,
/// or the real broker of scripts/kafka-up.
pub struct Cluster {
    pub _cluster: Option<MockCluster<'static, DefaultProducerContext>>,
    pub brokers: String,
    pub input: String,
    pub output: String,
    pub dead_letters: String,
}

pub const REAL_BROKER: &str = "127.0.0.1:9092";

impl Cluster {
    /// A mock cluster with topics `events`, `events-clean`, `events-dlq`.
    pub fn new(partitions: i32, records: u64, malformed: f64) -> Cluster {
        let cluster = MockCluster::new(1).expect("mock cluster");
        for t in ["events", "events-clean", "events-dlq"] {
            cluster.create_topic(t, partitions, 1).expect("topic");
        }
        let brokers = cluster.bootstrap_servers();
        produce_generated(&brokers, "events", 0, records, malformed).expect("input produced");
        Cluster {
            _cluster: Some(cluster),
            brokers,
            input: "events".into(),
            output: "events-clean".into(),
            dead_letters: "events-dlq".into(),
        }
    }

    /// Fresh topics named after `prefix` on the real broker (which must be
    /// running: the test command starts it; this fails, never skips).
    pub fn real(prefix: &str, partitions: i32, records: u64, malformed: f64) -> Cluster {
        Cluster::real_on(REAL_BROKER, prefix, partitions, records, malformed)
    }

    /// [`Cluster::real`] on the broker at `brokers`.
    pub fn real_on(
        brokers: &str,
        prefix: &str,
        partitions: i32,
        records: u64,
        malformed: f64,
    ) -> Cluster {
        if std::net::TcpStream::connect_timeout(
            &brokers.parse().expect("addr"),
            Duration::from_secs(2),
        )
        .is_err()
        {
            panic!("no Kafka broker on {brokers}: run scripts/kafka-up (the test command does)");
        }
        let unique = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        );
        let (input, output, dead_letters) = (
            format!("{unique}-in"),
            format!("{unique}-out"),
            format!("{unique}-dlq"),
        );
        create_topics(
            brokers,
            &[
                (&input, partitions),
                (&output, partitions),
                (&dead_letters, partitions),
            ],
        );
        produce_generated(brokers, &input, 0, records, malformed).expect("input produced");
        Cluster {
            _cluster: None,
            brokers: brokers.into(),
            input,
            output,
            dead_letters,
        }
    }
}

/// An Apache Kafka broker of a test's own (scripts/kafka-up on free ports,
/// with its own log directory), for faults that must not reach the shared
/// broker: stopping it. Stopped, and its data removed, on drop.
pub struct Broker {
    port: u16,
    controller_port: u16,
    dir: tempfile::TempDir,
}

impl Broker {
    /// Starts one (its artifacts are fetched already by the test command).
    pub fn start(name: &str) -> Broker {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port()
        };
        let broker = Broker {
            port: free(),
            controller_port: free(),
            dir: tempfile::Builder::new()
                .prefix(&format!("sluicegate-kafka-{name}-"))
                .tempdir()
                .expect("a state directory"),
        };
        broker.script(&[]);
        broker
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker process (SIGTERM, then waits until it is gone).
    pub fn stop(&self) {
        self.script(&["--stop"]);
    }

    /// Starts it again on the same ports and data.
    pub fn start_again(&self) {
        self.script(&[]);
    }

    fn script(&self, args: &[&str]) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka-up");
        let out = Command::new(script)
            .args(args)
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_CONTROLLER_PORT", self.controller_port.to_string())
            .env("KAFKA_STATE_DIR", self.dir.path())
            .env("KAFKA_HEAP", "512m")
            .stdin(Stdio::null())
            .output()
            .expect("scripts/kafka-up");
        assert!(
            out.status.success(),
            "scripts/kafka-up {args:?} on port {}: {}{}",
            self.port,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka-up");
        let _ = Command::new(script)
            .arg("--stop")
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_STATE_DIR", self.dir.path())
            .output();
    }
}

/// Creates topics on `brokers` (the Kafka admin API) and waits until every
/// partition has a leader.
pub fn create_topics(brokers: &str, topics: &[(&str, i32)]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let config = sluicegate_kafka_io::KafkaConfig::new(brokers);
    runtime
        .block_on(sluicegate_kafka_io::admin::ensure_topics(
            &config,
            topics,
            Duration::from_secs(30),
        ))
        .unwrap_or_else(|e| panic!("creating topics {topics:?}: {e}"));
}

impl Cluster {
    /// Flags naming this cluster and its topics.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--brokers".into(),
            self.brokers.clone(),
            "--input-topic".into(),
            self.input.clone(),
            "--output-topic".into(),
            self.output.clone(),
            "--dead-letter-topic".into(),
            self.dead_letters.clone(),
        ]
    }

    /// Offsets the group committed on the input, summed.
    pub fn committed(&self, group: &str, partitions: i32) -> i64 {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(&self.input, p);
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

    /// Waits until the group committed at least `at_least` input records.
    pub fn wait_committed(&self, group: &str, partitions: i32, at_least: i64) {
        self.wait_committed_within(group, partitions, at_least, PATIENCE);
    }

    /// [`Cluster::wait_committed`], giving up after `limit`.
    pub fn wait_committed_within(
        &self,
        group: &str,
        partitions: i32,
        at_least: i64,
        limit: Duration,
    ) {
        let start = Instant::now();
        while self.committed(group, partitions) < at_least {
            assert!(
                start.elapsed() < limit,
                "group {group} did not commit {at_least} records within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn sqlite_rows(path: &Path) -> u64 {
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

/// The `id` of every row of the `events` table of the SQLite file at `path`.
pub fn sqlite_ids(path: &Path) -> std::collections::BTreeSet<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys,json\nfor (p,) in sqlite3.connect(sys.argv[1]).execute('select payload from events'): print(json.loads(p)['id'])",
        ])
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "reading {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Lines of a child's stderr, collected as they come.
pub struct StderrLog(pub std::sync::Arc<std::sync::Mutex<String>>);

pub fn watch_stderr(child: &mut Child) -> StderrLog {
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
    pub fn text(&self) -> String {
        self.0.lock().map(|t| t.clone()).unwrap_or_default()
    }

    pub fn wait_for(&self, needle: &str) {
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

/// The PostgreSQL database the tests store into (scripts/test starts it).
pub const DATABASE: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Runs `sql` with psql on [`DATABASE`]; its unaligned output.
pub fn psql(sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([DATABASE, "-Atc", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One record of a topic, as the checks need it.
#[derive(Debug, Clone)]
pub struct Msg {
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp (ms since the epoch), as its producer set it.
    pub timestamp: Option<i64>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Msg {
    /// The origin a dead letter names in its headers: (partition, offset).
    pub fn origin(&self) -> (i32, i64) {
        let get = |k: &str| {
            self.headers
                .get(k)
                .unwrap_or_else(|| panic!("a dead letter without {k}: {self:?}"))
        };
        (
            get("sluicegate.origin.partition")
                .parse()
                .expect("origin partition"),
            get("sluicegate.origin.offset")
                .parse()
                .expect("origin offset"),
        )
    }

    /// The `id` of a JSON payload.
    pub fn id(&self) -> String {
        let v: Value = serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"));
        v["id"].as_str().expect("an id").to_string()
    }
}

/// The high watermark of every partition of `topic`. A broker just
/// started again answers "not leader" until its partitions have their
/// leaders back: asked again for up to 30 s.
pub fn end_offsets(brokers: &str, topic: &str) -> BTreeMap<i32, i64> {
    let started = Instant::now();
    loop {
        match sluicegate_runner::embedded::end_offsets(brokers, topic, Duration::from_secs(10)) {
            Ok(ends) => return ends,
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                eprintln!("end offsets of {topic}: {e}; asking again");
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("end offsets of {topic} (for 30 s): {e}"),
        }
    }
}

/// Every record of `topic` up to the high watermarks it has now, read with
/// `isolation` (`read_committed` or `read_uncommitted`). A read_committed
/// reader's position passes aborted records and transaction markers
/// without returning them, so the read ends at the same high watermark
/// either way (it waits while a transaction is still open).
pub fn read_topic(brokers: &str, topic: &str, isolation: &str, limit: Duration) -> Vec<Msg> {
    let ends = end_offsets(brokers, topic);
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluicegate-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for &p in ends.keys() {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("offset");
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let start = Instant::now();
    loop {
        let position = c.position().expect("position");
        let behind: Vec<(i32, i64, i64)> = ends
            .iter()
            .filter_map(|(&p, &end)| {
                let at = match position.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                };
                (at < end).then_some((p, at, end))
            })
            .collect();
        if behind.is_empty() {
            return out;
        }
        assert!(
            start.elapsed() < limit,
            "reading {topic} ({isolation}): partitions (partition, at, end) {behind:?} after {limit:?}"
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(Msg {
                partition: m.partition(),
                offset: m.offset(),
                timestamp: m.timestamp().to_millis(),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers: m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(e)) => eprintln!("reader of {topic}: {e}"),
            None => {}
        }
    }
}

/// The offsets `group` committed on `topic`, per partition (0 where none).
///
/// Read without waiting for open transactions (`read_uncommitted` asks the
/// coordinator for the stable offsets rather than an error while a
/// transaction with offsets is open, as after a `kill -9` mid-transaction):
/// offsets in a transaction count once it commits.
pub fn committed_offsets(brokers: &str, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let ends = end_offsets(brokers, topic);
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for &p in ends.keys() {
        tpl.add_partition(topic, p);
    }
    let started = Instant::now();
    let got = loop {
        match c.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(got) => break got,
            // As above: a coordinator just started again may not serve yet.
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                eprintln!("committed offsets of {group}: {e}; asking again");
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("committed offsets of {group} (for 30 s): {e}"),
        }
    };
    ends.keys()
        .map(|&p| {
            let o = match got.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => 0,
            };
            (p, o)
        })
        .collect()
}

/// What an outside client (Kafka's own Java console consumer, from the
/// artifacts scripts/kafka-up fetched; it shares no code with the
/// project's librdkafka) reads from `topic`: (partition, offset, headers,
/// value) of its first `expected` records, read with `isolation`.
pub fn witness(
    brokers: &str,
    topic: &str,
    isolation: &str,
    expected: usize,
) -> Vec<(i32, i64, BTreeMap<String, String>, String)> {
    const SEPARATOR: &str = "|#|";
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka-up");
    let fetched = Command::new(script)
        .arg("--fetch")
        .output()
        .expect("scripts/kafka-up --fetch");
    assert!(
        fetched.status.success(),
        "scripts/kafka-up --fetch: {}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    let libs = String::from_utf8_lossy(&fetched.stdout)
        .lines()
        .last()
        .expect("the libraries' directory")
        .trim()
        .to_string();
    let out = Command::new("java")
        .args(["-Xmx256m", "-cp", &format!("{libs}/*")])
        .arg("org.apache.kafka.tools.consumer.ConsoleConsumer")
        .args(["--bootstrap-server", brokers, "--topic", topic])
        .args(["--from-beginning", "--isolation-level", isolation])
        .args(["--max-messages", &expected.to_string()])
        .args(["--timeout-ms", "20000"])
        .args(["--property", "print.partition=true"])
        .args(["--property", "print.offset=true"])
        .args(["--property", "print.headers=true"])
        .args(["--property", &format!("headers.separator={SEPARATOR}")])
        .stdin(Stdio::null())
        .output()
        .expect("java");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(|line| {
            let mut f = line.splitn(4, '\t');
            let mut field = |prefix: &str| {
                f.next()
                    .and_then(|x| x.strip_prefix(prefix))
                    .unwrap_or_else(|| panic!("witness line without {prefix}: {line:?}"))
                    .to_string()
            };
            let partition = field("Partition:").parse().expect("partition");
            let offset = field("Offset:").parse().expect("offset");
            let headers = field("")
                .split(SEPARATOR)
                .filter(|h| *h != "NO_HEADERS")
                .filter_map(|h| h.split_once(':'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let value = field("");
            (partition, offset, headers, value)
        })
        .collect()
}
