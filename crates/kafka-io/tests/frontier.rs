//! The commit frontier of the Kafka source on librdkafka's mock cluster:
//! records whose acknowledgement leaks or is abandoned never stall the
//! commits silently, and a partition held back by one unfinished record
//! stops fetching at its window limit while the others flow.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use sluicegate_core::{Graph, GraphError, StageSpec};
use sluicegate_kafka_io::{KafkaConfig, KafkaSource, PauseReason};
use tokio::sync::Semaphore;

const LONG: Duration = Duration::from_secs(60);

/// A client whose group session expires soon, so a member that did not leave
/// cleanly holds up the next one's assignment for seconds, not 45 s.
fn client(brokers: &str) -> KafkaConfig {
    KafkaConfig::new(brokers)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
}

/// A stage's task dies (its key function panics outside `process`, a bug)
/// while it holds record 7 and has more records in its mailbox: record 7's
/// acknowledgement is dropped unresolved (leaked), the rest are abandoned.
/// The source stops at once with an error naming record 7, instead of
/// waiting for them until the drain deadline; it commits up to 7, and a
/// restart reads 7 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaked_acknowledgement_stops_the_source_naming_the_record() {
    let mock = Mock::new(1);
    mock.topic("in", 1);
    leak_scenario(&mock.brokers, "in", "g-leak").await;
}

/// The same on Apache Kafka (scripts/kafka-up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_a_leaked_acknowledgement_stops_the_source_naming_the_record() {
    let brokers = real_broker();
    let topic = unique("leak");
    real_topic(&topic, 1);
    leak_scenario(&brokers, &topic, &unique("g-leak")).await;
}

