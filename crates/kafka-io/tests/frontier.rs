//! The commit frontier of the Kafka source on librdkafka's mock cluster:
//! records whose acknowledgement leaks or is abandoned never stall the
//! commits silently, and a partition held back by one unfinished record
//! stops fetching at its window limit while the others flow.

mod common;

use std::time::Duration;

use common::*;
use sluicegate_core::{Graph, GraphError, StageSpec};
use sluicegate_kafka_io::{KafkaConfig, KafkaSource};

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
    logs();
    const HELD: u64 = 7;
    const N: u64 = 20;
    let mock = Mock::new(1);
    mock.topic("in", 1);
    produce_numbers(&mock.brokers, "in", 1, HELD).await;
    let source = KafkaSource::new(client(&mock.brokers), "g-leak", ["in"])
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
        committed(&mock.brokers, "g-leak", "in", 1) == vec![Some(HELD as i64)]
    })
    .await;
    // Nothing before 7 is in flight now: 7 is the first record the dying
    // task holds.
    produce_range(&mock.brokers, "in", 1, HELD..N).await;
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
        source_error.contains("in/0@7") && source_error.contains("leaked"),
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
        committed(&mock.brokers, "g-leak", "in", 1),
        vec![Some(HELD as i64)],
        "nothing past the leaked record is committed"
    );

    // A restart reads the leaked record and everything after it, once.
    let again = Recorder::default();
    let mut g = Graph::builder("leak-restart");
    g.source(
        "kafka",
        KafkaSource::new(client(&mock.brokers), "g-leak", ["in"])
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
    assert_eq!(
        committed(&mock.brokers, "g-leak", "in", 1),
        vec![Some(N as i64)]
    );
}
