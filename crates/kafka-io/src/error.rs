//! Errors of the Kafka source and sink.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// What can go wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaIoError {
    /// A setting librdkafka rejected (the value of a secret is never shown).
    #[error("invalid Kafka setting `{key}` = `{value}`: {reason}")]
    Config {
        /// The property.
        key: String,
        /// Its value (`***` for secrets).
        value: String,
        /// librdkafka's explanation.
        reason: String,
    },
    /// The cluster did not answer in time.
    #[error("Kafka brokers {brokers} unreachable after {waited:?}: {source}")]
    Unreachable {
        /// `bootstrap.servers`.
        brokers: String,
        /// How long we waited.
        waited: Duration,
        /// The last error.
        #[source]
        source: KafkaError,
    },
    /// A topic to consume does not exist.
    #[error("topic `{0}` does not exist")]
    UnknownTopic(String),
    /// More consumers than partitions: the extra ones would sit idle.
    #[error(
        "{workers} consumers for {partitions} partitions of {topics}: at most {partitions} can get work; lower the number of workers"
    )]
    TooManyWorkers {
        /// Topics consumed.
        topics: String,
        /// Consumers asked for.
        workers: usize,
        /// Partitions available.
        partitions: usize,
    },
    /// A record failed and nothing took it (no dead-letter route, or the
    /// dead-letter write failed): the source stops so the record is retried
    /// after a restart, since committing past it would lose it.
    #[error(
        "record {topic}/{partition}@{offset} failed with no dead-letter route: stopping so it is retried on restart"
    )]
    RecordFailed {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
    },
    /// Producing a record failed after every attempt.
    #[error("delivery failed after {attempts} attempt(s): {source}")]
    SendFailed {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: KafkaError,
    },
    /// Any other client error.
    #[error(transparent)]
    Client(#[from] KafkaError),
}

impl KafkaIoError {
    /// Whether trying again may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            KafkaIoError::Unreachable { .. } => true,
            KafkaIoError::SendFailed { source, .. } | KafkaIoError::Client(source) => {
                is_retriable(source)
            }
            _ => false,
        }
    }
}

/// Whether a client error is worth retrying.
pub(crate) fn is_retriable(err: &KafkaError) -> bool {
    match err.rdkafka_error_code() {
        Some(code) => matches!(
            code,
            RDKafkaErrorCode::QueueFull
                | RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::NotEnoughReplicas
                | RDKafkaErrorCode::NotEnoughReplicasAfterAppend
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::NotCoordinator
        ),
        None => false,
    }
}
