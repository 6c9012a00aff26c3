//! Scale-out: two `sluicegate run` processes in one consumer group share
//! the partitions. The first starts alone, a second joins mid-stream, the
//! first is stopped with SIGTERM and hands its partitions over; every input
//! record ends up stored (in PostgreSQL) or dead-lettered, none lost.

mod common;

use common::*;
use sluicegate_runner::generate::count_malformed;

const PARTITIONS: i32 = 4;
const RECORDS: u64 = 6_000;
fn rows(table: &str) -> u64 {
    psql(&format!("SELECT count(*) FROM {table}"))
        .parse()
        .expect("a row count")
}

fn drop_table(table: &str) {
    psql(&format!("DROP TABLE IF EXISTS {table}"));
}

fn scale_out(cluster: &Cluster, name: &str) {
    let table = format!("{name}_{}", std::process::id());
    drop_table(&table);
    // One group per run: Tansu 0.6.0 never expires a group's dead members,
    // so a group reused across runs (or a retry) can starve the live ones.
    let group = format!("{name}-group-{}", std::process::id());
    let dir = tempfile::tempdir().expect("tempdir");
    let args = |summary: &str| {
        let mut a = vec!["run".to_string()];
        a.extend(cluster.args());
        a.extend(
            [
                "--group",
                &group,
                "--store",
                DATABASE,
                "--table",
                &table,
                "--http",
                "off",
                // Slow enough that the hand-over happens mid-stream.
                "--hash-rounds",
                "200",
                "--transform-workers",
                "1",
                // librdkafka's mock broker waits the session timeout (less a
                // second) before rebalancing after a member leaves.
                "--kafka-property",
                "session.timeout.ms=6000",
                "--summary-file",
            ]
            .map(String::from),
        );
        a.push(dir.path().join(summary).display().to_string());
        a
    };
    let first_args = args("first.json");
    let mut first = sluicegate(&first_args.iter().map(String::as_str).collect::<Vec<_>>())
        .env("RUST_LOG", "info,librdkafka=warn,sluicegate_kafka_io=debug")
        .spawn()
        .expect("spawn the first");
    let first_log = watch_stderr(&mut first);
    cluster.wait_committed(&group, PARTITIONS, (RECORDS / 6) as i64);

    let second_args = args("second.json");
    let mut second = sluicegate(&second_args.iter().map(String::as_str).collect::<Vec<_>>())
        .env("RUST_LOG", "info,librdkafka=warn,sluicegate_kafka_io=debug")
        .spawn()
        .expect("spawn the second");
    let second_log = watch_stderr(&mut second);
    // The group rebalanced: the second has partitions of its own, and the
    // first gave some up.
    second_log.wait_for("partitions assigned");
    first_log.wait_for("partitions revoked");
    let shared = cluster.committed(&group, PARTITIONS);
    assert!(
        (shared as u64) < RECORDS,
        "the second joined mid-stream, not after the end"
    );

    signal(&first, "TERM");
    let out = finish(first, PATIENCE, "the first process after SIGTERM");
    assert_eq!(out.status.code(), Some(0), "{}", first_log.text());
    // The second takes over every partition and stores the rest. (Watching
    // the table, not the group's offsets against the topic's high
    // watermarks: Tansu 0.6.0 reports watermarks below the real end.)
    let bad = count_malformed(0, RECORDS, 0.02);
    let start = std::time::Instant::now();
    while rows(&table) < RECORDS - bad {
        assert!(
            start.elapsed() < PATIENCE * 2,
            "{} of {} rows after {:?}; second:\n{}",
            rows(&table),
            RECORDS - bad,
            PATIENCE * 2,
            second_log.text()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    cluster.wait_committed(&group, PARTITIONS, RECORDS as i64);
    signal(&second, "TERM");
    let out = finish(second, PATIENCE, "the second process after SIGTERM");
    assert_eq!(out.status.code(), Some(0), "{}", second_log.text());

    let a = summary(&dir.path().join("first.json"));
    let b = summary(&dir.path().join("second.json"));
    let read = n(&a, "records_in") + n(&b, "records_in");
    let stored_now = rows(&table);
    println!(
        "scale-out: first read {} and stored {}, second read {} and stored {} (+{} duplicates); rows {stored_now} of {} good, {bad} bad",
        n(&a, "records_in"),
        n(&a, "stored"),
        n(&b, "records_in"),
        n(&b, "stored"),
        n(&b, "duplicates"),
        RECORDS - bad
    );
    if std::env::var("TEST_RUST_LOG").is_ok() {
        eprintln!(
            "first:\n{}\nsecond:\n{}",
            first_log.text(),
            second_log.text()
        );
    }
    assert!(
        n(&a, "records_in") > 0 && n(&b, "records_in") > 0,
        "both worked"
    );
    assert!(read >= RECORDS, "every record was read: {a} {b}");
    assert_eq!(stored_now, RECORDS - bad, "every good record stored, once");
    assert_eq!(
        n(&a, "stored") + n(&b, "stored"),
        RECORDS - bad,
        "rows written once each"
    );
    assert!(
        n(&a, "dead_lettered") + n(&b, "dead_lettered") >= bad,
        "every bad record dead-lettered: {a} {b}"
    );
    assert_eq!(n(&a, "failed") + n(&b, "failed"), 0);
    assert_eq!(cluster.committed(&group, PARTITIONS) as u64, RECORDS);
    drop_table(&table);
}

#[test]
fn two_processes_share_a_group_on_the_mock_cluster() {
    let cluster = Cluster::new(PARTITIONS, RECORDS, 0.02);
    scale_out(&cluster, "scale_mock");
}

#[test]
fn two_processes_share_a_group_on_the_real_broker() {
    let cluster = Cluster::real("scale", PARTITIONS, RECORDS, 0.02);
    scale_out(&cluster, "scale_real");
}
