//! Exactly-once Kafka to Kafka (transactional consume-transform-produce) on
//! librdkafka's mock cluster.
//!
//! What the mock cluster can and cannot show (read from librdkafka 2.12's
//! `rdkafka_mock_handlers.c`): it speaks the whole transactional protocol
//! (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit,
//! EndTxn, with error injection), but
//!
//! - EndTxn writes no commit or abort markers and Fetch returns no
//!   aborted-transaction list (and the log end as the last stable offset),
//!   so a `read_committed` reader sees an aborted transaction's records
//!   just like a `read_uncommitted` one;
//! - TxnOffsetCommit is answered but its offsets are not stored, so the
//!   group's committed offsets cannot be read back.
//!
//! So these tests check what the pipeline does (which transactions it
//! commits and aborts, which records each carries, the offsets it sends)
//! against exact counts, and read the output topic to prove that an abort
//! really happened and that the retry wrote the aborted batch exactly once
//! more. That a `read_committed` reader then skips the aborted copies is
//! shown on Apache Kafka, through the binary: the reliability suite's
//! exactly-once scenarios (tests/reliability.rs and
//! scale_out.rs) read the output topic both ways after `kill -9`s and a
//! rebalance.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use rdkafka::Message;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use sluicegate_core::{BatchConfig, BatchSpec, Graph, GraphError, StageSpec};
use sluicegate_kafka_io::{KafkaConfig, KafkaIoError, KafkaSource, KafkaTxnSink, ProducerRecord};

const LONG: Duration = Duration::from_secs(90);

/// The payload numbers in `messages`, with how often each appears.
fn numbers(messages: &[rdkafka::message::OwnedMessage]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| {
            std::str::from_utf8(m.payload().expect("payload"))
                .expect("utf8")
                .parse()
                .expect("number")
        })
        .collect()
}

/// source (transactional) → map → KafkaTxnSink, batches of 50 records.
fn pipeline(
    brokers: &str,
    group: &str,
    transactional_id: &str,
    configure: impl FnOnce(KafkaTxnSink) -> KafkaTxnSink,
) -> (
    Graph,
    sluicegate_kafka_io::KafkaSourceHandle,
    std::sync::Arc<sluicegate_kafka_io::TxnStats>,
) {
    logs();
    let source = KafkaSource::new(KafkaConfig::new(brokers), group, ["in"]).transactional(true);
    let handle = source.handle();
    let sink = configure(
        txn_sink(brokers, "out", transactional_id, handle.exactly_once())
            .backoff(Duration::from_millis(10)),
    );
    let stats = sink.stats();
    let graph = txn_graph(
        "eos",
        source,
        sink,
        BatchConfig::new(50, Duration::from_millis(20)),
    );
    (graph, handle, stats)
}

