//! What a source in transactional mode shares with its transactional sink:
//! the assignment, its generation, the group metadata, and the offsets.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, ConsumerGroupMetadata};
use sluicegate_core::{CommitLedger, Origin};

use super::shared::{Shared, lock};
use crate::error::KafkaIoError;

/// The coupling of a [`KafkaSource`](crate::KafkaSource) in
/// [transactional mode](crate::KafkaSource::transactional) and the
/// [`KafkaTxnSink`](crate::KafkaTxnSink) that commits its offsets: one
/// object both sides hold, created by
/// [`KafkaSource::exactly_once`](crate::KafkaSource::exactly_once) and handed
/// to [`KafkaTxnSink::new`](crate::KafkaTxnSink::new).
///
/// # Contract
///
/// - The source's rebalance callbacks change the ownership only through
///   the state this object reads: every assignment, every revocation (once
///   its records in flight are done) and a rebalance error that drops the
///   assignment bump the [`Generation`] under the same lock as the change
///   of ownership (and, at an assignment, of the group metadata). So a
///   reader that sees the same generation before and after reading the
///   ownership of its partitions read one assignment.
/// - A transaction captures the generation with [`ExactlyOnce::generation`]
///   before it decides which records to produce
///   ([`ExactlyOnce::ownership`]), takes the group metadata to send with its
///   offsets from [`ExactlyOnce::group_metadata_for`] (refused once the
///   generation moved on), and right before `commit_transaction` checks
///   [`ExactlyOnce::unchanged_since`]: if the assignment changed meanwhile
///   it aborts, and tries the batch again under the new generation.
/// - Between that last check and the commit, a revocation of one of the
///   transaction's partitions cannot finish: the source waits (up to its
///   [`revoke_timeout`](crate::KafkaSource::revoke_timeout), then stops)
///   for the partition's records in flight, and the transaction's records
///   stay in flight until it committed and called
///   [`CommitLedger::committed`].
/// - The group metadata is refreshed about every second and as a
///   revocation starts (with cooperative assignment the group's generation
///   moves on before the revocation callback runs); that refresh does not
///   change the assignment, so it does not bump the generation: the broker
///   refuses a transaction sent with stale metadata (`ILLEGAL_GENERATION`)
///   and the sink tries again.
///
/// The offsets themselves go through its [`CommitLedger`] implementation:
/// [`CommitLedger::offsets_with`] for what a transaction commits with its
/// records (nothing is marked finished: the records finish when their
/// acknowledgements resolve, after the commit), then
/// [`CommitLedger::committed`] once it committed (counted in
/// [`SourceStats::commits`](crate::SourceStats::commits)).
///
/// [`SourceStats::revocations`](crate::SourceStats::revocations) and
/// [`assignments`](crate::SourceStats::assignments) are statistics only.
#[derive(Debug, Clone)]
pub struct ExactlyOnce {
    pub(super) shared: Arc<Shared>,
}

/// The number of assignment changes (assignments and revocations) a source
/// has made: what a transaction began under (see [`ExactlyOnce`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(u64);

impl Generation {
    /// The count of assignment changes.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Whether a partition is this consumer's, for a transactional sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Assigned and tracked.
    Owned,
    /// Revoked since its records were handed out: they must not be
    /// produced (the new owner reads them again).
    Revoked,
    /// Never consumed by this source.
    Foreign,
}

/// The assignment as a transactional sink sees it; one lock with the
/// generation, taken before the tracker's.
#[derive(Default)]
pub(super) struct Assignment {
    generation: u64,
    /// Partitions revoked and not assigned again since.
    released: BTreeSet<(String, i32)>,
    /// The consumer group metadata, captured on the consumer thread.
    group_metadata: Option<Arc<ConsumerGroupMetadata>>,
}

impl std::fmt::Debug for Assignment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assignment")
            .field("generation", &self.generation)
            .field("released", &self.released)
            .field("group_metadata", &self.group_metadata.is_some())
            .finish()
    }
}

impl Shared {
    /// Takes `parts` (an assignment): tracked, no longer released, with
    /// the group's new `metadata` (in transactional mode); a new generation.
    pub(super) fn take_partitions(
        &self,
        parts: &[(String, i32)],
        metadata: Option<ConsumerGroupMetadata>,
    ) {
        let mut assignment = lock(&self.assignment);
        lock(&self.tracker).assign(parts);
        for p in parts {
            assignment.released.remove(p);
        }
        if let Some(m) = metadata {
            assignment.group_metadata = Some(Arc::new(m));
        }
        assignment.generation += 1;
    }

    /// Gives `parts` up (the end of a revocation): released first, so a
    /// transactional sink never sees a partition as neither owned nor
    /// revoked, then forgotten by the tracker; a new generation.
    pub(super) fn release_partitions(&self, parts: &[(String, i32)]) {
        let mut assignment = lock(&self.assignment);
        assignment.released.extend(parts.iter().cloned());
        lock(&self.tracker).remove(parts);
        assignment.generation += 1;
    }

