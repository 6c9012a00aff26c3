//! Kafka plumbing of the embedded default: the mock cluster, producing the
//! generated stream into it, and reading a topic's end offsets.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use sluicegate_kafka_io::KafkaIoError;

pub use super::catch_up::CatchUp;
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