/// 1000 records over 4 partitions; the commit of the 4th transaction fails
/// on the broker (an abortable error), so the sink aborts it and commits
/// the same batch in a new transaction. Every record is committed once,
/// the offsets sent reach the end of every partition, and the output log
/// holds the aborted attempt's copies as well (what `read_uncommitted`
/// readers see), exactly one batch of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_transaction_is_retried_and_each_record_committed_once() {
    const PARTS: i32 = 4;
    const N: u64 = 1_000;
    let mock = Mock::new(1);
    mock.topic("in", PARTS);
    mock.topic("out", PARTS);
    produce_numbers(&mock.brokers, "in", PARTS, N).await;
    // EndTxn 1 to 3 commit; the 4th fails (an error librdkafka treats as
    // abortable); the abort and everything after succeed.
    use RDKafkaRespErr::*;
    mock.cluster.request_errors(
        RDKafkaApiKey::EndTxn,
        &[
            RD_KAFKA_RESP_ERR_NO_ERROR,
            RD_KAFKA_RESP_ERR_NO_ERROR,
            RD_KAFKA_RESP_ERR_NO_ERROR,
            RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR,
        ],
    );

    let (graph, handle, stats) = pipeline(&mock.brokers, "g-eos", "eos-0", |s| s);
    let running = within(LONG, "the graph to start", graph.start())
        .await
        .expect("starts");
    eventually(LONG, "every record committed", || {
        stats.records.load(Ordering::SeqCst) == N
    })
    .await;
    let per_partition = (N / PARTS as u64) as i64;
    eventually(
        LONG,
        "the offsets sent to reach every partition's end",
        || {
            let parts = handle.partitions();
            parts.len() == PARTS as usize
                && parts
                    .iter()
                    .all(|p| p.state.committed == Some(per_partition) && p.state.in_flight == 0)
        },
    )
    .await;
    let report = within(LONG, "shutdown", running.shutdown(Duration::from_secs(30))).await;
    assert!(report.is_clean(), "{report:?}");

    // Exactly one transaction aborted, after the broker had taken its records.
    assert_eq!(stats.aborts.load(Ordering::SeqCst), 1, "one abort");
    let aborted = stats.aborted_records.load(Ordering::SeqCst);
    assert!(
        (1..=50).contains(&aborted),
        "the aborted transaction carried one batch: {aborted}"
    );
    assert_eq!(
        stats.records.load(Ordering::SeqCst),
        N,
        "committed once each"
    );
    assert_eq!(stats.revoked.load(Ordering::SeqCst), 0);
    assert_eq!(
        stats.gaps.load(Ordering::SeqCst),
        0,
        "offsets never fell short"
    );
    let commits = stats.commits.load(Ordering::SeqCst);
    assert!(commits >= N / 50, "{commits} transactions for {N} records");
    // Each committed transaction sent its offsets with it; the source never
    // committed on its own.
    assert_eq!(
        handle.stats().commits.load(Ordering::SeqCst),
        commits,
        "one offset commit per transaction"
    );
    assert!(handle.is_stopped());

    // The output log: every record once, plus the aborted attempt's copies.
    let uncommitted = read_topic(
        &mock.brokers,
        "out",
        (N + aborted) as usize,
        "read_uncommitted",
    )
    .await;
    let h = histogram(&numbers(&uncommitted));
    assert_eq!(h.len(), N as usize, "every record is in the output");
    let twice = h.values().filter(|c| **c == 2).count() as u64;
    assert_eq!(
        twice, aborted,
        "the aborted batch's records were written again, once"
    );
    assert!(
        h.values().all(|c| *c <= 2),
        "no record written more than twice"
    );
    // A broker with transactions would hide the aborted copies from this
    // reader; the mock writes no abort markers, so it shows them all.
    let committed_view = read_topic(
        &mock.brokers,
        "out",
        (N + aborted) as usize,
        "read_committed",
    )
    .await;
    assert_eq!(committed_view.len(), uncommitted.len());
    println!(
        "exactly-once: {N} records in {commits} transactions, 1 aborted ({aborted} records discarded and written again)"
    );
}

