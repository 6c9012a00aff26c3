//! Offsets kept outside Kafka: in the database a pipeline stores into,
//! written in the same transactions as its rows.

use std::collections::BTreeMap;

use sluicegate_core::BoxError;

/// Where a [`KafkaSource`](crate::KafkaSource) keeps its consumer group's
/// offsets instead of Kafka (see
/// [`KafkaSource::offsets_in`](crate::KafkaSource::offsets_in)): a database
/// that also commits them together with the rows a batch stores, so that a
/// stored row and the offset past it are committed at once or not at all.
///
/// Both calls are blocking: they run on the source's consumer thread (on an
/// assignment, and at each commit).
pub trait OffsetStore: Send + Sync + 'static {
    /// Where the offsets are, for logs.
    fn describe(&self) -> String;

    /// The next offset to read of each partition of `topic` that `group`
    /// has stored; partitions with none are absent.
    ///
    /// # Errors
    ///
    /// When the store cannot be read; the source then stops rather than
    /// start from an offset it cannot check.
    fn load(&self, group: &str, topic: &str) -> Result<BTreeMap<i32, i64>, BoxError>;

    /// Stores `offsets` (topic, partition, next offset to read) for
    /// `group`, never moving one back.
    ///
    /// # Errors
    ///
    /// When the store cannot be written; the next commit tries again.
    fn save(&self, group: &str, offsets: &[(String, i32, i64)]) -> Result<(), BoxError>;
}