async fn leak_scenario(brokers: &str, topic: &str, group: &str) {
    logs();
    const HELD: u64 = 7;
    const N: u64 = 20;
    produce_numbers(brokers, topic, 1, HELD).await;
    let source = KafkaSource::new(client(brokers), group, [topic])
        .commit_interval(Duration::from_millis(20));
    let rec = Recorder::default();
    let mut g = Graph::builder("leak");
    g.drain_deadline(Duration::from_secs(120));
    g.source("kafka", source)
        .to(StageSpec::new("sink", rec.clone())
            .concurrency(2)
            .key_by(|_, origin| {
                assert_ne!(
                    origin.offset,
                    Some(HELD as i64),
                    "the key function fails on record {HELD}"
                );
                Some(0)
            }));
    let running = g.build().expect("valid").start().await.expect("starts");
    eventually(LONG, "records 0..7 committed", || {
        committed(brokers, group, topic, 1) == vec![Some(HELD as i64)]
    })
    .await;
    // Nothing before 7 is in flight now: 7 is the first record the dying
    // task holds.
    produce_range(brokers, topic, 1, HELD..N).await;
    let report = within(
        Duration::from_secs(30),
        "the graph to stop: the source must name the leaked record at once, not wait for the 120 s drain deadline",
        running.wait(),
    )
    .await;
    assert!(report.drained, "{report:?}");
    let source_error = report
        .errors
        .iter()
        .find_map(|e| match e {
            GraphError::Fatal { stage, source } if stage == "kafka" => Some(source.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the source stopped without an error: {report:?}"));
    assert!(
        source_error.contains(&format!("{topic}/0@7")) && source_error.contains("leaked"),
        "{source_error}"
    );
    assert!(
        report
            .errors
            .iter()
            .any(|e| matches!(e, GraphError::TaskPanicked { stage, .. } if stage == "sink")),
        "{report:?}"
    );
    assert_eq!(rec.seen(), (0..HELD).collect::<Vec<_>>());
    assert_eq!(
        committed(brokers, group, topic, 1),
        vec![Some(HELD as i64)],
        "nothing past the leaked record is committed"
    );

    // A restart reads the leaked record and everything after it, once.
    let again = Recorder::default();
    let mut g = Graph::builder("leak-restart");
    g.source(
        "kafka",
        KafkaSource::new(client(brokers), group, [topic])
            .commit_interval(Duration::from_millis(20)),
    )
    .to(StageSpec::new("sink", again.clone()));
    let running = g.build().expect("valid").start().await.expect("starts");
    eventually(LONG, "records 7..20 after the restart", || {
        again.count() >= (N - HELD) as usize
    })
    .await;
    let report = within(LONG, "shutdown", running.shutdown(Duration::from_secs(30))).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(again.seen(), (HELD..N).collect::<Vec<_>>());
    assert_eq!(committed(brokers, group, topic, 1), vec![Some(N as i64)]);
}

/// Records per partition in the window test: more than the default window
/// limit (10,000), so a partition held back by its first record fills it.
const PER_PARTITION: u64 = 12_000;
const DEFAULT_WINDOW_LIMIT: i64 = 10_000;

/// One record held on partition 0, many behind it: partition 0 stops being
/// fetched once 10,000 records (the default limit) are handed out behind
/// its first unfinished offset, exactly; partition 1 keeps flowing to the
/// end. Once the record is released, partition 0 resumes and everything is
/// delivered once and committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_held_back_by_one_record_pauses_at_its_window_limit() {
    let mock = Mock::new(1);
    mock.topic("in", 2);
    window_limit_scenario(&mock.brokers, "in", "g-window").await;
}

/// The same on Apache Kafka (scripts/kafka-up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_a_partition_held_back_by_one_record_pauses_at_its_window_limit() {
    let brokers = real_broker();
    let topic = unique("window");
    real_topic(&topic, 2);
    window_limit_scenario(&brokers, &topic, &unique("g-window")).await;
}

async fn window_limit_scenario(brokers: &str, topic: &str, group: &str) {
    logs();
    produce_range(brokers, topic, 2, 0..2 * PER_PARTITION).await;
    let gate = Arc::new(Semaphore::new(0));
    let rec = Recorder {
        hold: Some((0, 0, gate.clone())),
        ..Recorder::default()
    };
    let source = KafkaSource::new(client(brokers), group, [topic])
        .commit_interval(Duration::from_millis(20));
    let handle = source.handle();
    let mut g = Graph::builder("window");
    g.source("kafka", source)
        .to(StageSpec::new("sink", rec.clone())
            .capacity(64)
            .concurrency(16));
    let running = g.build().expect("valid").start().await.expect("starts");
    eventually(LONG, "partition 1 committed to its end", || {
        committed(brokers, group, topic, 2)[1] == Some(PER_PARTITION as i64)
    })
    .await;
    let seen_of = |partition: u64| {
        rec.seen()
            .into_iter()
            .filter(|n| n % 2 == partition)
            .count() as i64
    };
    eventually(
        LONG,
        "every record of the window on partition 0 but the held one delivered",
        || seen_of(0) >= DEFAULT_WINDOW_LIMIT - 1,
    )
    .await;
    let p0 = || {
        handle
            .partitions()
            .into_iter()
            .find(|p| p.state.partition == 0)
            .expect("partition 0 is owned")
    };
    assert_eq!(
        p0().state.next,
        Some(DEFAULT_WINDOW_LIMIT),
        "partition 0 hands out exactly its window limit behind the held record"
    );
    assert_eq!(seen_of(0), DEFAULT_WINDOW_LIMIT - 1);
    let p = p0();
    assert_eq!(p.paused, Some(PauseReason::Window), "{p:?}");
    assert_eq!(p.window_limit, DEFAULT_WINDOW_LIMIT as usize);
    assert_eq!(
        (p.state.window, p.state.in_flight, p.state.oldest_unfinished),
        (DEFAULT_WINDOW_LIMIT as usize, 1, Some(0)),
        "{p:?}"
    );
    assert_eq!((p.state.window_paused, p.state.window_pauses), (true, 1));
    let p1 = handle
        .partitions()
        .into_iter()
        .find(|p| p.state.partition == 1)
        .expect("partition 1 is owned");
    assert_eq!((p1.paused, p1.state.window), (None, 0), "{p1:?}");
    assert_eq!(handle.stats().window_pauses.load(Ordering::Relaxed), 1);
    assert_eq!(
        committed(brokers, group, topic, 2)[0],
        Some(0),
        "nothing on partition 0 passes the held record"
    );

    gate.add_permits(1);
    eventually(LONG, "every record after the release", || {
        rec.count() == 2 * PER_PARTITION as usize
    })
    .await;
    eventually(LONG, "both partitions committed to their end", || {
        committed(brokers, group, topic, 2)
            == vec![Some(PER_PARTITION as i64), Some(PER_PARTITION as i64)]
    })
    .await;
    let p = p0();
    assert_eq!(
        (p.paused, p.state.window_paused, p.state.window_pauses),
        (None, false, 1),
        "resumed, after one pause: {p:?}"
    );
    let report = within(LONG, "shutdown", running.shutdown(Duration::from_secs(30))).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        histogram(&rec.seen()),
        (0..2 * PER_PARTITION).map(|n| (n, 1)).collect(),
        "each record delivered once"
    );
}

