//! # sluicegate-kafka-io
//!
//! Kafka as a sluicegate source and sink, keeping Kafka's guarantees:
//!
//! - [`KafkaSource`]: a consumer-group member that commits an offset only
//!   when every record before it is finished (delivered, dropped on purpose,
//!   or dead-lettered), whatever order they finish in; pauses its partitions
//!   while the graph is full and keeps polling, so a slow pipeline is never
//!   kicked out of its group; drains revoked partitions before releasing them.
//! - [`KafkaSink`]: produces each record and acknowledges it only when the
//!   broker has; idempotent producer by default; retries with backoff.
//! - [`KafkaTxnSink`]: exactly-once Kafka to Kafka. With its source in
//!   [transactional mode](KafkaSource::transactional), each batch's outputs
//!   and the consumed offsets they cover commit in one Kafka transaction
//!   (`send_offsets_to_transaction`); a failed transaction is aborted and
//!   its batch tried again, and `read_committed` readers see each output
//!   once.
//! - [`DeadLetterSink`]: the dead-letter route to a topic, with headers that
//!   name the error, stage, attempts and origin.
//! - [`admin::ensure_topics`]: create a pipeline's topics if they are
//!   missing, and wait until the cluster serves them.
//! - [`KafkaConfig`]: any librdkafka property passes through; secrets never
//!   appear in logs or `Debug`.

#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod admin;
mod config;
mod dead_letter;
mod error;
mod offset_store;
mod producer;
pub mod retry;
mod sink;
mod source;
pub mod tracker;
mod txn;

pub use config::{KafkaConfig, is_secret};
pub use dead_letter::{DeadLetterSink, RetryStats, headers};
pub use error::KafkaIoError;
pub use offset_store::OffsetStore;
pub use producer::{ProducerRecord, TracingContext};
pub use retry::RetryTopics;
pub use sink::{KafkaSink, SinkStats};
pub use source::{
    ExactlyOnce, Generation, KafkaSource, KafkaSourceHandle, Ownership, PartitionLag, PauseReason,
    SourceStats, consumer_group,
};
pub use tracker::{OffsetTracker, PartitionState};
pub use txn::{KafkaTxnSink, TxnStats};

/// The README's code blocks, compiled (and the core quick start run) as doc
/// tests; kept here because this crate depends on everything they use.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
