//! The reliability suite: the real `sluicegate` binary, run as a user runs
//! it, against the real broker (Tansu, from scripts/kafka-up) or, for what
//! Tansu cannot do on demand (a broker outage), librdkafka's mock cluster,
//! and PostgreSQL. Each scenario reconciles every input record at the end
//! and prints the reconciliation (in, stored, dead-lettered, dropped,
//! duplicates, lost); any loss fails it.
//!
//! Every real-broker topic here is produced one record per batch, and the
//! binary's producers are told to do the same (`batch.num.messages=1`):
//! Tansu 0.6.0 cannot fetch from an offset inside a record batch (where a
//! restart or a resume starts), and reports high watermarks per batch.
//!
//! Longer variants: `SLUICEGATE_RELIABILITY_SCALE=10` multiplies the record
//! counts (docs/RELIABILITY.md has the figures of both).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluicegate_runner::generate::{count_malformed, is_malformed};

const PARTITIONS: i32 = 4;

fn scale() -> u64 {
    std::env::var("SLUICEGATE_RELIABILITY_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// How long a whole scenario may take, scaled with its records.
fn patience() -> Duration {
    PATIENCE * scale() as u32
}

/// Rows stored per input offset, keyed by (partition, offset).
fn stored(table: &str) -> BTreeMap<(i32, i64), u64> {
    psql(&format!(
        "SELECT partition, \"offset\", count(*) FROM {table} GROUP BY 1, 2"
    ))
    .lines()
    .filter(|l| !l.is_empty())
    .map(|l| {
        let mut f = l.split('|');
        let p = f.next().and_then(|x| x.parse().ok()).expect("partition");
        let o = f.next().and_then(|x| x.parse().ok()).expect("offset");
        let n = f.next().and_then(|x| x.parse().ok()).expect("count");
        ((p, o), n)
    })
    .collect()
}

/// One message of a topic, as the checks need it.
#[derive(Debug, Clone)]
struct Msg {
    payload: Vec<u8>,
    headers: BTreeMap<String, String>,
}

/// Every message of `topic` (reads to the high watermarks).
fn read_all(brokers: &str, topic: &str) -> Vec<Msg> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluicegate-reliability-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut ends = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for &p in &parts {
        let (_, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(p, high);
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("offset");
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut at: BTreeMap<i32, i64> = parts.iter().map(|&p| (p, 0)).collect();
    let start = Instant::now();
    while at.iter().any(|(p, o)| *o < ends[p]) {
        assert!(
            start.elapsed() < patience(),
            "reading {topic}: at {at:?} of {ends:?}"
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                at.insert(m.partition(), m.offset() + 1);
                let headers = m
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
                    .unwrap_or_default();
                out.push(Msg {
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
            Some(Err(e)) => eprintln!("reader: {e}"),
            None => {}
        }
    }
    out
}

/// The reconciliation of one scenario.
#[derive(Debug, Default)]
struct Reconciliation {
    records_in: u64,
    stored: u64,
    dead_lettered: u64,
    dropped: u64,
    duplicate_rows: u64,
    output_duplicates: u64,
    lost: u64,
}

impl std::fmt::Display for Reconciliation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "in {} = stored {} + dead-lettered {} + dropped {}; duplicate rows {}, output duplicates {}, lost {}",
            self.records_in,
            self.stored,
            self.dead_lettered,
            self.dropped,
            self.duplicate_rows,
            self.output_duplicates,
            self.lost
        )
    }
}

/// One scenario's pipeline: its topics, table and group. Where each input
/// record lands (partition, offset) is up to the partitioner, so the checks
/// work from the topics themselves: rows by origin, dead letters by their
/// origin headers, output records by `id`.
struct Pipeline<'a> {
    cluster: &'a Cluster,
    records: u64,
    malformed: f64,
    table: String,
    group: String,
}

impl<'a> Pipeline<'a> {
    fn new(cluster: &'a Cluster, name: &str, records: u64, malformed: f64) -> Self {
        let table = format!("rel_{name}_{}", std::process::id());
        psql(&format!("DROP TABLE IF EXISTS {table}"));
        Pipeline {
            cluster,
            records,
            malformed,
            table,
            group: format!("{name}-{}", std::process::id()),
        }
    }

    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut a = vec!["run".to_string()];
        a.extend(self.cluster.args());
        a.extend(
            [
                "--group",
                &self.group,
                "--store",
                DATABASE,
                "--table",
                &self.table,
                "--kafka-property",
                "batch.num.messages=1",
                "--kafka-property",
                "session.timeout.ms=6000",
            ]
            .map(String::from),
        );
        if !extra.contains(&"--http") {
            a.extend(["--http", "off"].map(String::from));
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    fn spawn(&self, extra: &[&str]) -> (std::process::Child, StderrLog) {
        let args = self.args(extra);
        let mut child = sluicegate(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .env("RUST_LOG", "info,librdkafka=warn")
            .spawn()
            .expect("spawn sluicegate");
        let log = watch_stderr(&mut child);
        (child, log)
    }

    fn good(&self) -> u64 {
        self.records - count_malformed(0, self.records, self.malformed)
    }

    /// Waits until every good record has a row (the binary creates the
    /// table when it starts, so at first there may be none).
    fn wait_stored(&self, log: &StderrLog) {
        let start = Instant::now();
        loop {
            let created = psql(&format!("SELECT to_regclass('{}') IS NOT NULL", self.table)) == "t";
            let n: u64 = if created {
                psql(&format!(
                    "SELECT count(*) FROM (SELECT 1 FROM {} LIMIT {}) t",
                    self.table,
                    self.good()
                ))
                .parse()
                .unwrap_or(0)
            } else {
                0
            };
            if n >= self.good() {
                return;
            }
            assert!(
                start.elapsed() < patience() * 3,
                "{n} of {} rows; log:\n{}",
                self.good(),
                log.text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Reconciles the input topic against the table, the dead-letter topic
    /// and the output topic; panics on any loss, naming it.
    fn reconcile(&self, what: &str) -> Reconciliation {
        let rows = stored(&self.table);
        let dead = read_all(&self.cluster.brokers, &self.cluster.dead_letters);
        let output = read_all(&self.cluster.brokers, &self.cluster.output);
        let input = read_all(&self.cluster.brokers, &self.cluster.input);
        assert_eq!(input.len() as u64, self.records, "the input topic");

        // Dead letters by origin (partition, offset), each with its reason.
        let mut dead_origins = BTreeSet::new();
        for d in &dead {
            let reason = d
                .headers
                .get("sluicegate.error")
                .cloned()
                .unwrap_or_default();
            assert!(!reason.is_empty(), "a dead letter without a reason: {d:?}");
            let p: i32 = d.headers["sluicegate.origin.partition"]
                .parse()
                .expect("partition");
            let o: i64 = d.headers["sluicegate.origin.offset"]
                .parse()
                .expect("offset");
            dead_origins.insert((p, o));
        }
        // Output records by id.
        let mut out_ids: BTreeMap<String, u64> = BTreeMap::new();
        for m in &output {
            let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("output is JSON");
            *out_ids
                .entry(v["id"].as_str().expect("id").to_string())
                .or_default() += 1;
        }
        let good_ids: BTreeSet<String> = (0..self.records)
            .filter(|&i| is_malformed(i, self.malformed).is_none())
            .map(sluicegate_runner::generate::id)
            .collect();

        let stored_n = rows.len() as u64;
        let duplicate_rows = rows.values().map(|n| n - 1).sum();
        let missing_out = good_ids
            .iter()
            .filter(|id| !out_ids.contains_key(*id))
            .count() as u64;
        let output_duplicates = out_ids.values().map(|n| n - 1).sum();
        let r = Reconciliation {
            records_in: self.records,
            stored: stored_n,
            dead_lettered: dead_origins.len() as u64,
            dropped: 0,
            duplicate_rows,
            output_duplicates,
            lost: self
                .records
                .saturating_sub(stored_n + dead_origins.len() as u64)
                + missing_out,
        };
        println!("{what}: {r}");
        assert_eq!(r.lost, 0, "{what}: records lost: {r}");
        assert_eq!(r.duplicate_rows, 0, "{what}: the store is idempotent: {r}");
        assert_eq!(stored_n + r.dead_lettered, self.records, "{what}: {r}");
        r
    }
}

impl Drop for Pipeline<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                DATABASE,
                "-qc",
                &format!("DROP TABLE IF EXISTS {}", self.table),
            ])
            .output();
    }
}

/// Scenario 5: Poison input: a third of the records malformed (every kind); each bad
/// one in the dead-letter topic with a reason, each good one stored, the
/// pipeline never stops.
#[test]
fn poison_input_is_dead_lettered_and_the_rest_stored() {
    let records = 3_000 * scale();
    let cluster = Cluster::real("poison", PARTITIONS, records, 0.33);
    let p = Pipeline::new(&cluster, "poison", records, 0.33);
    let (child, log) = p.spawn(&[]);
    p.wait_stored(&log);
    cluster.wait_committed(&p.group, PARTITIONS, records as i64);
    assert!(
        matches!(std::process::Command::new("kill").args(["-0", &child.id().to_string()]).status(), Ok(s) if s.success()),
        "the pipeline is still running"
    );
    signal(&child, "TERM");
    let out = finish(child, PATIENCE, "the poison run after SIGTERM");
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    let r = p.reconcile("poison input");
    assert_eq!(r.dead_lettered, count_malformed(0, records, 0.33));
    assert_eq!(r.output_duplicates, 0, "{r}");
}

/// Scenario 6: A stage that panics on some records: those dead-lettered with the
/// panic message, the rest stored.
#[test]
fn a_panicking_stage_dead_letters_with_the_panic_message() {
    let records = 2_000 * scale();
    let cluster = Cluster::real("panic", PARTITIONS, records, 0.02);
    let p = Pipeline::new(&cluster, "panic", records, 0.02);
    let (child, log) = p.spawn(&["--panic-on-id-suffix", "3"]);
    let panicking = (0..records)
        .filter(|&i| i % 10 == 3 && is_malformed(i, 0.02).is_none())
        .count() as u64;
    let expect_rows = p.good() - panicking;
    let start = Instant::now();
    while stored(&p.table).len() as u64 != expect_rows
        || cluster.committed(&p.group, PARTITIONS) < records as i64
    {
        assert!(start.elapsed() < patience() * 3, "log:\n{}", log.text());
        std::thread::sleep(Duration::from_millis(200));
    }
    signal(&child, "TERM");
    let out = finish(child, PATIENCE, "the panic run after SIGTERM");
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    let dead = read_all(&cluster.brokers, &cluster.dead_letters);
    let panics = dead
        .iter()
        .filter(|d| {
            d.headers
                .get("sluicegate.error")
                .is_some_and(|e| e.contains("fault injection"))
        })
        .count() as u64;
    assert_eq!(
        panics, panicking,
        "each panicking record dead-lettered with the panic message"
    );
    let rows = stored(&p.table).len() as u64;
    assert_eq!(rows, expect_rows);
    println!(
        "panicking stage: in {records} = stored {rows} + dead-lettered {} ({panicking} panics); lost 0",
        dead.len()
    );
}

/// Scenario 7: SIGTERM mid-run: exit 0 within the drain timeout; a restart in the
/// same group writes no duplicate output record.
#[test]
fn sigterm_then_restart_writes_no_duplicate_output() {
    let records = 4_000 * scale();
    let cluster = Cluster::real("sigterm", PARTITIONS, records, 0.02);
    let p = Pipeline::new(&cluster, "sigterm", records, 0.02);
    let slow = [
        "--hash-rounds",
        "200",
        "--transform-workers",
        "1",
        "--drain-timeout",
        "30",
    ];
    let (child, log) = p.spawn(&slow);
    cluster.wait_committed(&p.group, PARTITIONS, (records / 4) as i64);
    let asked = Instant::now();
    signal(&child, "TERM");
    let out = finish(child, PATIENCE, "the drain after SIGTERM");
    let took = asked.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    assert!(
        took < Duration::from_secs(30),
        "drained within the timeout: {took:?}"
    );
    let committed = cluster.committed(&p.group, PARTITIONS);
    assert!(committed < records as i64, "stopped mid-run");

    let (child, log) = p.spawn(&slow);
    p.wait_stored(&log);
    cluster.wait_committed(&p.group, PARTITIONS, records as i64);
    signal(&child, "TERM");
    let out = finish(child, PATIENCE, "the restart after SIGTERM");
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    let r = p.reconcile("SIGTERM and restart");
    println!("SIGTERM after {committed} committed; drain took {took:?}");
    assert_eq!(r.output_duplicates, 0, "{r}");
}

/// Scenario 1: kill -9 at several moments, restarting each time: nothing lost, no
/// duplicate rows, output duplicates within the in-flight window.
///
/// On the mock cluster (a real broker over TCP to the binary): Tansu 0.6.0
/// does not expire a killed member after its session timeout, so after a
/// few kills it assigns the restarted process no partitions at all
/// (`partitions assigned partitions=[]`) and the run starves.
#[test]
fn kill_9_and_restart_loses_nothing() {
    let records = if scale() > 1 { 200_000 } else { 6_000 };
    let kills = if scale() > 1 { 10 } else { 3 };
    // The mock keeps about 5 MiB per partition.
    let parts: i32 = if scale() > 1 { 16 } else { PARTITIONS };
    let cluster = Cluster::new(parts, records, 0.02);
    let p = Pipeline::new(&cluster, "kill9", records, 0.02);
    // Slow enough at the default size that the kills land mid-stream; the
    // long variant is long by itself.
    let slow: &[&str] = if scale() > 1 {
        &[]
    } else {
        &["--hash-rounds", "100", "--transform-workers", "1"]
    };
    // Random moments (the seed is printed, so a failure can be replayed
    // with SLUICEGATE_KILL_SEED): each kill comes once the group has
    // committed a random share of the input, in increasing order.
    let seed: u64 = std::env::var("SLUICEGATE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let mut at: Vec<i64> = (0..kills)
        .map(|_| rand::Rng::random_range(&mut rng, 1..records as i64 * 9 / 10))
        .collect();
    at.sort_unstable();
    println!("kill -9 seed {seed}: after {at:?} committed");
    for (k, &moment) in at.iter().enumerate() {
        let k = k + 1;
        let (mut child, log) = p.spawn(slow);
        let waiting = Instant::now();
        while cluster.committed(&p.group, parts) < moment {
            assert!(
                waiting.elapsed() < patience(),
                "run {k}: {moment} not committed within {:?} (seed {seed}); its log:\n{}",
                patience(),
                log.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().expect("kill -9");
        let _ = child.wait();
        println!(
            "kill -9 number {k} at {} committed",
            cluster.committed(&p.group, parts)
        );
        drop(log);
    }
    let (child, log) = p.spawn(slow);
    p.wait_stored(&log);
    cluster.wait_committed(&p.group, parts, records as i64);
    signal(&child, "TERM");
    let out = finish(child, PATIENCE, "the last run after SIGTERM");
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    let r = p.reconcile(&format!("kill -9 x{kills}"));
    // What can be in flight when the process dies: every mailbox of the
    // pipeline full (their default capacities), per kill.
    let window = (256 + 256 + 16 + 2_000 + 2_048 + 2_048) as u64 * kills as u64;
    assert!(r.output_duplicates <= window, "{r}");
}

/// Scenario 2: Broker outage (mock cluster: Tansu keeps its topics in memory and
/// would lose them): the broker down mid-run and up again; nothing lost, the
/// pipeline resumes by itself, memory stays bounded meanwhile.
#[test]
fn broker_outage_then_recovery_loses_nothing() {
    let records = 20_000 * scale().min(4);
    let cluster = Cluster::new(8, records, 0.02);
    let mock = cluster._cluster.as_ref().expect("mock");
    let group = "outage";
    let args = [
        "run",
        "--brokers",
        &cluster.brokers,
        "--group",
        group,
        "--http",
        "off",
        "--hash-rounds",
        "100",
        "--transform-workers",
        "1",
        "--until-caught-up",
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let summary_file = dir.path().join("summary.json");
    let db = dir.path().join("outage.db");
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.extend([
        "--summary-file".into(),
        summary_file.display().to_string(),
        "--store".into(),
        format!("sqlite://{}", db.display()),
    ]);
    let mut child = sluicegate(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .env("RUST_LOG", "info,librdkafka=error")
        .spawn()
        .expect("spawn");
    let log = watch_stderr(&mut child);
    cluster.wait_committed(group, 8, (records / 5) as i64);
    mock.broker_down(1).expect("broker down");
    let before = rss_of(child.id());
    let mut peak = before;
    let outage = Duration::from_secs(30);
    let start = Instant::now();
    while start.elapsed() < outage {
        peak = peak.max(rss_of(child.id()));
        std::thread::sleep(Duration::from_millis(100));
    }
    mock.broker_up(1).expect("broker up");
    let out = finish(child, patience() * 2, "the run after the outage");
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    let s = summary(&summary_file);
    let bad = count_malformed(0, records, 0.02);
    println!(
        "broker outage of {outage:?}: in {} = stored {} (+{} already) + dead-lettered {}; RSS {} MiB before, {} MiB peak during",
        n(&s, "records_in"),
        n(&s, "stored"),
        n(&s, "duplicates"),
        n(&s, "dead_lettered"),
        before / (1 << 20),
        peak / (1 << 20)
    );
    // A batch whose commit went through just as the broker went away can be
    // written again after a retry: the store keeps one row ("already stored").
    assert_eq!(
        n(&s, "stored") + n(&s, "duplicates"),
        records - bad,
        "every good record stored: {s}"
    );
    assert_eq!(sqlite_rows(&db), records - bad, "one row per good record");
    assert_eq!(n(&s, "failed"), 0, "{s}");
    assert!(
        peak < before + (64 << 20),
        "memory bounded during the outage: {before} -> {peak}"
    );
}

/// The resident set of process `pid`, bytes.
fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Scenario 3: Stall: the store blocked by a held PostgreSQL lock for longer than
/// max.poll.interval.ms: no rebalance, memory flat, nothing lost after the
/// release.
#[test]
fn a_store_held_by_a_lock_stalls_without_a_rebalance() {
    let records = 4_000 * scale();
    let cluster = Cluster::real("stall", PARTITIONS, records, 0.02);
    let p = Pipeline::new(&cluster, "stall", records, 0.02);
    let http = free_local_address();
    let (child, log) = p.spawn(&[
        "--kafka-property",
        "max.poll.interval.ms=8000",
        "--http",
        &http,
    ]);
    cluster.wait_committed(&p.group, PARTITIONS, (records / 5) as i64);
    // Hold an exclusive lock on the table for 12 s (> max.poll.interval.ms).
    let locker = std::process::Command::new("psql")
        .args([
            DATABASE,
            "-qc",
            &format!(
                "BEGIN; LOCK TABLE {} IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(12); COMMIT;",
                p.table
            ),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("psql lock");
    let before = rss_of(child.id());
    let mut peak = before;
    let mut locker = locker;
    // While the lock holds, the status page must name the store, stuck in
    // one insert, as the bottleneck: busy over a whole window it spends in
    // one call.
    let mut named = None;
    let mut last_status = serde_json::Value::Null;
    while locker.try_wait().expect("locker").is_none() {
        peak = peak.max(rss_of(child.id()));
        if named.is_none()
            && let Some(status) = get_json(&http, "/status")
        {
            let bottleneck = &status["bottleneck"];
            if bottleneck["stage"] == "store" && bottleneck["busy"].as_f64() >= Some(0.9) {
                named = Some(bottleneck.clone());
            }
            last_status = status;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let named = named.unwrap_or_else(|| {
        panic!(
            "the status page never named the stalled store as the bottleneck; last split {} and bottleneck {}",
            last_status["split"], last_status["bottleneck"]
        )
    });
    println!("stall: the status page's bottleneck during the lock: {named}");
    p.wait_stored(&log);
    cluster.wait_committed(&p.group, PARTITIONS, records as i64);
    signal(&child, "TERM");
    let out = finish(child, PATIENCE, "the stalled run after SIGTERM");
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    let text = log.text();
    assert_eq!(
        text.matches("partitions assigned").count(),
        1,
        "no rebalance during the stall:\n{text}"
    );
    let r = p.reconcile("store stalled by a lock");
    println!(
        "stall: RSS {} MiB before, {} MiB peak during",
        before >> 20,
        peak >> 20
    );
    assert!(peak < before + (64 << 20), "memory flat during the stall");
    assert_eq!(r.output_duplicates, 0, "{r}");
}

/// Scenario 8: load. Records at the rate the broker gives them, into a store
/// made slow on purpose (a trigger sleeps 20 ms per insert statement):
/// the pipeline holds what its mailboxes allow and no more, so the peak
/// resident memory stays within the budget for the whole run and the
/// second half of the run needs no more memory than the first. On the mock
/// cluster (in this process), which takes records far faster than Tansu.
#[test]
fn load_with_a_slow_store_keeps_memory_within_the_budget() {
    const BUDGET: u64 = 128 << 20;
    let records = 100_000 * scale();
    // The mock keeps about 5 MiB per partition.
    let partitions = (records / 20_000).max(8) as i32;
    let cluster = Cluster::new(partitions, records, 0.01);
    let table = format!("rel_load_{}", std::process::id());
    psql(&format!("DROP TABLE IF EXISTS {table}"));
    psql(&format!(
        "CREATE TABLE {table} (id TEXT PRIMARY KEY, topic TEXT, \"partition\" INTEGER, \"offset\" BIGINT, \
         payload JSONB NOT NULL, stored_at TIMESTAMPTZ NOT NULL DEFAULT now());
         CREATE OR REPLACE FUNCTION {table}_slow() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_sleep(0.02); RETURN NULL; END $$;
         CREATE TRIGGER {table}_slow AFTER INSERT ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {table}_slow();"
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let summary_file = dir.path().join("summary.json");
    let args: Vec<String> = [
        "run",
        "--brokers",
        &cluster.brokers,
        "--group",
        "load",
        "--store",
        DATABASE,
        "--table",
        &table,
        "--http",
        "off",
        "--until-caught-up",
        "--summary-file",
        &summary_file.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut child = sluicegate(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .env("RUST_LOG", "info,librdkafka=error")
        .spawn()
        .expect("spawn");
    let log = watch_stderr(&mut child);
    let pid = child.id();
    let started = Instant::now();
    let mut samples: Vec<(u64, u64)> = Vec::new(); // (committed, rss)
    while child.try_wait().expect("try_wait").is_none() {
        assert!(started.elapsed() < patience() * 6, "log:\n{}", log.text());
        let rss = rss_of(pid);
        if rss > 0 {
            samples.push((cluster.committed("load", partitions) as u64, rss));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let out = finish(child, PATIENCE, "the load run");
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    let s = summary(&summary_file);
    let bad = count_malformed(0, records, 0.01);
    let rows: u64 = psql(&format!("SELECT count(*) FROM {table}"))
        .parse()
        .expect("count");
    psql(&format!(
        "DROP TABLE IF EXISTS {table}; DROP FUNCTION IF EXISTS {table}_slow()"
    ));
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let first_half = samples
        .iter()
        .filter(|s| s.0 < records / 2)
        .map(|s| s.1)
        .max()
        .unwrap_or(0);
    let second_half = samples
        .iter()
        .filter(|s| s.0 >= records / 2)
        .map(|s| s.1)
        .max()
        .unwrap_or(0);
    println!(
        "load: {records} records in {:.1} s ({:.0}/s) into a slow store; rows {rows}, dead-lettered {}; peak RSS {} MiB (budget {} MiB; first half {} MiB, second half {} MiB)",
        n_f(&s, "elapsed_s"),
        n_f(&s, "throughput"),
        n(&s, "dead_lettered"),
        peak >> 20,
        BUDGET >> 20,
        first_half >> 20,
        second_half >> 20
    );
    assert_eq!(rows, records - bad, "every good record stored: {s}");
    assert_eq!(n(&s, "dead_lettered"), bad, "{s}");
    assert!(peak <= BUDGET, "peak RSS {peak} over the budget {BUDGET}");
    assert!(
        second_half <= first_half + (16 << 20),
        "memory grew over the run: {first_half} then {second_half}"
    );
}

fn n_f(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

/// A loopback address with a free port, for `--http`.
fn free_local_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").to_string()
}

/// `GET path` from the binary's status server, parsed as JSON; `None` while
/// it does not answer.
fn get_json(addr: &str, path: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let (_, body) = reply.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}
