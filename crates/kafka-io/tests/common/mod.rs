//! Shared helpers for the Kafka tests: clusters (librdkafka's mock, or the
//! real broker started by scripts/kafka-up), producing and reading topics,
//! reading committed offsets, and a recording sink.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluicegate_core::{Origin, Outputs, Stage};
use tokio::sync::Semaphore;

pub const REAL_BROKER: &str = "127.0.0.1:9092";

/// Shows the source's and librdkafka's logs in a failing test's output
/// (`RUST_LOG` overrides the default filter).
pub fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,librdkafka=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Awaits `fut` or panics naming what it waited for.
pub async fn within<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Polls `cond` every few milliseconds until it holds (real time: Kafka clients
/// run on their own threads), or panics after `limit` naming what it waited for.
pub async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    within(limit, what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// A unique name per test run (topics and groups must not collide across
/// tests and runs on a long-lived broker).
pub fn unique(prefix: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// librdkafka's in-process mock cluster with its topics.
pub struct Mock {
    pub cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    pub brokers: String,
}

impl Mock {
    pub fn new(brokers: i32) -> Self {
        let cluster = MockCluster::new(brokers).expect("mock cluster");
        let brokers = cluster.bootstrap_servers();
        Mock { cluster, brokers }
    }

    pub fn topic(&self, name: &str, partitions: i32) {
        self.cluster
            .create_topic(name, partitions, 1)
            .expect("create topic");
    }
}

/// The real broker from scripts/kafka-up. Panics (never skips) if it is not
/// there: the test command starts it.
pub fn real_broker() -> String {
    if std::net::TcpStream::connect_timeout(
        &REAL_BROKER.parse().expect("addr"),
        Duration::from_secs(2),
    )
    .is_err()
    {
        panic!("no Kafka broker on {REAL_BROKER}: run scripts/kafka-up (the test command does)");
    }
    REAL_BROKER.to_string()
}

/// Creates a topic on the real broker (the Kafka admin API), waiting until
/// every partition has a leader. Call from a multi-thread runtime.
pub fn real_topic(name: &str, partitions: i32) {
    let config = sluicegate_kafka_io::KafkaConfig::new(REAL_BROKER);
    let created = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current()
            .block_on(sluicegate_kafka_io::admin::ensure_topics(
                &config,
                &[(name, partitions)],
                Duration::from_secs(30),
            ))
            .map_err(|e| e.to_string())
    });
    if let Err(e) = created {
        panic!("creating topic {name}: {e}");
    }
}

pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produces records `0..n`: payload and key are the decimal number, partition `i % partitions`.
pub async fn produce_numbers(brokers: &str, topic: &str, partitions: i32, n: u64) {
    produce_range(brokers, topic, partitions, 0..n).await
}

/// Produces the records of `numbers` like [`produce_numbers`]: payload and
/// key are the decimal number, partition `i % partitions`.
pub async fn produce_range(
    brokers: &str,
    topic: &str,
    partitions: i32,
    numbers: std::ops::Range<u64>,
) {
    produce_with(brokers, topic, numbers, |i| (i % partitions as u64) as i32).await
}

/// Produces the records of `numbers`, payload and key the decimal number,
/// each to partition `partition_of(number)`, and waits for every delivery.
pub async fn produce_with(
    brokers: &str,
    topic: &str,
    numbers: std::ops::Range<u64>,
    partition_of: impl Fn(u64) -> i32,
) {
    let p = producer(brokers);
    let mut pending = Vec::new();
    for i in numbers {
        let s = i.to_string();
        let rec = FutureRecord::to(topic)
            .payload(&s)
            .key(&s)
            .partition(partition_of(i));
        pending.push(p.send_result(rec).map_err(|(e, _)| e).expect("enqueue"));
    }
    for d in pending {
        within(Duration::from_secs(30), "a delivery", d)
            .await
            .expect("not canceled")
            .expect("delivered");
    }
}

/// Reads `n` records from the start of `topic` (any group-less consumer).
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    n: usize,
    isolation: &str,
) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    within(
        Duration::from_secs(60),
        &format!("{n} records in {topic}"),
        async {
            while out.len() < n {
                match consumer.poll(Duration::ZERO) {
                    Some(Ok(m)) => out.push(m.detach()),
                    Some(Err(e)) => eprintln!("reader: {e}"),
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        },
    )
    .await;
    out
}

/// The offsets committed by `group` for partitions `0..partitions` of `topic`.
pub fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}

