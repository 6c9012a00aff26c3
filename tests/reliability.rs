//! The reliability suite: the real `sluicegate` binary, run as a user runs
//! it, against Apache Kafka (KRaft, from scripts/kafka-up; the outage
//! scenario starts a broker of its own so that stopping it leaves the
//! others alone) and PostgreSQL.
//!
//! Every scenario ends in the same reconciliation, built from what the
//! broker and the database hold, never from the binary's own counters:
//!
//! - the input's (partition, offset) set, read from the input topic, each
//!   record known good or malformed from its payload;
//! - stored = the table's origins, dead-lettered = the origins the
//!   dead-letter topic's headers name (each with a reason);
//! - stored and dead-lettered are disjoint and together the input, exactly:
//!   every good record stored (unless the scenario makes it fail), every
//!   malformed one dead-lettered;
//! - the output topic holds exactly the stored records' ids (duplicates
//!   counted, and bounded where a scenario says so);
//! - the group's committed offsets reach every partition's end;
//! - an outside client (Kafka's Java console consumer) reads the same
//!   output and dead-letter records.
//!
//! Longer variants: `SLUICEGATE_RELIABILITY_SCALE=10` multiplies the record
//! counts (docs/RELIABILITY.md has the figures of both).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::reconcile::*;
use common::*;
use sluicegate_runner::generate::count_malformed;

const PARTITIONS: i32 = 4;

/// Scenario 5: poison input, a third of the records malformed (every kind):
/// each bad one in the dead-letter topic with a reason, each good one
/// stored and produced, and the pipeline never stops.
#[test]
fn poison_input_is_dead_lettered_and_the_rest_stored() {
    let records = 3_000 * scale();
    let cluster = Cluster::real("poison", PARTITIONS, records, 0.33);
    let p = Pipeline::new(&cluster, "poison", records, 0.33);
    let (mut child, log) = p.spawn(&[]);
    p.wait_stored(&log);
    p.wait_committed_all(&log);
    assert!(running(&mut child), "the pipeline is still running");
    signal(&child, "TERM");
    let out = finish(child, PATIENCE, "the poison run after SIGTERM");
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    let r = p.reconcile("poison input", "read_uncommitted");
    assert_eq!(r.dead_lettered, count_malformed(0, records, 0.33));
    assert_eq!(r.output_duplicates, 0, "{r}");
    assert_eq!(r.dead_letter_duplicates, 0, "{r}");
}

/// Scenario 6: a stage that panics on some records (ids ending in 3):
/// those dead-lettered with the panic message, the rest stored.
#[test]
fn a_panicking_stage_dead_letters_with_the_panic_message() {
    let records = 2_000 * scale();
    let cluster = Cluster::real("panic", PARTITIONS, records, 0.02);
    let mut p = Pipeline::new(&cluster, "panic", records, 0.02);
    p.fails = Box::new(|i| i % 10 == 3);
    let (child, log) = p.spawn(&["--panic-on-id-suffix", "3"]);
    p.wait_stored(&log);
    p.wait_committed_all(&log);
    signal(&child, "TERM");
    let out = finish(child, PATIENCE, "the panic run after SIGTERM");
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    let r = p.reconcile("panicking stage", "read_uncommitted");
    let panicked: BTreeSet<(i32, i64)> = p
        .read(&cluster.dead_letters, "read_uncommitted")
        .iter()
        .filter(|d| {
            d.headers
                .get("sluicegate.error")
                .is_some_and(|e| e.contains("fault injection"))
        })
        .map(Msg::origin)
        .collect();
    let want: BTreeSet<(i32, i64)> = p
        .input
        .good
        .iter()
        .filter(|(_, i)| *i % 10 == 3)
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(
        panicked, want,
        "each panicking record dead-lettered with the panic message"
    );
    println!("panicking stage: {} panics dead-lettered", want.len());
    assert_eq!(r.output_duplicates, 0, "{r}");
}

