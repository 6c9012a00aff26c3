//! The source's own offset commits (outside transactional mode): to Kafka,
//! or to an offset store and then, for the tools that watch lag, to Kafka.

use std::sync::atomic::Ordering;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::shared::{Shared, lock};

/// Commits `offsets` (topic, partition, next offset to read): to Kafka, or,
/// for a source that keeps its offsets elsewhere, there first (the
/// authority) and then to Kafka too, for the tools that watch a group's
/// lag there.
pub(super) fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    shared: &Shared,
    offsets: &[(String, i32, i64)],
    mode: CommitMode,
) {
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in offsets {
        if let Err(e) = tpl.add_partition_offset(t, *p, Offset::Offset(*o)) {
            tracing::warn!(error = %e, "bad offset to commit");
            return;
        }
    }
    shared.finished_since_commit.store(0, Ordering::Relaxed);
    if let Some(store) = shared.offset_store.0.get() {
        let group = shared.group.get().map_or("", String::as_str);
        match store.save(group, offsets) {
            Ok(()) => {
                shared.stats.commits.fetch_add(1, Ordering::Relaxed);
                let mut tracker = lock(&shared.tracker);
                for (t, p, o) in offsets {
                    tracker.committed(t, *p, *o);
                }
            }
            Err(e) => {
                shared.stats.commit_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(store = %store.describe(), error = %e, "offset commit failed; the next commit retries");
                return;
            }
        }
        mirror(consumer, shared, offsets);
        return;
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) => {
            shared.stats.commits.fetch_add(1, Ordering::Relaxed);
            if matches!(mode, CommitMode::Sync) {
                let mut tracker = lock(&shared.tracker);
                for (t, p, o) in offsets {
                    tracker.committed(t, *p, *o);
                }
            }
        }
        Err(e) => {
            shared.stats.commit_failures.fetch_add(1, Ordering::Relaxed);
            log_commit_failure(&e);
        }
    }
}

/// Commits to Kafka the offsets a source with an offset store committed
/// there (by its own commits, or with a store's batches), so the tools that
/// watch a group's lag in Kafka see it move. Informational: the source
/// resumes from the store. Only what changed since the last mirror.
pub(super) fn mirror<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    shared: &Shared,
    offsets: &[(String, i32, i64)],
) {
    let mut mirrored = lock(&shared.mirrored);
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in offsets {
        if mirrored.get(&(t.clone(), *p)) != Some(o)
            && tpl.add_partition_offset(t, *p, Offset::Offset(*o)).is_err()
        {
            return;
        }
    }
    if tpl.count() == 0 {
        return;
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => {
            for e in tpl.elements() {
                if let Offset::Offset(o) = e.offset() {
                    mirrored.insert((e.topic().to_string(), e.partition()), o);
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "mirroring the stored offsets to Kafka failed"),
    }
}

/// [`mirror`] for every partition's offset committed so far.
pub(super) fn mirror_committed<C: ConsumerContext>(consumer: &BaseConsumer<C>, shared: &Shared) {
    if shared.offset_store.0.get().is_none() {
        return;
    }
    let committed: Vec<(String, i32, i64)> = lock(&shared.tracker)
        .states()
        .into_iter()
        .filter_map(|s| Some((s.topic, s.partition, s.committed?)))
        .collect();
    mirror(consumer, shared, &committed);
}

pub(super) fn log_commit_failure(e: &rdkafka::error::KafkaError) {
    if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::RebalanceInProgress) {
        // Expected while a rebalance is pending; the next commit retries.
        tracing::debug!(error = %e, "offset commit refused during a rebalance");
    } else {
        tracing::warn!(error = %e, "offset commit failed; the next commit retries");
    }
}