/// Produces `numbers` to one partition: payload and key the decimal number.
async fn produce_to(brokers: &str, topic: &str, partition: i32, numbers: std::ops::Range<u64>) {
    produce_with(brokers, topic, numbers, |_| partition).await
}

/// The two reasons to pause stay apart: partition 0 is paused by its window
/// (its first record held, limit 50), then the graph fills with partition
/// 1's records and every partition is paused; when the graph has room
/// again, partition 1 is fetched to its end and partition 0 stays paused,
/// until its record is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_full_graph_leaves_a_partition_paused_by_its_window() {
    logs();
    // Well above what the graph holds (8 waiting, 4 in the sink), so only a
    // held record fills a window.
    const LIMIT: usize = 50;
    const EACH: u64 = 300;
    let mock = Mock::new(1);
    mock.topic("in", 2);
    // EACH..2*EACH on partition 0 for now; 0..EACH on partition 1 later.
    produce_to(&mock.brokers, "in", 0, EACH..2 * EACH).await;
    // Partition 0's records but the held one pass; then nothing does.
    let (hold, room) = (
        Arc::new(Semaphore::new(0)),
        Arc::new(Semaphore::new(LIMIT - 1)),
    );
    let rec = Recorder {
        hold: Some((0, 0, hold.clone())),
        block_all: Some(room.clone()),
        ..Recorder::default()
    };
    let source = KafkaSource::new(client(&mock.brokers), "g-both", ["in"])
        .commit_interval(Duration::from_millis(20))
        .pause_after(Duration::from_millis(100))
        .window_limit(LIMIT);
    let handle = source.handle();
    let mut g = Graph::builder("both");
    g.source("kafka", source)
        .to(StageSpec::new("sink", rec.clone())
            .capacity(8)
            .concurrency(4));
    let running = g.build().expect("valid").start().await.expect("starts");
    let find = |n: i32| {
        handle
            .partitions()
            .into_iter()
            .find(|p| p.state.partition == n)
    };
    let part = |n: i32| find(n).unwrap_or_else(|| panic!("partition {n} is owned"));
    eventually(LONG, "partition 0 paused by its window", || {
        find(0).is_some_and(|p| p.state.window_paused)
    })
    .await;
    assert_eq!(part(0).state.next, Some(LIMIT as i64));
    assert!(!handle.is_paused(), "the graph is not full");

    produce_to(&mock.brokers, "in", 1, 0..EACH).await;
    eventually(LONG, "the graph full of partition 1's records", || {
        handle.is_paused()
    })
    .await;
    assert_eq!(part(0).paused, Some(PauseReason::GraphFullAndWindow));
    assert_eq!(part(1).paused, Some(PauseReason::GraphFull));

    room.add_permits(1_000_000);
    eventually(LONG, "partition 1 committed to its end", || {
        committed(&mock.brokers, "g-both", "in", 2)[1] == Some(EACH as i64)
    })
    .await;
    assert!(!handle.is_paused());
    let p0 = part(0);
    assert_eq!(
        (p0.state.next, p0.paused),
        (Some(LIMIT as i64), Some(PauseReason::Window)),
        "the graph's resume left partition 0 paused: {p0:?}"
    );
    assert_eq!(
        rec.seen().iter().filter(|n| **n >= EACH).count(),
        LIMIT - 1,
        "partition 0: the window but the held record"
    );
    // Paused once, by the held record, and never resumed while it is held.
    // (Once it is released, partition 0's other 250 records may pause it
    // again: the window also counts records the source has handed out whose
    // acknowledgements it has not read yet, which a loaded machine lets grow
    // past the graph's 12.)
    assert_eq!(part(0).state.window_pauses, 1);

    hold.add_permits(1);
    eventually(LONG, "partition 0 committed to its end", || {
        committed(&mock.brokers, "g-both", "in", 2) == vec![Some(EACH as i64), Some(EACH as i64)]
    })
    .await;
    let report = within(LONG, "shutdown", running.shutdown(Duration::from_secs(30))).await;
    assert!(report.is_clean(), "{report:?}");
    let mut seen = rec.seen();
    seen.sort_unstable();
    assert_eq!(seen, (0..2 * EACH).collect::<Vec<_>>(), "each record once");
}
