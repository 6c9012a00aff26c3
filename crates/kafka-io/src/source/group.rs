//! Several members of one consumer group in one process.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;

use super::KafkaSource;
use super::callbacks::Callbacks;
use super::metadata::check_topics;
use super::shared::Shared;
use crate::config::KafkaConfig;
use crate::error::KafkaIoError;

/// `workers` members of one consumer group in this process, merged into one
/// stream (the seeds' many-workers pattern, with each member committing its
/// own partitions' finished offsets).
///
/// The cluster is asked for the topics' partitions first, on the blocking
/// pool: waiting up to `connect_timeout` for an unreachable cluster holds
/// no runtime thread.
///
/// # Errors
///
/// [`KafkaIoError::TooManyWorkers`] when `workers` exceeds the topics'
/// partitions (the extra members would sit idle), after checking the
/// cluster within `connect_timeout`; [`KafkaIoError::Unreachable`] and
/// [`KafkaIoError::UnknownTopic`] as at start.
pub async fn consumer_group(
    config: &KafkaConfig,
    group_id: &str,
    topics: &[&str],
    workers: usize,
    connect_timeout: Duration,
) -> Result<Vec<KafkaSource>, KafkaIoError> {
    let probe_config = config.clone().set("group.id", group_id);
    let topic_names: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    let partitions = tokio::task::spawn_blocking(move || {
        let probe: BaseConsumer<Callbacks> = probe_config
            .client_config()
            .create_with_context(Callbacks {
                shared: Arc::new(Shared::default()),
                revoke_timeout: Duration::ZERO,
            })
            .map_err(|e| probe_config.explain(e))?;
        check_topics(&probe, &probe_config, &topic_names, connect_timeout)
    })
    .await
    .map_err(|_| KafkaIoError::Client(rdkafka::error::KafkaError::Canceled))??;
    if workers > partitions {
        return Err(KafkaIoError::TooManyWorkers {
            topics: topics.join(","),
            workers,
            partitions,
        });
    }
    Ok((0..workers)
        .map(|_| {
            KafkaSource::new(config.clone(), group_id, topics.iter().copied())
                .connect_timeout(connect_timeout)
        })
        .collect())
}
