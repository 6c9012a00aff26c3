//! The pipeline's Kafka sources: the consumers of the input topic (one per
//! worker, in one group) and the consumer of the retry topics.

use std::sync::Arc;
use std::time::Duration;

use sluicegate_kafka_io::{
    KafkaConfig, KafkaSource, OffsetStore, RetryTopics, consumer_group, headers,
};
use sluicegate_stages::store::Store;

use super::PipelineError;
use super::offsets::StoredOffsets;
use crate::settings::{KafkaSettings, Settings};

/// The consumers of the input topic, set up from the settings; their
/// offsets in the store with `store.offsets`.
pub(super) async fn input(
    settings: &Settings,
    config: &KafkaConfig,
    store: &Arc<dyn Store>,
) -> Result<Vec<KafkaSource>, PipelineError> {
    let k = &settings.kafka;
    let connect = Duration::from_millis(k.connect_timeout_ms);
    let sources = {
        // A new group starts at the beginning of the topic: nothing already
        // in it is skipped. A property given by the user wins.
        let config = if k.properties.contains_key("auto.offset.reset") {
            config.clone()
        } else {
            config.clone().set("auto.offset.reset", "earliest")
        };
        consumer_group(
            &config,
            &k.group,
            &[k.input_topic.as_str()],
            k.workers,
            connect,
        )
        .await?
    };
    let offsets_in_store: Option<Arc<dyn OffsetStore>> = settings.store.offsets.then(|| {
        Arc::new(StoredOffsets {
            store: store.clone(),
            runtime: tokio::runtime::Handle::current(),
        }) as Arc<dyn OffsetStore>
    });
    let sources: Vec<KafkaSource> = sources
        .into_iter()
        .map(|s| {
            let s = match &offsets_in_store {
                Some(o) => s.offsets_in(o.clone()),
                None => s,
            };
            committing(s, k).transactional(k.exactly_once)
        })
        .collect();
    Ok(sources)
}

/// The consumer of the retry topics (`None` without retry levels), the
/// topics made first, one per level, as many partitions as the input.
pub(super) async fn retry(
    settings: &Settings,
    config: &KafkaConfig,
    retry_topics: &RetryTopics,
) -> Result<Option<KafkaSource>, PipelineError> {
    let k = &settings.kafka;
    let connect = Duration::from_millis(k.connect_timeout_ms);
    if retry_topics.is_empty() {
        return Ok(None);
    }
    // One retry topic per level, as many partitions as the input.
    let partitions =
        sluicegate_kafka_io::admin::partition_count(config, &k.input_topic, connect).await?;
    let wanted: Vec<(String, i32)> = retry_topics
        .topics()
        .into_iter()
        .map(|t| (t, partitions))
        .collect();
    let wanted_ref: Vec<(&str, i32)> = wanted.iter().map(|(t, p)| (t.as_str(), *p)).collect();
    sluicegate_kafka_io::admin::ensure_topics(config, &wanted_ref, connect).await?;
    let source = KafkaSource::new(
        config.clone(),
        settings.retry_group(),
        retry_topics.topics(),
    )
    .due_header(headers::RETRY_DUE)
    .connect_timeout(connect);
    Ok(Some(committing(source, k)))
}

/// How a source commits, pauses and keeps records, from the settings: the
/// same for the input's consumers and the retry topics' consumer.
fn committing(source: KafkaSource, k: &KafkaSettings) -> KafkaSource {
    source
        .commit_interval(Duration::from_millis(k.commit_interval_ms))
        .commit_every(k.commit_every)
        .pause_after(Duration::from_millis(k.pause_after_ms))
        .revoke_timeout(Duration::from_millis(k.revoke_timeout_ms))
        .keep_raw(true)
        .window_limit(k.window_limit)
}