/// Scenario 7: SIGTERM mid-run: exit 0 within the drain timeout, every
/// record below the committed offsets finished; a restart in the same
/// group finishes the rest and writes no duplicate output record.
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
    let committed = p.committed();
    let total: i64 = committed.values().sum();
    assert!(total < records as i64, "stopped mid-run: {committed:?}");
    p.check_committed_only_finished(&committed, "after SIGTERM");

    let (child, log) = p.spawn(&slow);
    p.wait_stored(&log);
    p.wait_committed_all(&log);
    signal(&child, "TERM");
    let out = finish(child, PATIENCE, "the restart after SIGTERM");
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    let r = p.reconcile("SIGTERM and restart", "read_uncommitted");
    println!("SIGTERM after {total} committed; drain took {took:?}");
    assert_eq!(r.output_duplicates, 0, "{r}");
    assert_eq!(r.dead_letter_duplicates, 0, "{r}");
}

/// Random kill moments, printed with their seed so a failure can be
/// replayed (`SLUICEGATE_KILL_SEED`): each a share of the input committed,
/// in increasing order.
fn kill_moments(kills: usize, records: u64) -> (u64, Vec<i64>) {
    let seed: u64 = std::env::var("SLUICEGATE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let mut at: Vec<i64> = (0..kills)
        .map(|_| rand::Rng::random_range(&mut rng, 1..records as i64 * 9 / 10))
        .collect();
    at.sort_unstable();
    (seed, at)
}

/// How far a run has got, for choosing kill moments.
#[derive(Clone, Copy)]
enum Progress {
    /// Records the group committed (in exactly-once mode a committed-offset
    /// read waits for an open transaction, so kills would always land just
    /// after a commit).
    Committed,
    /// Rows in the table (independent of the transactions).
    Stored,
}

/// Runs the pipeline with `extra` flags, `kill -9`ing it each time it has
/// got to the next of `moments` (and past where it started); after each
/// kill checks that every record below the committed offsets is finished.
/// Returns each run's start (time, committed offsets then), the last run's
/// included, which is left to finish and stopped with SIGTERM.
fn kill_repeatedly(
    p: &Pipeline<'_>,
    extra: &[&str],
    moments: &[i64],
    progress: Progress,
    seed: u64,
) -> Vec<(i64, BTreeMap<i32, i64>)> {
    kill_repeatedly_checking(p, extra, moments, progress, seed, &|_, _| {})
}

/// [`kill_repeatedly`], running `after_kill(pipeline, k)` after kill `k`.
fn kill_repeatedly_checking(
    p: &Pipeline<'_>,
    extra: &[&str],
    moments: &[i64],
    progress: Progress,
    seed: u64,
    after_kill: &dyn Fn(&Pipeline<'_>, usize),
) -> Vec<(i64, BTreeMap<i32, i64>)> {
    let measure = || match progress {
        Progress::Committed => p.committed().values().sum::<i64>(),
        Progress::Stored => p.stored().len() as i64,
    };
    let mut starts = Vec::new();
    for (k, &moment) in moments.iter().enumerate() {
        let k = k + 1;
        starts.push((now_ms(), p.committed()));
        let from = measure();
        let (mut child, log) = p.spawn(extra);
        let waiting = Instant::now();
        while measure() < moment.max(from + 1) {
            assert!(
                running(&mut child),
                "run {k} exited before its kill (seed {seed}); its log:\n{}",
                log.text()
            );
            assert!(
                waiting.elapsed() < patience(),
                "run {k}: {moment} not reached within {:?} (seed {seed}); its log:\n{}",
                patience(),
                log.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().expect("kill -9");
        let _ = child.wait();
        let committed = p.committed();
        println!(
            "kill -9 number {k} at {} stored, {} committed",
            p.stored().len(),
            committed.values().sum::<i64>()
        );
        p.check_committed_only_finished(&committed, &format!("after kill -9 number {k}"));
        after_kill(p, k);
    }
    starts.push((now_ms(), p.committed()));
    let (child, log) = p.spawn(extra);
    p.wait_stored(&log);
    p.wait_committed_all(&log);
    signal(&child, "TERM");
    let out = finish(child, PATIENCE, "the last run after SIGTERM");
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    starts
}

/// Scenario 1: `kill -9` at random moments, restarting each time: after
/// each kill every record below the committed offsets is finished; at the
/// end nothing is lost, and every duplicate output is a record that was
/// past the committed offsets when its run started.
#[test]
fn kill_9_and_restart_loses_nothing() {
    let records = if scale() > 1 { 200_000 } else { 6_000 };
    let kills = if scale() > 1 { 10 } else { 3 };
    let parts: i32 = if scale() > 1 { 16 } else { PARTITIONS };
    let cluster = Cluster::real("kill9", parts, records, 0.02);
    let p = Pipeline::new(&cluster, "kill9", records, 0.02);
    p.count_attempts();
    // Slow enough at the default size that the kills land mid-stream; the
    // long variant is long by itself.
    let slow: &[&str] = if scale() > 1 {
        &[]
    } else {
        &["--hash-rounds", "100", "--transform-workers", "1"]
    };
    let (seed, moments) = kill_moments(kills, records);
    println!("kill -9 seed {seed}: after {moments:?} committed");
    let started = Instant::now();
    let starts = kill_repeatedly(&p, slow, &moments, Progress::Committed, seed);
    let r = p.reconcile(&format!("kill -9 x{kills}"), "read_uncommitted");
    p.check_rereads(&starts, &format!("kill -9 x{kills}"));
    let (attempted, twice) = p.attempts();
    println!(
        "kill -9 x{kills}: {records} records in {:.0} s; {attempted} rows attempted, {twice} of them more than once (at-least-once: a row stored but not yet committed is written again, and the key turns it away)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(r.records_in, records);
    assert_eq!(attempted, r.stored, "every stored row was attempted");
}

/// Exactly-once into the database (`--store-offsets`): `kill -9` at random
/// moments, restarting each time. The group's offsets live in PostgreSQL,
/// written in each batch's transaction with its rows, so after a crash no
/// stored row is attempted again (counted by a trigger), every stored row
/// is below its partition's stored offset at every kill, the stored
/// offsets never pass an unfinished record, and at the end they equal the
/// input's end.
#[test]
fn store_offsets_kill_9_attempts_each_row_once() {
    let records = if scale() > 1 { 200_000 } else { 6_000 };
    let kills = if scale() > 1 { 10 } else { 3 };
    let parts: i32 = if scale() > 1 { 16 } else { PARTITIONS };
    let cluster = Cluster::real("dboffsets", parts, records, 0.02);
    let p = Pipeline::new(&cluster, "dboffsets", records, 0.02);
    p.count_attempts();
    let slow: &[&str] = if scale() > 1 {
        &["--store-offsets"]
    } else {
        &[
            "--store-offsets",
            "--hash-rounds",
            "100",
            "--transform-workers",
            "1",
        ]
    };
    let (seed, moments) = kill_moments(kills, records);
    println!("store offsets, kill -9 seed {seed}: after {moments:?} stored");
    let started = Instant::now();
    let rows_below_offsets = |p: &Pipeline<'_>, k: usize| {
        let offsets = p.stored_offsets();
        p.check_committed_only_finished(
            &offsets,
            &format!("after kill -9 number {k}, the stored offsets"),
        );
        let past: Vec<(i32, i64)> = p
            .stored()
            .into_iter()
            .filter(|(part, o)| *o >= offsets.get(part).copied().unwrap_or(0))
            .take(10)
            .collect();
        assert!(
            past.is_empty(),
            "after kill -9 number {k}: rows stored past the stored offsets {offsets:?}, e.g. {past:?}"
        );
    };
    let starts = kill_repeatedly_checking(
        &p,
        slow,
        &moments,
        Progress::Stored,
        seed,
        &rows_below_offsets,
    );
    let r = p.reconcile(
        &format!("store offsets, kill -9 x{kills}"),
        "read_uncommitted",
    );
    p.check_rereads(&starts, "store offsets");
    let (attempted, twice) = p.attempts();
    println!(
        "store offsets, kill -9 x{kills}: {records} records in {:.0} s; {attempted} rows attempted, {twice} more than once",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(attempted, r.stored, "every stored row attempted");
    assert_eq!(twice, 0, "no stored row attempted twice");
    assert_eq!(
        p.stored_offsets(),
        end_offsets(&cluster.brokers, &cluster.input),
        "the stored offsets reach every partition's end"
    );
}

/// Scenario 2: a real broker outage. The broker process (one of its own,
/// so the other tests keep theirs) is stopped for 30 s mid-run and started
/// again with its data. The input is larger than what the consumer may
/// prefetch, so the pipeline runs dry while the broker is down; records
/// still in the (slowed) store when it stops finish meanwhile (rows in the
/// database), and their offsets are committed only once the broker is
/// back; it resumes by itself, memory stays bounded, nothing is lost.
#[test]
fn broker_outage_then_recovery_loses_nothing() {
    let records = 20_000 * scale().min(4);
    let broker = Broker::start("outage");
    let cluster = Cluster::real_on(&broker.address(), "outage", 8, records, 0.02);
    let p = Pipeline::new(&cluster, "outage", records, 0.02);
    // Each store batch takes 0.5 s (a trigger), so thousands of records the
    // output topic already took are still waiting for the store when the
    // broker stops: they finish during the outage, when no commit can reach
    // the broker. (At full speed the store could finish them, and their
    // commits succeed, while the broker is still shutting down.)
    slow_store(&p.table, 0.5);
    let (mut child, log) = p.spawn(&[
        "--hash-rounds",
        "100",
        "--transform-workers",
        "1",
        // Prefetch at most 256 KiB (about 1,600 records of 20,000), in
        // fetches of at most 16 KiB per partition.
        "--kafka-property",
        "queued.max.messages.kbytes=256",
        "--kafka-property",
        "max.partition.fetch.bytes=16384",
        "--kafka-property",
        "fetch.max.bytes=65536",
        "--kafka-property",
        "message.max.bytes=65536",
        "--kafka-property",
        "reconnect.backoff.max.ms=1000",
        // A commit waiting for the absent broker fails after 5 s (the
        // default, 60 s, would hold it past the outage, and it would then
        // succeed: nothing to see failing).
        "--kafka-property",
        "socket.timeout.ms=5000",
    ]);
    cluster.wait_committed(&p.group, 8, (records / 5) as i64);
    let committed_before = p.committed();
    let log_before = log.text().len();
    println!(
        "outage: stopping the broker at {} stored, {committed_before:?} committed",
        p.stored().len()
    );
    // From here a store batch takes 2 s: what is in flight when the broker
    // stops takes longer to finish than the broker takes to shut down, so
    // records finish while it is down (with 0.5 s the store could drain
    // during a slow shutdown: 3 records were left in one run).
    set_store_delay(&p.table, 2.0);
    broker.stop();
    let stored_at_stop = p.stored().len();
    println!("outage: broker stopped at {stored_at_stop} stored");
    let before = rss_of(child.id());
    let mut peak = before;
    let outage = Duration::from_secs(30);
    let down = Instant::now();
    while down.elapsed() < outage {
        assert!(
            running(&mut child),
            "the pipeline exited during the outage:\n{}",
            log.text()
        );
        peak = peak.max(rss_of(child.id()));
        std::thread::sleep(Duration::from_millis(100));
    }
    let stored_during = p.stored().len();
    let during = log.text()[log_before..].to_string();
    broker.start_again();
    set_store_delay(&p.table, 0.0);
    assert!(
        stored_during < p.to_store().len(),
        "the outage hit fetching: the pipeline ran dry with {stored_during} of {} stored",
        p.to_store().len()
    );
    // Work finished while no commit could reach the broker: rows the
    // database took during the outage (read from the database, not the
    // binary's log). Their offsets must be committed after the broker is
    // back (wait_committed_all below), and only theirs (the reconciliation).
    assert!(
        stored_during > stored_at_stop,
        "records finished while the broker was down: {stored_at_stop} stored when it stopped, \
         {stored_during} when it came back"
    );
    // How librdkafka reported it, for the reader: a commit that waited for
    // the coordinator may fail (socket.timeout.ms) or wait out the outage.
    println!(
        "outage: {} records finished during the outage; commit failures logged meanwhile: {}",
        stored_during - stored_at_stop,
        during.matches("offset commit failed").count()
    );
    let after = p.committed();
    for (partition, before) in &committed_before {
        assert!(
            after[partition] >= *before,
            "the restarted broker kept the group's offsets: {committed_before:?} before, {after:?} after"
        );
    }
    p.wait_stored(&log);
    p.wait_committed_all(&log);
    signal(&child, "TERM");
    let out = finish(child, PATIENCE, "the run after the outage");
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    let r = p.reconcile("broker outage", "read_uncommitted");
    println!(
        "broker outage of {outage:?}: {stored_during} stored when the broker came back; RSS {} MiB before, {} MiB peak during",
        before >> 20,
        peak >> 20
    );
    assert!(r.records_in == records);
    assert!(
        peak < before + (64 << 20),
        "memory bounded during the outage: {before} -> {peak}"
    );
    drop_slow_store(&p.table);
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

/// Scenario 3: the store blocked by a held PostgreSQL lock for longer than
/// max.poll.interval.ms: no rebalance, the status page names the store as
/// the bottleneck meanwhile, memory flat, nothing lost after the release.
#[test]
fn a_store_held_by_a_lock_stalls_without_a_rebalance() {
    let records = 4_000 * scale();
    let cluster = Cluster::real("stall", PARTITIONS, records, 0.02);
    let p = Pipeline::new(&cluster, "stall", records, 0.02);
    let http = free_local_address();
    let (mut child, log) = p.spawn(&[
        "--kafka-property",
        "max.poll.interval.ms=8000",
        "--http",
        &http,
        // Slow enough that most of the input is still to come when the
        // lock is taken (at full speed the run could end first, and the
        // store would sit idle behind the lock).
        "--hash-rounds",
        "200",
        "--transform-workers",
        "1",
    ]);
    // Once the store has written its first rows (it created the table).
    let started = Instant::now();
    while p.stored().is_empty() {
        assert!(
            started.elapsed() < patience(),
            "nothing stored:\n{}",
            log.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Hold an exclusive lock on the table for 12 s (> max.poll.interval.ms).
    let mut locker = std::process::Command::new("psql")
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
    // While the lock holds, the status page must name the store, stuck in
    // one insert, as the bottleneck: busy over a whole window it spends in
    // one call.
    let mut named = None;
    let mut last_status = serde_json::Value::Null;
    while locker.try_wait().expect("locker").is_none() {
        assert!(
            running(&mut child),
            "the pipeline exited during the stall:\n{}",
            log.text()
        );
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
    let stored_at_release = p.stored().len();
    assert!(
        stored_at_release < p.to_store().len(),
        "the lock held the pipeline back: {stored_at_release} of {} stored when it was released",
        p.to_store().len()
    );
    let named = named.unwrap_or_else(|| {
        panic!(
            "the status page never named the stalled store as the bottleneck; last split {} and bottleneck {}",
            last_status["split"], last_status["bottleneck"]
        )
    });
    println!(
        "stall: the status page's bottleneck during the lock: {named}; {stored_at_release} stored when it was released"
    );
    p.wait_stored(&log);
    p.wait_committed_all(&log);
    signal(&child, "TERM");
    let out = finish(child, PATIENCE, "the stalled run after SIGTERM");
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    let text = log.text();
    assert_eq!(
        text.matches("partitions assigned").count(),
        1,
        "no rebalance during the stall:\n{text}"
    );
    let r = p.reconcile("store stalled by a lock", "read_uncommitted");
    println!(
        "stall: RSS {} MiB before, {} MiB peak during",
        before >> 20,
        peak >> 20
    );
    assert!(peak < before + (64 << 20), "memory flat during the stall");
    assert_eq!(r.output_duplicates, 0, "{r}");
}

/// Scenario 8: load. Records as fast as the broker gives them, into a
/// store made slow on purpose (a trigger sleeps 20 ms per insert
/// statement): the pipeline holds what its mailboxes allow and no more, so
/// the peak resident memory stays within the budget for the whole run and
/// the second half of the run needs no more memory than the first.
#[test]
fn load_with_a_slow_store_keeps_memory_within_the_budget() {
    const BUDGET: u64 = 128 << 20;
    let records = 100_000 * scale();
    let partitions = 8;
    let cluster = Cluster::real("load", partitions, records, 0.01);
    let p = Pipeline::new(&cluster, "load", records, 0.01);
    let table = &p.table;
    psql(&format!(
        "CREATE TABLE {table} (id TEXT PRIMARY KEY, topic TEXT, \"partition\" INTEGER, \"offset\" BIGINT, \
         payload JSONB NOT NULL, stored_at TIMESTAMPTZ NOT NULL DEFAULT now());
         CREATE OR REPLACE FUNCTION {table}_slow() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_sleep(0.02); RETURN NULL; END $$;
         CREATE TRIGGER {table}_slow AFTER INSERT ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {table}_slow();"
    ));
    let (mut child, log) = p.spawn(&[]);
    let pid = child.id();
    let started = Instant::now();
    let mut samples: Vec<(u64, u64)> = Vec::new(); // (committed, rss)
    let total = (records - 1) as i64;
    while p.committed().values().sum::<i64>() <= total {
        assert!(running(&mut child), "the load run exited:\n{}", log.text());
        assert!(started.elapsed() < patience() * 6, "log:\n{}", log.text());
        let rss = rss_of(pid);
        if rss > 0 {
            samples.push((p.committed().values().sum::<i64>() as u64, rss));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let elapsed = started.elapsed();
    signal(&child, "TERM");
    let out = finish(child, PATIENCE, "the load run");
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    let r = p.reconcile("load", "read_uncommitted");
    psql(&format!("DROP FUNCTION IF EXISTS {table}_slow() CASCADE"));
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let half = |first: bool| {
        samples
            .iter()
            .filter(|s| (s.0 < records / 2) == first)
            .map(|s| s.1)
            .max()
            .unwrap_or(0)
    };
    let (first_half, second_half) = (half(true), half(false));
    println!(
        "load: {records} records in {:.1} s ({:.0}/s) into a slow store; peak RSS {} MiB (budget {} MiB; first half {} MiB, second half {} MiB)",
        elapsed.as_secs_f64(),
        records as f64 / elapsed.as_secs_f64(),
        peak >> 20,
        BUDGET >> 20,
        first_half >> 20,
        second_half >> 20
    );
    assert_eq!(r.output_duplicates, 0, "{r}");
    assert!(peak <= BUDGET, "peak RSS {peak} over the budget {BUDGET}");
    assert!(
        second_half <= first_half + (16 << 20),
        "memory grew over the run: {first_half} then {second_half}"
    );
}

/// Scenario 9: exactly-once. `kill -9` at random moments of a run with
/// `--exactly-once` and a slow store (so the kills land while batches are
/// open), restarting each time: a `read_committed` reader of the output
/// topic sees every stored record exactly once; a `read_uncommitted` reader
/// sees the aborted transactions' records too (so the test can tell the
/// two apart); every record is in the table; nothing is lost.
#[test]
fn exactly_once_kill_9_reads_each_record_once() {
    let records = if scale() > 1 { 50_000 } else { 4_000 };
    let kills = if scale() > 1 { 10 } else { 3 };
    let cluster = Cluster::real("eos", PARTITIONS, records, 0.02);
    let p = Pipeline::new(&cluster, "eos", records, 0.02);
    slow_store(&p.table, 0.05);
    let flags = [
        "--exactly-once",
        "--transactional-id",
        &format!("eos-test-{}", std::process::id()),
        "--store-batch",
        "100",
        "--store-batch-wait-ms",
        "20",
        // A transaction stays open for this long after its records are
        // acknowledged: most kill moments fall inside one.
        "--fault-hold-transaction-ms",
        "200",
        "--hash-rounds",
        "100",
        "--transform-workers",
        "1",
    ];
    let (seed, moments) = kill_moments(kills, records);
    println!("exactly-once kill -9 seed {seed}: after {moments:?} committed");
    let starts = kill_repeatedly(&p, &flags, &moments, Progress::Stored, seed);
    let r = p.reconcile(&format!("exactly-once, kill -9 x{kills}"), "read_committed");
    assert_eq!(
        r.output_duplicates, 0,
        "read_committed: each record once: {r}"
    );
    let everything = p.read(&cluster.output, "read_uncommitted");
    let aborted = everything.len() as u64 - r.produced;
    println!(
        "exactly-once: read_uncommitted sees {} records, {aborted} of them from aborted transactions",
        everything.len()
    );
    assert!(
        aborted > 0,
        "the kills left transactions to abort, which read_uncommitted sees"
    );
    p.check_rereads(&starts, "exactly-once");
    drop_slow_store(&p.table);
}

/// Makes every insert statement into `table` sleep `seconds` (a trigger;
/// creates the table as the binary would).
fn slow_store(table: &str, seconds: f64) {
    psql(&format!(
        "CREATE TABLE {table} (id TEXT PRIMARY KEY, topic TEXT, \"partition\" INTEGER, \"offset\" BIGINT, \
         payload JSONB NOT NULL, stored_at TIMESTAMPTZ NOT NULL DEFAULT now());"
    ));
    set_store_delay(table, seconds);
    psql(&format!(
        "CREATE TRIGGER {table}_slow AFTER INSERT ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {table}_slow();"
    ));
}

/// Each insert statement into the slowed `table` (one store batch) takes
/// `seconds` from now on.
fn set_store_delay(table: &str, seconds: f64) {
    psql(&format!(
        "CREATE OR REPLACE FUNCTION {table}_slow() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$;"
    ));
}

fn drop_slow_store(table: &str) {
    psql(&format!("DROP FUNCTION IF EXISTS {table}_slow() CASCADE"));
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

/// Scenario 11: non-blocking retries (`--retry-delays`). A trigger makes
/// the store refuse one good record in ten with `55P03` (lock not
/// available: transient) while a fault flag is on (20 s, or until the
/// input is committed if that takes longer), and one in a hundred always.
/// The input's commits must reach its end while the fault is on (nothing
/// holds a partition behind a refused record); the fault then goes off. In the end every good record is stored exactly once (the
/// refused-for-a-while ones through the retry topics, under their first
/// reading's origin) or, for the always-refused, dead-lettered after the
/// last level with the history of its four attempts; the output topic has
/// no duplicate; the retry topics are drained (the retry group committed
/// their ends).
#[test]
fn non_blocking_retries_store_each_record_once_and_never_stall_a_partition() {
    let records = 3_000 * scale();
    let cluster = Cluster::real("retry", PARTITIONS, records, 0.02);
    let mut p = Pipeline::new(&cluster, "retry", records, 0.02);
    let always = |i: u64| i % 100 == 17;
    let for_a_while = |i: u64| i % 10 == 7 && !always(i);
    p.fails = Box::new(always);
    // Refused by the store, after the fan-out: produced all the same.
    p.fail_after_output = true;
    let t = p.table.clone();
    let refused: Vec<(u64, bool)> = p
        .input
        .good
        .values()
        .filter(|&&i| always(i) || for_a_while(i))
        .map(|&i| (i, always(i)))
        .collect();
    // The table as the binary makes it, and the fault.
    psql(&format!(
        "CREATE TABLE {t} (id TEXT PRIMARY KEY, topic TEXT, \"partition\" INTEGER, \"offset\" BIGINT, \
         payload JSONB NOT NULL, stored_at TIMESTAMPTZ NOT NULL DEFAULT now());
         CREATE TABLE {t}_refuse (record TEXT PRIMARY KEY, always BOOLEAN NOT NULL);
         CREATE TABLE {t}_fault (active BOOLEAN NOT NULL);
         INSERT INTO {t}_fault VALUES (true);
         INSERT INTO {t}_refuse VALUES {};
         CREATE OR REPLACE FUNCTION {t}_refuse() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN
                IF EXISTS (SELECT 1 FROM {t}_refuse r WHERE r.record = NEW.payload->>'id'
                           AND (r.always OR (SELECT active FROM {t}_fault))) THEN
                  RAISE EXCEPTION 'row % is locked', NEW.id USING ERRCODE = '55P03';
                END IF;
                RETURN NEW;
              END $$;
         CREATE TRIGGER {t}_refuse BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION {t}_refuse();",
        refused
            .iter()
            .map(|(i, a)| format!("('{}', {a})", sluicegate_runner::generate::id(*i)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    // The last level outlasts the fault (which stays on until the input is
    // committed, longer with more records), so only the always-refused run
    // out of levels.
    let last = format!("{}s", 20 * scale());
    let delays = format!("1s,2s,{last}");
    let http = free_local_address();
    let (child, log) = p.spawn(&["--retry-delays", &delays, "--http", &http]);
    // The partitions move on while the refused records are refused; the
    // fault stays on for 20 s at least.
    let fault_on = Instant::now();
    p.wait_committed_all(&log);
    let stored_then = p.stored();
    let refused_at: BTreeSet<(i32, i64)> = p
        .input
        .good
        .iter()
        .filter(|(_, i)| always(**i) || for_a_while(**i))
        .map(|(at, _)| *at)
        .collect();
    assert!(
        stored_then.is_disjoint(&refused_at),
        "a refused record was stored while the fault was on"
    );
    let committed_after = fault_on.elapsed();
    while fault_on.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    psql(&format!("UPDATE {t}_fault SET active = false"));
    println!(
        "non-blocking retries: the input committed to its end {:.1} s into the fault, which lasted {:.1} s",
        committed_after.as_secs_f64(),
        fault_on.elapsed().as_secs_f64()
    );
    // Every record stored or dead-lettered (from the table and the topic).
    p.wait_stored(&log);
    let want_dead = p.to_dead_letter();
    let started = Instant::now();
    loop {
        let dead: BTreeSet<(i32, i64)> = p
            .read(&cluster.dead_letters, "read_uncommitted")
            .iter()
            .map(Msg::origin)
            .collect();
        if dead == want_dead {
            break;
        }
        assert!(
            started.elapsed() < patience() * 2,
            "dead letters {} of {}:\n{}",
            dead.len(),
            want_dead.len(),
            log.text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let levels: Vec<String> = ["1s", "2s", last.as_str()]
        .iter()
        .map(|d| format!("{}.retry.{d}", cluster.input))
        .collect();
    // The retry topics drained: the retry group committed their ends.
    let retry_group = format!("{}.retry", p.group);
    let started = Instant::now();
    while levels.iter().any(|l| {
        committed_offsets(&cluster.brokers, &retry_group, l) != end_offsets(&cluster.brokers, l)
    }) {
        assert!(
            started.elapsed() < patience(),
            "the retry topics not drained:\n{}",
            log.text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // What the binary reports about the retries agrees with the broker.
    let status = get_json(&http, "/status").expect("/status answers");
    let retries = &status["extra"]["retries"];
    let level_counts: Vec<u64> = levels
        .iter()
        .map(|l| p.read(l, "read_uncommitted").len() as u64)
        .collect();
    let reported: Vec<u64> = retries["levels"]
        .as_array()
        .expect("levels")
        .iter()
        .map(|l| l["scheduled"].as_u64().expect("scheduled"))
        .collect();
    assert_eq!(reported, level_counts, "/status: {retries}");
    let always_n = p.input.good.values().filter(|&&i| always(i)).count() as u64;
    assert_eq!(
        retries["exhausted"].as_u64(),
        Some(always_n),
        "/status: {retries}"
    );
    signal(&child, "TERM");
    let out = finish(child, PATIENCE, "the retry run after SIGTERM");
    assert_eq!(out.status.code(), Some(0), "{}", log.text());
    let r = p.reconcile("non-blocking retries", "read_uncommitted");
    assert_eq!(
        r.output_duplicates, 0,
        "a retried record is not produced again: {r}"
    );
    assert_eq!(r.dead_letter_duplicates, 0, "{r}");

    // The first level holds every refused record once, under its origin;
    // the last level at least the always-refused ones.
    let origins = |topic: &str| -> Vec<(i32, i64)> {
        p.read(topic, "read_uncommitted")
            .iter()
            .map(Msg::origin)
            .collect()
    };
    let mut first = origins(&levels[0]);
    first.sort_unstable();
    assert_eq!(
        first,
        refused_at.iter().copied().collect::<Vec<_>>(),
        "level 1: each refused record once"
    );
    let always_at: BTreeSet<(i32, i64)> = p
        .input
        .good
        .iter()
        .filter(|(_, i)| always(**i))
        .map(|(at, _)| *at)
        .collect();
    let last: BTreeSet<(i32, i64)> = origins(&levels[2]).into_iter().collect();
    assert!(
        last.is_superset(&always_at),
        "level 3 holds the always-refused"
    );
    // Their dead letters: four attempts, each in the history, from the store.
    let mut exhausted = 0;
    for d in p.read(&cluster.dead_letters, "read_uncommitted") {
        if !always_at.contains(&d.origin()) {
            continue;
        }
        exhausted += 1;
        assert_eq!(
            d.headers.get("sluicegate.attempts").map(String::as_str),
            Some("4"),
            "{d:?}"
        );
        assert_eq!(
            d.headers.get("sluicegate.stage").map(String::as_str),
            Some("store"),
            "{d:?}"
        );
        let history: Vec<serde_json::Value> = serde_json::from_str(
            d.headers
                .get("sluicegate.retry.history")
                .expect("a history"),
        )
        .expect("JSON history");
        assert_eq!(history.len(), 4, "{d:?}");
        assert!(
            history
                .iter()
                .all(|a| a["error"].as_str().is_some_and(|e| e.contains("55P03"))),
            "{history:?}"
        );
    }
    assert_eq!(exhausted, always_at.len());
    println!(
        "non-blocking retries: {} records refused while the input's commits reached its end; {} stored after retries, {} dead-lettered after 4 attempts",
        refused_at.len(),
        refused_at.len() - always_at.len(),
        always_at.len()
    );
    psql(&format!(
        "DROP TABLE IF EXISTS {t}_refuse; DROP TABLE IF EXISTS {t}_fault; DROP FUNCTION IF EXISTS {t}_refuse() CASCADE"
    ));
}
