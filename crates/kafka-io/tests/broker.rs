//! Kafka source and sink against Apache Kafka (KRaft, on 127.0.0.1:9092,
//! started by scripts/kafka-up, which the test command runs). These fail,
//! never skip, when the broker is missing.
//!
//! The scenarios of tests/mock.rs on the real thing: end to end with a hole
//! that holds the commit back, crash and restart, a stall longer than
//! `max.poll.interval.ms`, and a second consumer joining and leaving under
//! each group protocol: the classic one with eager (`range`) and
//! incremental (`cooperative-sticky`) assignment, and KIP-848's consumer
//! protocol (`group.protocol=consumer`). Also, on the transactional path: a
//! transaction never commits past a record another branch holds, and an
//! assignment during an open transaction aborts it (the exactly-once
//! coupling's generation).

mod common;

use common::*;

const LONG: std::time::Duration = std::time::Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_end_to_end_commits_only_finished_prefixes() {
    let brokers = real_broker();
    scenarios::end_to_end(&brokers, real_topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_crash_then_restart_loses_nothing() {
    let brokers = real_broker();
    scenarios::crash_and_restart(&brokers, real_topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_stall_longer_than_max_poll_interval_keeps_the_group() {
    let brokers = real_broker();
    scenarios::stall(&brokers, real_topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_rebalance_eager_range() {
    let brokers = real_broker();
    scenarios::rebalance(&brokers, real_topic, scenarios::protocol::EAGER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_rebalance_cooperative_sticky() {
    let brokers = real_broker();
    scenarios::rebalance(&brokers, real_topic, scenarios::protocol::COOPERATIVE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_broker_rebalance_kip_848_consumer_protocol() {
    let brokers = real_broker();
    scenarios::rebalance(&brokers, real_topic, scenarios::protocol::CONSUMER).await;
}

/// A transactional sink on one branch of a broadcast: the offsets its
/// transactions commit never pass a record the other branch has not
/// finished (there, held at a gate), and reach the end once it has. Before
/// the source reported split records' parts, the sink counted the held
/// record as finished because it was in its own batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_never_commits_past_a_record_another_branch_holds() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use bytes::Bytes;
    use sluicegate_core::{BatchConfig, BatchSpec, Graph, StageSpec, map};
    use sluicegate_kafka_io::{KafkaConfig, KafkaSource, ProducerRecord};
    use tokio::sync::Semaphore;

    const N: u64 = 100;
    const HELD: i64 = 10;
    let brokers = real_broker();
    let (input, output) = (unique("split-in"), unique("split-out"));
    real_topic(&input, 1);
    real_topic(&output, 1);
    produce_numbers(&brokers, &input, 1, N).await;
    logs();
    let source = KafkaSource::new(KafkaConfig::new(&brokers), unique("g-split"), [&input])
        .transactional(true);
    let handle = source.handle();
    let sink = txn_sink(
        &brokers,
        &output,
        &unique("split-txn"),
        handle.exactly_once(),
    )
    .gap_wait(Duration::from_millis(20));
    let stats = sink.stats();
    let gate = Arc::new(Semaphore::new(0));
    let held = Recorder {
        hold: Some((0, HELD, gate.clone())),
        ..Recorder::default()
    };
    let mut g = Graph::builder("split");
    let [to_txn, to_held] = g.source("kafka", source).broadcast();
    to_txn
        .via(StageSpec::new(
            "to-record",
            map(|b: Bytes| ProducerRecord::new(b)),
        ))
        .to_batch(BatchSpec::new(
            "txn",
            sink,
            BatchConfig::new(10, Duration::from_millis(5)),
        ));
    to_held.to(StageSpec::new("held", held.clone())
        .capacity(200)
        .concurrency(100));
    let running = within(LONG, "start", g.build().expect("graph").start())
        .await
        .expect("starts");
    // Every record but the held one through both branches, and the sink
    // has committed every batch it got.
    eventually(
        LONG,
        "the other branch to finish all but the held record",
        || held.count() == N as usize - 1,
    )
    .await;
    eventually(LONG, "every record in a committed transaction", || {
        stats.records.load(Ordering::SeqCst) == N
    })
    .await;
    let committed = handle.partitions()[0].state.committed;
    assert!(
        committed.is_some_and(|c| c <= HELD),
        "the transactions committed {committed:?}, past the held record {HELD}"
    );
    gate.add_permits(1);
    eventually(
        LONG,
        "the offsets to reach the end once it finished",
        || handle.partitions()[0].state.committed == Some(N as i64),
    )
    .await;
    let report = within(LONG, "shutdown", running.shutdown(Duration::from_secs(30))).await;
    assert!(report.is_clean(), "{report:?}");
    assert!(
        stats.gaps.load(Ordering::SeqCst) > 0,
        "the sink saw the gap"
    );
}

/// Offsets kept in a store (`KafkaSource::offsets_in`) reach Kafka even
/// for a partition with nothing left to read: a crash between a store's
/// batch and its mirror to Kafka left Kafka's committed offset behind the
/// store's, and the partition's lag in Kafka stuck there (the source only
/// mirrored offsets it committed itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_offsets_are_mirrored_to_kafka_at_assignment() {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use sluicegate_core::{BoxError, Graph, StageSpec};
    use sluicegate_kafka_io::{KafkaConfig, KafkaSource, OffsetStore};

    struct Memory(Mutex<BTreeMap<i32, i64>>);
    impl OffsetStore for Memory {
        fn describe(&self) -> String {
            "memory".into()
        }
        fn load(&self, _: &str, _: &str) -> Result<BTreeMap<i32, i64>, BoxError> {
            Ok(self.0.lock().expect("lock").clone())
        }
        fn save(&self, _: &str, offsets: &[(String, i32, i64)]) -> Result<(), BoxError> {
            let mut m = self.0.lock().expect("lock");
            for (_, p, o) in offsets {
                m.insert(*p, *o);
            }
            Ok(())
        }
    }

    let brokers = real_broker();
    let topic = unique("mirror");
    real_topic(&topic, 2);
    produce_numbers(&brokers, &topic, 2, 20).await;
    logs();
    let group = unique("g-mirror");
    // Partition 0 entirely stored before (Kafka knows nothing), partition 1
    // up to 4.
    let store = Arc::new(Memory(Mutex::new(BTreeMap::from([(0, 10), (1, 4)]))));
    let source = KafkaSource::new(KafkaConfig::new(&brokers), &group, [&topic])
        .offsets_in(store.clone())
        .commit_interval(Duration::from_millis(100));
    let rec = Recorder::default();
    let mut g = Graph::builder("mirror");
    g.source("kafka", source)
        .to(StageSpec::new("sink", rec.clone()));
    let running = within(LONG, "start", g.build().expect("graph").start())
        .await
        .expect("starts");
    eventually(LONG, "the 6 records past the stored offsets", || {
        rec.count() == 6
    })
    .await;
    eventually(
        Duration::from_secs(20),
        "Kafka's committed offsets to reach the stored ones, partition 0 included",
        || committed(&brokers, &group, &topic, 2) == vec![Some(10), Some(10)],
    )
    .await;
    let report = within(LONG, "shutdown", running.shutdown(Duration::from_secs(30))).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        *store.0.lock().expect("lock"),
        BTreeMap::from([(0, 10), (1, 10)])
    );
}

/// The exactly-once coupling's generation, on Apache Kafka: a partition
/// assigned to the transactional member while its transaction is open
/// (cooperative-sticky: the other member leaves) aborts that transaction
/// before its commit, and the batch commits once, in a new one. Without
/// the generation moving at the assignment, the held transaction would
/// commit (`reassigned` 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_during_a_transaction_aborts_it_and_the_batch_commits_once() {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use sluicegate_core::BatchConfig;
    use sluicegate_kafka_io::{KafkaConfig, KafkaSource};

    const N: u64 = 40;
    // Long enough for the other member's leave and the rebalance it starts.
    const HOLD: Duration = Duration::from_secs(8);
    let brokers = real_broker();
    let (input, output) = (unique("reassign-in"), unique("reassign-out"));
    real_topic(&input, 2);
    real_topic(&output, 1);
    let group = unique("g-reassign");
    logs();

    // The other member: a plain consumer that owns both partitions first.
    let (leave, owned) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let other = {
        let (brokers, group, input) = (brokers.clone(), group.clone(), input.clone());
        let (leave, owned) = (leave.clone(), owned.clone());
        std::thread::spawn(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", &group)
                .set("enable.auto.commit", "false")
                .set("session.timeout.ms", "6000")
                .set("heartbeat.interval.ms", "500")
                .set("partition.assignment.strategy", "cooperative-sticky")
                .create()
                .expect("the other member");
            consumer.subscribe(&[&input]).expect("subscribe");
            while !leave.load(Ordering::SeqCst) {
                let _ = consumer.poll(Duration::from_millis(50));
                let n = consumer.assignment().map_or(0, |a| a.count());
                owned.store(n, Ordering::SeqCst);
            }
            // Dropping it closes it: it leaves the group.
        })
    };
    eventually(LONG, "the other member to own both partitions", || {
        owned.load(Ordering::SeqCst) == 2
    })
    .await;

    let mut config = KafkaConfig::new(&brokers);
    for (k, v) in scenarios::protocol::COOPERATIVE {
        config = config.set(*k, *v);
    }
    let source = KafkaSource::new(config, &group, [&input])
        .transactional(true)
        .revoke_timeout(Duration::from_secs(60));
    let handle = source.handle();
    let sink = txn_sink(
        &brokers,
        &output,
        &unique("reassign-txn"),
        source.exactly_once(),
    )
    .hold_before_commit(HOLD);
    let stats = sink.stats();
    let graph = txn_graph(
        "reassign",
        source,
        sink,
        BatchConfig::new(1_000, Duration::from_millis(500)),
    );
    let running = within(LONG, "start", graph.start()).await.expect("starts");
    eventually(LONG, "one partition each", || {
        handle.partitions().len() == 1 && owned.load(Ordering::SeqCst) == 1
    })
    .await;
    let assignments = handle.stats().assignments.load(Ordering::SeqCst);

    produce_numbers(&brokers, &input, 2, N).await;
    // Its records produced, uncommitted: the transaction is held open.
    read_topic(&brokers, &output, 1, "read_uncommitted").await;
    assert_eq!(
        stats.commits.load(Ordering::SeqCst),
        0,
        "the first transaction is held"
    );
    leave.store(true, Ordering::SeqCst);
    other.join().expect("the other member's thread");

    eventually(LONG, "every record in a committed transaction", || {
        stats.records.load(Ordering::SeqCst) == N
    })
    .await;
    assert_eq!(handle.partitions().len(), 2);
    assert!(handle.stats().assignments.load(Ordering::SeqCst) > assignments);
    assert_eq!(
        stats.reassigned.load(Ordering::SeqCst),
        1,
        "the held transaction aborted because of the assignment"
    );
    assert_eq!(stats.aborts.load(Ordering::SeqCst), 1);
    let report = within(LONG, "shutdown", running.shutdown(Duration::from_secs(30))).await;
    assert!(report.is_clean(), "{report:?}");

    // Everything a read_committed reader sees, to the partition's end.
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .expect("reader");
    reader.subscribe(&[&output]).expect("subscribe");
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    within(LONG, "the output topic read to its end", async {
        loop {
            match reader.poll(Duration::ZERO) {
                Some(Ok(m)) => {
                    let n: u64 = std::str::from_utf8(m.payload().expect("payload"))
                        .expect("utf8")
                        .parse()
                        .expect("number");
                    *seen.entry(n).or_default() += 1;
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => eprintln!("reader: {e}"),
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    })
    .await;
    assert_eq!(
        seen,
        (0..N).map(|n| (n, 1)).collect::<BTreeMap<_, _>>(),
        "each record once for read_committed readers"
    );
}
