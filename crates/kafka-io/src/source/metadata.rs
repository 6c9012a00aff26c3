//! What the consumer asks the cluster besides records: its topics at
//! start, and the partitions' high watermarks for the lag.

use std::time::Duration;

use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::callbacks::Callbacks;
use super::shared::{Shared, lock};
use crate::config::KafkaConfig;
use crate::error::KafkaIoError;

/// The high watermark of every assigned partition, in one request per
/// partition leader (ListOffsets for the latest offset): the consumer thread
/// stops polling for one round trip, however many partitions it owns.
pub(super) fn refresh_watermarks(consumer: &BaseConsumer<Callbacks>, shared: &Shared) {
    let Ok(mut query) = consumer.assignment() else {
        return;
    };
    // In a timestamp query, `End` (-1) asks for the latest offset: the high
    // watermark.
    if query.count() == 0 || query.set_all_offsets(Offset::End).is_err() {
        return;
    }
    let Ok(latest) = consumer.offsets_for_times(query, Duration::from_millis(500)) else {
        return;
    };
    let mut marks = lock(&shared.high_watermarks);
    for e in latest.elements() {
        if let (Offset::Offset(high), Ok(())) = (e.offset(), e.error()) {
            marks.insert((e.topic().to_string(), e.partition()), high);
        }
    }
}

/// Fails fast (within `timeout`) if the cluster is unreachable or a topic
/// does not exist.
pub(super) fn check_topics(
    consumer: &BaseConsumer<Callbacks>,
    config: &KafkaConfig,
    topics: &[String],
    timeout: Duration,
) -> Result<usize, KafkaIoError> {
    let metadata =
        consumer
            .fetch_metadata(None, timeout)
            .map_err(|source| KafkaIoError::Unreachable {
                brokers: config.get("bootstrap.servers").unwrap_or("?").to_string(),
                waited: timeout,
                source,
            })?;
    let mut partitions = 0;
    for topic in topics {
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                partitions += t.partitions().len()
            }
            _ => return Err(KafkaIoError::UnknownTopic(topic.clone())),
        }
    }
    Ok(partitions)
}
