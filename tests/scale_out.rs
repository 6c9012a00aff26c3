//! Scenario 4, scale-out: two `sluicegate run` processes in one consumer
//! group on Apache Kafka share the partitions. The first starts alone, a
//! second joins mid-stream, the first is stopped with SIGTERM and hands its
//! partitions over; every input record ends up stored or dead-lettered and
//! produced, none lost, none produced twice (tests/reliability.rs has the
//! reconciliation).
//!
//! It runs under each group protocol: the classic one with eager (`range`)
//! and incremental (`cooperative-sticky`) assignment, KIP-848's consumer
//! protocol (`group.protocol=consumer`), in exactly-once mode, where a
//! `read_committed` reader must see each record once, and with the group's
//! offsets kept in the database (`--store-offsets`), where no row may be
//! attempted twice as the partitions move.

mod common;

use common::reconcile::*;
use common::*;

const PARTITIONS: i32 = 4;
const RECORDS: u64 = 6_000;

fn scale_out(name: &str, protocol: &[&str], isolation: &str) {
    let cluster = Cluster::real(name, PARTITIONS, RECORDS, 0.02);
    let p = Pipeline::new(&cluster, name, RECORDS, 0.02);
    let offsets_in_store = protocol.contains(&"--store-offsets");
    if offsets_in_store {
        p.count_attempts();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let args = |who: &str| {
        let mut a: Vec<String> = [
            // Slow enough that the hand-over happens mid-stream.
            "--hash-rounds",
            "200",
            "--transform-workers",
            "1",
            "--summary-file",
        ]
        .map(String::from)
        .to_vec();
        a.push(dir.path().join(format!("{who}.json")).display().to_string());
        a.extend(protocol.iter().map(|s| s.to_string()));
        if isolation == "read_committed" {
            a.extend([
                "--transactional-id".to_string(),
                format!("{name}-{who}-{}", std::process::id()),
            ]);
        }
        a
    };
    let first_args = args("first");
    let first_args: Vec<&str> = first_args.iter().map(String::as_str).collect();
    let (first, first_log) = p.spawn(&first_args);
    cluster.wait_committed(&p.group, PARTITIONS, (RECORDS / 6) as i64);

    let second_args = args("second");
    let second_args: Vec<&str> = second_args.iter().map(String::as_str).collect();
    let (second, second_log) = p.spawn(&second_args);
    // The group rebalanced: the second has partitions of its own, and the
    // first gave some up.
    second_log.wait_for("partitions assigned partitions=[(");
    first_log.wait_for("partitions revoked");
    let shared = p.committed().values().sum::<i64>();
    assert!(
        (shared as u64) < RECORDS,
        "the second joined mid-stream, not after the end"
    );

    signal(&first, "TERM");
    let out = finish(first, PATIENCE, "the first process after SIGTERM");
    assert_eq!(out.status.code(), Some(0), "{}", first_log.text());
    // The second takes over every partition and finishes the rest.
    p.wait_stored(&second_log);
    p.wait_committed_all(&second_log);
    signal(&second, "TERM");
    let out = finish(second, PATIENCE, "the second process after SIGTERM");
    assert_eq!(out.status.code(), Some(0), "{}", second_log.text());

    let a = summary(&dir.path().join("first.json"));
    let b = summary(&dir.path().join("second.json"));
    assert!(
        n(&a, "records_in") > 0 && n(&b, "records_in") > 0,
        "both worked: {a} {b}"
    );
    let r = p.reconcile(&format!("scale-out ({name})"), isolation);
    println!(
        "scale-out ({name}): the first read {}, the second {}",
        n(&a, "records_in"),
        n(&b, "records_in")
    );
    assert_eq!(
        r.output_duplicates, 0,
        "each record produced once across the hand-over: {r}"
    );
    if offsets_in_store {
        let (attempted, twice) = p.attempts();
        println!("scale-out ({name}): {attempted} rows attempted, {twice} more than once");
        assert_eq!(
            twice, 0,
            "the partitions moved with their offsets in the database"
        );
        assert_eq!(
            p.stored_offsets(),
            end_offsets(&cluster.brokers, &cluster.input),
            "the stored offsets reach every partition's end"
        );
    }
}

#[test]
fn two_processes_share_a_group_eager_range() {
    scale_out(
        "scale_eager",
        &["--kafka-property", "partition.assignment.strategy=range"],
        "read_uncommitted",
    );
}

#[test]
fn two_processes_share_a_group_cooperative_sticky() {
    scale_out(
        "scale_coop",
        &[
            "--kafka-property",
            "partition.assignment.strategy=cooperative-sticky",
        ],
        "read_uncommitted",
    );
}

#[test]
fn two_processes_share_a_group_kip_848_consumer_protocol() {
    scale_out(
        "scale_kip848",
        &["--kafka-property", "group.protocol=consumer"],
        "read_uncommitted",
    );
}

#[test]
fn two_processes_share_a_group_offsets_in_the_database() {
    scale_out(
        "scale_dboffsets",
        &[
            "--store-offsets",
            "--kafka-property",
            "partition.assignment.strategy=cooperative-sticky",
        ],
        "read_uncommitted",
    );
}

#[test]
fn two_processes_share_a_group_exactly_once() {
    scale_out(
        "scale_eos",
        &[
            "--exactly-once",
            "--kafka-property",
            "partition.assignment.strategy=cooperative-sticky",
        ],
        "read_committed",
    );
}
