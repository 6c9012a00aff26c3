//! Kafka plumbing of the runner: the embedded mock cluster, producing the
//! generated stream, and watching a group catch up with a topic.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sluicegate_kafka_io::KafkaIoError;

use crate::app::generate;

/// librdkafka's mock cluster, in this process, with the pipeline's topics.
/// It lives as long as this value.
pub struct Embedded {
    cluster: MockCluster<'static, DefaultProducerContext>,
    brokers: String,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("brokers", &self.brokers)
            .finish()
    }
}

impl Embedded {
    /// Starts a mock cluster of one broker with `topics` of `partitions` each.
    ///
    /// # Errors
    ///
    /// When librdkafka cannot start the mock cluster or create a topic.
    pub fn start(topics: &[&str], partitions: i32) -> Result<Embedded, KafkaError> {
        let cluster = MockCluster::new(1)?;
        for topic in topics.iter().filter(|t| !t.is_empty()) {
            cluster.create_topic(topic, partitions, 1)?;
        }
        let brokers = cluster.bootstrap_servers();
        Ok(Embedded { cluster, brokers })
    }

    /// The bootstrap servers to give clients.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The mock cluster itself (for fault injection in tests).
    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }
}

/// Produces generated records `start..start + n` to `topic` (keyed, so a
/// user's records share a partition), waiting until every one is
/// acknowledged. Blocking: call it from a blocking thread.
///
/// # Errors
///
/// When a record cannot be delivered (after librdkafka's own retries) or
/// the producer cannot be created.
pub fn produce_generated(
    brokers: &str,
    topic: &str,
    start: u64,
    n: u64,
    malformed: f64,
) -> Result<u64, KafkaError> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.max.bytes", "2000000")
        .create()?;
    for i in start..start + n {
        let (key, payload) = generate::record(i, malformed);
        let mut record = BaseRecord::to(topic).key(&key[..]).payload(&payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e),
            }
        }
        if i % 1_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    // Generous: a slow broker may need minutes for a few hundred thousand.
    producer.flush(Duration::from_secs(60 + n / 500))?;
    Ok(n)
}

/// The end offset of every partition of `topic`, from a client of `group`.
/// Blocking.
///
/// # Errors
///
/// [`KafkaIoError::UnknownTopic`] or [`KafkaIoError::Unreachable`].
pub fn end_offsets(
    brokers: &str,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<i32, i64>, KafkaIoError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(KafkaIoError::Client)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| KafkaIoError::Unreachable {
            brokers: brokers.into(),
            waited: timeout,
            source,
        })?;
    let parts = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
        .ok_or_else(|| KafkaIoError::UnknownTopic(topic.into()))?;
    let mut ends = BTreeMap::new();
    for p in parts {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(KafkaIoError::Client)?;
        ends.insert(p, high);
    }
    Ok(ends)
}

/// Watches the offsets `group` has committed on `topic` (and, with
/// [`CatchUp::with_retries`], the retry topics drained behind it).
pub struct CatchUp {
    consumer: BaseConsumer,
    topic: String,
    targets: BTreeMap<i32, i64>,
    retries: Option<Retries>,
}

/// The retry topics a run must drain before it is caught up.
struct Retries {
    brokers: String,
    consumer: BaseConsumer,
    topics: Vec<String>,
}

impl std::fmt::Debug for CatchUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatchUp")
            .field("topic", &self.topic)
            .field("targets", &self.targets)
            .finish()
    }
}

impl CatchUp {
    /// Aims at the end offsets of `topic` as they are now. Blocking.
    ///
    /// # Errors
    ///
    /// As [`end_offsets`].
    pub fn new(
        brokers: &str,
        group: &str,
        topic: &str,
        timeout: Duration,
    ) -> Result<CatchUp, KafkaIoError> {
        let targets = end_offsets(brokers, topic, timeout)?;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(KafkaIoError::Client)?;
        Ok(CatchUp {
            consumer,
            topic: topic.into(),
            targets,
            retries: None,
        })
    }

    /// Also waits for the retry topics (first level first) to be drained:
    /// once the input is committed, each retry topic's end offsets as they
    /// are then must be committed by `group` (the retry consumers' group).
    /// A record moves to a later level before its commit on the earlier
    /// one, so reading the levels in order never misses one in between.
    /// Blocking.
    ///
    /// # Errors
    ///
    /// When the client cannot be made.
    pub fn with_retries(
        mut self,
        brokers: &str,
        group: &str,
        topics: Vec<String>,
    ) -> Result<CatchUp, KafkaIoError> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(KafkaIoError::Client)?;
        self.retries = Some(Retries {
            brokers: brokers.into(),
            consumer,
            topics,
        });
        Ok(self)
    }

    /// Records the group still has to commit to reach the targets (0 when
    /// caught up). Blocking, at most `timeout`.
    ///
    /// # Errors
    ///
    /// When the committed offsets cannot be read.
    pub fn remaining(&self, timeout: Duration) -> Result<i64, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for &p in self.targets.keys() {
            tpl.add_partition(&self.topic, p);
        }
        let committed = self.consumer.committed_offsets(tpl, timeout)?;
        let mut remaining = behind(&committed, &self.topic, &self.targets);
        if remaining > 0 {
            return Ok(remaining);
        }
        let Some(r) = &self.retries else {
            return Ok(0);
        };
        for topic in &r.topics {
            let ends = end_offsets(&r.brokers, topic, timeout).map_err(|e| match e {
                KafkaIoError::Client(e) => e,
                other => KafkaError::MetadataFetch(match other {
                    KafkaIoError::UnknownTopic(_) => rdkafka::types::RDKafkaErrorCode::UnknownTopic,
                    _ => rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure,
                }),
            })?;
            let mut tpl = TopicPartitionList::new();
            for &p in ends.keys() {
                tpl.add_partition(topic, p);
            }
            let committed = r.consumer.committed_offsets(tpl, timeout)?;
            remaining += behind(&committed, topic, &ends);
            if remaining > 0 {
                return Ok(remaining);
            }
        }
        Ok(0)
    }

    /// The total the group has to reach.
    pub fn total(&self) -> i64 {
        self.targets.values().sum()
    }
}

/// How many records the `committed` offsets of `topic` are behind the
/// `targets` (per partition), summed; a partition with nothing committed
/// is behind by its whole target.
fn behind(committed: &TopicPartitionList, topic: &str, targets: &BTreeMap<i32, i64>) -> i64 {
    targets
        .iter()
        .map(|(&p, &target)| {
            let at = committed
                .find_partition(topic, p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(0);
            (target - at).max(0)
        })
        .sum()
}
