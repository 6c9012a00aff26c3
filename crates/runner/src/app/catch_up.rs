//! [`CatchUp`]: watching a consumer group catch up with a topic's end
//! offsets (the stop condition of `--until-caught-up` and the embedded
//! default).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use sluicegate_kafka_io::KafkaIoError;

use super::embedded::end_offsets;

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
        let consumer = group_reader(brokers, group)?;
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
        let consumer = group_reader(brokers, group)?;
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

/// A client of `group` that only reads its committed offsets.
fn group_reader(brokers: &str, group: &str) -> Result<BaseConsumer, KafkaIoError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(KafkaIoError::Client)
}