pub fn header(m: &OwnedMessage, key: &str) -> Option<String> {
    let hs = m.headers()?;
    hs.iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).to_string()))
}

/// A sink that records what it saw: the number in each payload, and the
/// (partition, offset) it finished, before the acknowledgement fires. It can
/// hold one record at a gate, and sleep a random time per record.
#[derive(Clone, Default)]
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<u64>>>,
    pub finished: Arc<Mutex<HashSet<(i32, i64)>>>,
    pub max_delay_ms: u64,
    pub hold: Option<(i32, i64, Arc<Semaphore>)>,
    pub block_all: Option<Arc<Semaphore>>,
    pub held_now: Arc<AtomicBool>,
}

impl Recorder {
    pub fn seen(&self) -> Vec<u64> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    pub fn distinct(&self) -> usize {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .collect::<HashSet<_>>()
            .len()
    }

    pub fn finished(&self) -> HashSet<(i32, i64)> {
        self.finished.lock().expect("lock").clone()
    }
}

impl Stage for Recorder {
    type In = Bytes;
    type Out = ();
    type Error = String;

    async fn process(&self, payload: Bytes, origin: &Origin) -> Result<Outputs<()>, String> {
        let (p, o) = (origin.partition.unwrap_or(-1), origin.offset.unwrap_or(-1));
        if let Some((hp, ho, gate)) = &self.hold {
            if (*hp, *ho) == (p, o) {
                self.held_now.store(true, Ordering::SeqCst);
                gate.acquire().await.map_err(|e| e.to_string())?.forget();
                self.held_now.store(false, Ordering::SeqCst);
            }
        }
        if let Some(gate) = &self.block_all {
            gate.acquire().await.map_err(|e| e.to_string())?.forget();
        }
        if self.max_delay_ms > 0 {
            let ms = rand::random_range(0..=self.max_delay_ms);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let n: u64 = std::str::from_utf8(&payload)
            .map_err(|e| e.to_string())?
            .parse()
            .map_err(|e: std::num::ParseIntError| e.to_string())?;
        self.seen.lock().expect("lock").push(n);
        self.finished.lock().expect("lock").insert((p, o));
        Ok(Outputs::one(()))
    }
}

/// Counts of each number seen (for duplicates and gaps).
pub fn histogram(seen: &[u64]) -> BTreeMap<u64, usize> {
    let mut h = BTreeMap::new();
    for n in seen {
        *h.entry(*n).or_insert(0) += 1;
    }
    h
}
/// A transactional sink producing to `output` on `brokers`, committing
/// through `coupling`.
pub fn txn_sink(
    brokers: &str,
    output: &str,
    transactional_id: &str,
    coupling: sluicegate_kafka_io::ExactlyOnce,
) -> sluicegate_kafka_io::KafkaTxnSink {
    sluicegate_kafka_io::KafkaTxnSink::new(
        &sluicegate_kafka_io::KafkaConfig::new(brokers),
        output,
        transactional_id,
        coupling,
    )
    .expect("sink")
}

/// `source` → `to-record` (each payload a record) → `txn`, `sink` taking
/// batches of `batch`.
pub fn txn_graph(
    name: &str,
    source: sluicegate_kafka_io::KafkaSource,
    sink: sluicegate_kafka_io::KafkaTxnSink,
    batch: sluicegate_core::BatchConfig<sluicegate_kafka_io::ProducerRecord>,
) -> sluicegate_core::Graph {
    use sluicegate_core::{BatchSpec, StageSpec, map};
    use sluicegate_kafka_io::ProducerRecord;
    let mut g = sluicegate_core::Graph::builder(name);
    g.source("kafka", source)
        .via(StageSpec::new(
            "to-record",
            map(|b: Bytes| ProducerRecord::new(b)),
        ))
        .to_batch(BatchSpec::new("txn", sink, batch));
    g.build().expect("valid")
}

pub mod scenarios;