    /// The consumer dropped its assignment after a rebalance error: a new
    /// generation (the next assignment says what is owned).
    pub(super) fn assignment_lost(&self) {
        lock(&self.assignment).generation += 1;
    }

    /// Captures the consumer's group metadata, in transactional mode.
    pub(super) fn refresh_group_metadata<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) {
        if let Some(m) = self.group_metadata_of(consumer) {
            lock(&self.assignment).group_metadata = Some(Arc::new(m));
        }
    }

    /// The consumer's group metadata, in transactional mode.
    pub(super) fn group_metadata_of<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
    ) -> Option<ConsumerGroupMetadata> {
        if self.transactional.load(Ordering::Relaxed) {
            consumer.group_metadata()
        } else {
            None
        }
    }

    /// See [`CommitLedger::offsets_with`].
    pub(super) fn offsets_with(&self, origins: &[&Origin]) -> Vec<(String, i32, i64)> {
        let mut finishing: BTreeMap<(String, i32), BTreeMap<i64, usize>> = BTreeMap::new();
        for o in origins {
            if let (Some(t), Some(p), Some(off)) = (&o.topic, o.partition, o.offset) {
                *finishing
                    .entry((t.to_string(), p))
                    .or_default()
                    .entry(off)
                    .or_default() += 1;
            }
        }
        lock(&self.tracker).to_commit_with(&finishing)
    }

    /// Notes offsets a commit elsewhere wrote (counted in
    /// [`SourceStats::commits`](crate::SourceStats::commits)).
    pub(super) fn note_committed(&self, offsets: &[(String, i32, i64)]) {
        if offsets.is_empty() {
            return;
        }
        let mut tracker = lock(&self.tracker);
        for (t, p, o) in offsets {
            tracker.committed(t, *p, *o);
        }
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
    }
}

impl ExactlyOnce {
    /// Whether the source is in transactional mode (else its offsets are
    /// not this object's to commit).
    pub fn is_transactional(&self) -> bool {
        self.shared.transactional.load(Ordering::SeqCst)
    }

    /// The current generation: capture it when a transaction begins.
    pub fn generation(&self) -> Generation {
        Generation(lock(&self.shared.assignment).generation)
    }

    /// Whether `topic`/`partition` is owned now, was revoked, or was never
    /// this source's.
    pub fn ownership(&self, topic: &str, partition: i32) -> Ownership {
        let assignment = lock(&self.shared.assignment);
        if lock(&self.shared.tracker).owns(topic, partition) {
            Ownership::Owned
        } else if assignment
            .released
            .contains(&(topic.to_string(), partition))
        {
            Ownership::Revoked
        } else {
            Ownership::Foreign
        }
    }

    /// `Ok` if the assignment did not change since `began`.
    ///
    /// # Errors
    ///
    /// [`KafkaIoError::AssignmentChanged`] if it did: abort the transaction.
    pub fn unchanged_since(&self, began: Generation) -> Result<(), KafkaIoError> {
        let now = lock(&self.shared.assignment).generation;
        changed(began, now)
    }

    /// The consumer group metadata (group, member id, group generation) to
    /// send with a transaction's offsets, so the group coordinator can fence
    /// a member that lost its partitions; the latest captured, provided the
    /// assignment is still the one of `began`.
    ///
    /// # Errors
    ///
    /// [`KafkaIoError::AssignmentChanged`] if the assignment changed since
    /// `began`; [`KafkaIoError::NoGroupMetadata`] before the first
    /// assignment (and always outside transactional mode).
    pub fn group_metadata_for(
        &self,
        began: Generation,
    ) -> Result<Arc<ConsumerGroupMetadata>, KafkaIoError> {
        let assignment = lock(&self.shared.assignment);
        changed(began, assignment.generation)?;
        assignment
            .group_metadata
            .clone()
            .ok_or(KafkaIoError::NoGroupMetadata)
    }
}

fn changed(began: Generation, now: u64) -> Result<(), KafkaIoError> {
    if began.0 == now {
        Ok(())
    } else {
        Err(KafkaIoError::AssignmentChanged {
            began: began.0,
            now,
        })
    }
}

impl CommitLedger for ExactlyOnce {
    fn group(&self) -> String {
        self.shared.group.get().cloned().unwrap_or_default()
    }

    fn offsets_with(&self, origins: &[&Origin]) -> Vec<(String, i32, i64)> {
        self.shared.offsets_with(origins)
    }

    fn committed(&self, offsets: &[(String, i32, i64)]) {
        self.shared.note_committed(offsets);
    }
}

#[cfg(test)]
#[path = "exactly_once_tests.rs"]
mod tests;
