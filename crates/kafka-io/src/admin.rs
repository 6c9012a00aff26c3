//! Topic administration: create the topics a pipeline needs, and wait until
//! the cluster serves them.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

use crate::config::KafkaConfig;
use crate::error::KafkaIoError;

/// Creates each `(topic, partitions)` that does not exist yet, with the
/// broker's default replication factor, then waits until the cluster's
/// metadata shows every partition of every topic with a leader.
///
/// A topic that already exists is left as it is, whatever its partition
/// count: this never alters a topic.
///
/// # Errors
///
/// [`KafkaIoError::Config`] for a setting librdkafka rejects;
/// [`KafkaIoError::TopicCreation`] naming the topic when the broker refuses
/// it; [`KafkaIoError::Unreachable`] when the metadata does not show every
/// partition within `timeout`.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use sluicegate_kafka_io::{KafkaConfig, admin};
///
/// # async fn run() -> Result<(), sluicegate_kafka_io::KafkaIoError> {
/// let kafka = KafkaConfig::new("127.0.0.1:9092");
/// admin::ensure_topics(&kafka, &[("orders", 8), ("orders-dlq", 1)], Duration::from_secs(10)).await?;
/// # Ok(()) }
/// ```
pub async fn ensure_topics(
    config: &KafkaConfig,
    topics: &[(&str, i32)],
    timeout: Duration,
) -> Result<(), KafkaIoError> {
    // Only the missing ones are asked for (some clusters, librdkafka's
    // mock among them, do not serve the admin request at all).
    let existing = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || existing_topics(&config, timeout))
            .await
            .map_err(|_| KafkaIoError::Client(rdkafka::error::KafkaError::Canceled))??
    };
    let missing: Vec<&(&str, i32)> = topics
        .iter()
        .filter(|(name, _)| !existing.iter().any(|e| e == name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = config
        .client_config()
        .create()
        .map_err(|e| config.explain(e))?;
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(-1)))
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|source| unreachable(config, timeout, source))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaIoError::TopicCreation { topic, code }),
        }
    }
    let config = config.clone();
    let topics: Vec<(String, i32)> = topics.iter().map(|(t, p)| (t.to_string(), *p)).collect();
    tokio::task::spawn_blocking(move || wait_for_leaders(&config, &topics, timeout))
        .await
        .map_err(|_| KafkaIoError::Client(rdkafka::error::KafkaError::Canceled))?
}

/// The topics whose every partition has a leader now.
fn existing_topics(config: &KafkaConfig, timeout: Duration) -> Result<Vec<String>, KafkaIoError> {
    let probe: BaseConsumer = config
        .client_config()
        .create()
        .map_err(|e| config.explain(e))?;
    let metadata = probe
        .fetch_metadata(None, timeout)
        .map_err(|source| unreachable(config, timeout, source))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| {
            t.error().is_none()
                && !t.partitions().is_empty()
                && t.partitions().iter().all(|p| p.leader() >= 0)
        })
        .map(|t| t.name().to_string())
        .collect())
}

/// How many partitions `topic` has.
///
/// # Errors
///
/// [`KafkaIoError::Unreachable`] when the cluster does not answer within
/// `timeout`; [`KafkaIoError::UnknownTopic`] when the topic does not exist.
pub async fn partition_count(
    config: &KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<i32, KafkaIoError> {
    let config = config.clone();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let probe: BaseConsumer = config
            .client_config()
            .create()
            .map_err(|e| config.explain(e))?;
        let metadata = probe
            .fetch_metadata(Some(&topic), timeout)
            .map_err(|source| unreachable(&config, timeout, source))?;
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                Ok(t.partitions().len() as i32)
            }
            _ => Err(KafkaIoError::UnknownTopic(topic)),
        }
    })
    .await
    .map_err(|_| KafkaIoError::Client(rdkafka::error::KafkaError::Canceled))?
}

fn unreachable(
    config: &KafkaConfig,
    waited: Duration,
    source: rdkafka::error::KafkaError,
) -> KafkaIoError {
    KafkaIoError::Unreachable {
        brokers: config.get("bootstrap.servers").unwrap_or("?").to_string(),
        waited,
        source,
    }
}

/// Polls the metadata until every partition of `topics` has a leader (a
/// newly created topic takes a moment to appear everywhere).
fn wait_for_leaders(
    config: &KafkaConfig,
    topics: &[(String, i32)],
    timeout: Duration,
) -> Result<(), KafkaIoError> {
    let probe: BaseConsumer = config
        .client_config()
        .create()
        .map_err(|e| config.explain(e))?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let metadata = probe
            .fetch_metadata(None, left.max(Duration::from_millis(100)))
            .map_err(|source| unreachable(config, timeout, source))?;
        let ready = topics.iter().all(|(name, _)| {
            metadata.topics().iter().any(|t| {
                t.name() == name
                    && t.error().is_none()
                    && !t.partitions().is_empty()
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            })
        });
        if ready {
            return Ok(());
        }
        if left.is_zero() {
            return Err(unreachable(
                config,
                timeout,
                rdkafka::error::KafkaError::MetadataFetch(RDKafkaErrorCode::LeaderNotAvailable),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