/// Every commit fails: after its attempts the sink gives up, the graph
/// stops with an error naming the transactional producer, the batch's
/// records fail, and no offset passes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_cannot_commit_stops_the_graph_and_skips_nothing() {
    const N: u64 = 200;
    let mock = Mock::new(1);
    mock.topic("in", 2);
    mock.topic("out", 2);
    produce_numbers(&mock.brokers, "in", 2, N).await;
    use RDKafkaRespErr::*;
    // The first commit succeeds; after that every EndTxn fails (aborts too).
    let mut errors = vec![RD_KAFKA_RESP_ERR_NO_ERROR];
    errors.extend([RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR; 64]);
    mock.cluster.request_errors(RDKafkaApiKey::EndTxn, &errors);

    let (graph, handle, stats) = pipeline(&mock.brokers, "g-eos-fail", "eos-fail", |s| {
        s.max_attempts(2)
    });
    let report = within(
        LONG,
        "the graph to stop on its own",
        graph.start().await.expect("starts").wait(),
    )
    .await;
    assert!(!report.errors.is_empty(), "{report:?}");
    let failed = report
        .errors
        .iter()
        .find_map(|e| match e {
            GraphError::Fatal { stage, source } if stage == "txn" => Some(source.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no fatal error from the sink: {:?}", report.errors));
    assert!(
        failed.contains("transactional producer `eos-fail`") && failed.contains("not committed"),
        "{failed}"
    );
    assert_eq!(
        stats.commits.load(Ordering::SeqCst),
        1,
        "only the first commit"
    );
    assert!(stats.aborts.load(Ordering::SeqCst) <= 2);
    // The committed positions cover the first transaction only: nothing of
    // the failed batch (or after it) was committed. At the stop, every
    // record handed out past those positions was uncommitted.
    let first = stats.records.load(Ordering::SeqCst);
    assert!(first > 0 && first < N);
    assert_eq!(handle.stats().commits.load(Ordering::SeqCst), 1);
    let handed_out = handle.stats().records.load(Ordering::SeqCst);
    assert_eq!(
        handle.stats().uncommitted_at_stop.load(Ordering::SeqCst),
        handed_out - first,
        "offsets of the first transaction only"
    );
    assert!(handle.is_stopped());
}

/// The sink refuses a source that commits offsets itself, and an
/// unreachable cluster fails `init_transactions` within its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfigurations_fail_at_start() {
    let mock = Mock::new(1);
    mock.topic("in", 1);
    let source = KafkaSource::new(KafkaConfig::new(&mock.brokers), "g-plain", ["in"]);
    let sink = txn_sink(&mock.brokers, "out", "eos-x", source.exactly_once());
    let g = txn_graph(
        "not-transactional",
        source,
        sink,
        BatchConfig::new(10, Duration::from_millis(10)),
    );
    let err = g.start().await.err().expect("refused");
    assert!(
        matches!(&err, GraphError::StartFailed { stage, source } if stage == "txn"
            && source.downcast_ref::<KafkaIoError>().is_some_and(|e| matches!(e, KafkaIoError::NotTransactional))),
        "{err}"
    );

    let source =
        KafkaSource::new(KafkaConfig::new("127.0.0.1:1"), "g-x", ["in"]).transactional(true);
    let sink = txn_sink("127.0.0.1:1", "out", "eos-y", source.exactly_once())
        .init_timeout(Duration::from_secs(2));
    let g = txn_graph(
        "unreachable",
        source,
        sink,
        BatchConfig::new(10, Duration::from_millis(10)),
    );
    let err = within(LONG, "init_transactions to time out", g.start())
        .await
        .err()
        .expect("fails");
    assert!(
        err.to_string()
            .contains("transactional producer `eos-y`: init_transactions failed"),
        "{err}"
    );
}

/// In transactional mode a revocation waits for the revoked partitions'
/// records in flight (their transactions must commit before another member
/// takes over); when they are stuck past the revoke timeout the source
/// stops with an error instead of letting them commit later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_that_cannot_wait_for_its_transactions_stops_the_source() {
    use std::sync::Arc;
    use tokio::sync::Semaphore;
    const N: u64 = 100;
    logs();
    let mock = Mock::new(1);
    mock.topic("in", 2);
    mock.topic("out", 2);
    produce_numbers(&mock.brokers, "in", 2, N).await;
    let member = || {
        KafkaConfig::new(&mock.brokers)
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
    };
    let source = KafkaSource::new(member(), "g-eos-revoke", ["in"])
        .transactional(true)
        .revoke_timeout(Duration::from_secs(1));
    let handle = source.handle();
    let sink = KafkaTxnSink::new(
        &KafkaConfig::new(&mock.brokers),
        "out",
        "eos-revoke",
        handle.exactly_once(),
    )
    .expect("sink");
    // Records wait at a gate that never opens: they stay in flight.
    let gate = Arc::new(Semaphore::new(0));
    let g_gate = gate.clone();
    let mut g = Graph::builder("eos-revoke");
    g.source("kafka", source)
        .via(StageSpec::new(
            "gate",
            sluicegate_core::then(move |b: Bytes| {
                let gate = g_gate.clone();
                async move {
                    gate.acquire().await.map_err(|e| e.to_string())?.forget();
                    Ok::<_, String>(ProducerRecord::new(b))
                }
            }),
        ))
        .to_batch(BatchSpec::new(
            "txn",
            sink,
            BatchConfig::new(10, Duration::from_millis(10)),
        ));
    let running = g.build().expect("valid").start().await.expect("starts");
    eventually(LONG, "records in flight at the gate", || {
        handle
            .partitions()
            .iter()
            .map(|p| p.state.in_flight)
            .sum::<usize>()
            > 0
    })
    .await;

    // A second member joins: the first must give up a partition.
    let other = Recorder::default();
    let mut g2 = Graph::builder("other");
    g2.source("kafka", KafkaSource::new(member(), "g-eos-revoke", ["in"]))
        .to(StageSpec::new("sink", other.clone()));
    let running2 = g2.build().expect("valid").start().await.expect("starts");

    eventually(LONG, "the transactional source to stop", || {
        handle.is_stopped()
    })
    .await;
    assert_eq!(handle.stats().revoke_timeouts.load(Ordering::SeqCst), 1);
    let report = within(LONG, "shutdown", running.shutdown(Duration::from_secs(2))).await;
    let error = report
        .errors
        .iter()
        .find_map(|e| match e {
            GraphError::Fatal { stage, source } if stage == "kafka" => Some(source.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no error from the source: {:?}", report.errors));
    assert!(
        error.contains("still in flight after 1s in transactional mode"),
        "{error}"
    );
    gate.close();
    let report2 = within(
        LONG,
        "the other member",
        running2.shutdown(Duration::from_secs(30)),
    )
    .await;
    assert!(report2.is_clean(), "{report2:?}");
}
