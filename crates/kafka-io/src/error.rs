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
    /// A record's acknowledgement was dropped without being resolved (a bug
    /// in a stage or in sluicegate): the record may or may not have been
    /// processed, so the source stops and it is read again after a restart;
    /// nothing past it is committed.
    #[error(
        "record {topic}/{partition}@{offset}: its acknowledgement leaked (dropped without being resolved, a bug); stopping so it is read again on restart"
    )]
    RecordLeaked {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
    },
    /// A record was abandoned while the graph was running (a stage that
    /// should have taken it had stopped): the source stops so it is read
    /// again after a restart; nothing past it is committed. Records
    /// abandoned once shutdown began are not reported this way.
    #[error(
        "record {topic}/{partition}@{offset} was abandoned in `{stage}` ({reason}) while the pipeline ran; stopping so it is read again on restart"
    )]
    RecordAbandoned {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// The stage that abandoned it.
        stage: String,
        /// Why.
        reason: String,
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
    /// A step of a Kafka transaction failed (`init_transactions`,
    /// `begin_transaction`, a delivery, `send_offsets_to_transaction`,
    /// `commit_transaction`, `abort_transaction`).
    #[error("transactional producer `{transactional_id}`: {step} failed: {source}")]
    Transaction {
        /// The producer's `transactional.id`.
        transactional_id: String,
        /// The step that failed.
        step: &'static str,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// A batch could not be committed in a transaction: every attempt was
    /// aborted (or the producer failed fatally, e.g. fenced by another
    /// instance with the same `transactional.id`). Its records are not
    /// finished, so the source commits nothing past them; they are read
    /// again, after a restart, from the last committed transaction.
    #[error(
        "transactional producer `{transactional_id}`: batch of {records} record(s) not committed after {attempts} attempt(s){}; stopping so its records are read again from the last committed transaction: {source}",
        if *fatal { " (the producer failed fatally)" } else { ", each aborted" }
    )]
    TransactionFailed {
        /// The producer's `transactional.id`.
        transactional_id: String,
        /// Records in the batch.
        records: usize,
        /// Transactions tried for it.
        attempts: u32,
        /// Whether the producer is unusable (fenced, or a fatal client error).
        fatal: bool,
        /// The last failure.
        #[source]
        source: Box<KafkaIoError>,
    },
    /// A transactional sink's source commits offsets itself.
    #[error(
        "a KafkaTxnSink needs its KafkaSource in transactional mode (`KafkaSource::transactional(true)`); this source commits offsets itself"
    )]
    NotTransactional,
    /// A record reached a transactional sink from a partition its source
    /// never consumed (a sink commits the offsets of one source only).
    #[error(
        "record {topic}/{partition}@{offset} did not come from this KafkaTxnSink's source; a transactional sink takes records from its own KafkaSource only"
    )]
    ForeignRecord {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
    },
    /// The source's assignment changed (a revocation or an assignment; see
    /// [`ExactlyOnce`](crate::ExactlyOnce)) between the start of a
    /// transaction and its commit: the transaction is aborted and the batch
    /// tried again under the new assignment (without the records of
    /// partitions revoked meanwhile).
    #[error("the assignment changed during the transaction (generation {began} to {now})")]
    AssignmentChanged {
        /// The generation the transaction began under.
        began: u64,
        /// The generation when it was about to commit.
        now: u64,
    },
    /// In transactional mode, a revocation gave up waiting for the revoked
    /// partitions' records in flight. Their transactions could still commit
    /// after the partitions went to another member (or came back to this
    /// one, to be read again), so the source stops instead: the records are
    /// read again, after a restart, from the last committed transaction.
    #[error(
        "revoke: {in_flight} record(s) still in flight after {timeout:?} in transactional mode; stopping so they are read again from the last committed transaction (raise `revoke_timeout` above the sink's batch deadline plus a transaction's time)"
    )]
    RevokeTimedOut {
        /// Records still in flight.
        in_flight: usize,
        /// The revoke timeout.
        timeout: Duration,
    },
    /// A transaction has offsets to commit but the consumer has no group
    /// metadata yet.
    #[error(
        "the source has no consumer group metadata to send with the offsets (not assigned yet)"
    )]
    NoGroupMetadata,
    /// A source keeping its offsets outside Kafka
    /// ([`KafkaSource::offsets_in`](crate::KafkaSource::offsets_in)) could
    /// not read them for newly assigned partitions: it stops rather than
    /// start them from an offset it cannot check.
    #[error("could not read the stored offsets of {partitions} from {store}: {reason}")]
    OffsetsUnavailable {
        /// The store.
        store: String,
        /// The partitions assigned.
        partitions: String,
        /// Why.
        reason: String,
    },
    /// The broker refused to create a topic.
    #[error("could not create topic `{topic}`: {code}")]
    TopicCreation {
        /// The topic.
        topic: String,
        /// The broker's error.
        code: RDKafkaErrorCode,
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
