//! [`KafkaSettings`]: brokers, group, topics, commits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::app::defaults;

/// The Kafka side of the pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap servers; `None` starts librdkafka's mock cluster in-process.
    pub brokers: Option<String>,
    /// Consumer group id; every process with the same group shares the
    /// input's partitions.
    pub group: String,
    /// Topic read from.
    pub input_topic: String,
    /// Topic the transformed records are produced to; empty for none.
    pub output_topic: String,
    /// Topic failed records go to, with headers naming why.
    pub dead_letter_topic: String,
    /// Members of the consumer group in this process.
    pub workers: usize,
    /// Commit the finished prefix at least this often.
    pub commit_interval_ms: u64,
    /// Commit after this many records finished.
    pub commit_every: usize,
    /// Pause the partitions when the pipeline stays full this long.
    pub pause_after_ms: u64,
    /// On revoke, wait this long for in-flight records before releasing.
    pub revoke_timeout_ms: u64,
    /// Give up at start if the cluster does not answer within this.
    pub connect_timeout_ms: u64,
    /// Per partition, how many records may be handed out from its oldest
    /// unfinished one on before that partition alone is paused (resumed
    /// below 75%): one stuck record cannot grow the uncommitted window
    /// without bound.
    pub window_limit: usize,
    /// Exactly-once Kafka to Kafka: each batch's output records and the
    /// consumed offsets they cover commit in one Kafka transaction, after
    /// the batch's rows committed in the store (see
    /// [`pipeline`](crate::pipeline)). Needs an output topic and one
    /// consumer per process (`workers = 1`).
    pub exactly_once: bool,
    /// The transactional producer's id in exactly-once mode; empty for
    /// `sluicegate-{group}`. It must be unique among the processes of the
    /// group and stable across restarts of one (a restarted process aborts
    /// what its predecessor left open; a second process with the same id
    /// fences the first).
    pub transactional_id: String,
    /// librdkafka properties passed through unchanged (SASL, TLS, tuning).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            brokers: None,
            group: defaults::GROUP.into(),
            input_topic: defaults::INPUT_TOPIC.into(),
            output_topic: defaults::OUTPUT_TOPIC.into(),
            dead_letter_topic: defaults::DEAD_LETTER_TOPIC.into(),
            workers: defaults::WORKERS,
            commit_interval_ms: defaults::COMMIT_INTERVAL_MS,
            commit_every: defaults::COMMIT_EVERY,
            pause_after_ms: defaults::PAUSE_AFTER_MS,
            revoke_timeout_ms: defaults::REVOKE_TIMEOUT_MS,
            connect_timeout_ms: defaults::CONNECT_TIMEOUT_MS,
            window_limit: defaults::WINDOW_LIMIT,
            exactly_once: false,
            transactional_id: String::new(),
            properties: BTreeMap::new(),
        }
    }
}
