//! librdkafka callbacks: rebalances and commit results.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, ConsumerContext, Rebalance};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::commit::{commit, log_commit_failure};
use super::pause::set_assigned;
use super::shared::{Shared, lock, release_held};
use crate::producer::TracingContext;

/// librdkafka callbacks: rebalances and commit results.
pub(super) struct Callbacks {
    pub(super) shared: Arc<Shared>,
    pub(super) revoke_timeout: Duration,
}

impl ClientContext for Callbacks {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        TracingContext.log(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        TracingContext.error(error, reason);
    }
}

fn parts_of(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl Callbacks {
    /// Sets each newly assigned partition's start to the offset its
    /// [`OffsetStore`](crate::OffsetStore) holds (the database wins over
    /// Kafka's committed offset; see `KafkaSource::offsets_in`).
    fn start_from_stored_offsets(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
    ) {
        let Some(store) = self.shared.offset_store.0.get() else {
            return;
        };
        let group = self.shared.group.get().map_or("", String::as_str);
        let parts = parts_of(tpl);
        let mut topics: Vec<&str> = parts.iter().map(|(t, _)| t.as_str()).collect();
        topics.dedup();
        let mut in_kafka = None;
        for topic in topics {
            let stored = match store.load(group, topic) {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::error!(store = %store.describe(), error = %e, "could not read the stored offsets; stopping");
                    // Nothing of these partitions reaches the graph: the
                    // source stops at its next turn.
                    self.shared.paused.store(true, Ordering::SeqCst);
                    *lock(&self.shared.offset_load_failure) =
                        Some(crate::KafkaIoError::OffsetsUnavailable {
                            store: store.describe(),
                            partitions: format!("{parts:?}"),
                            reason: e.to_string(),
                        });
                    return;
                }
            };
            for (partition, offset) in stored {
                if !parts.iter().any(|(t, p)| t == topic && *p == partition) {
                    continue;
                }
                // For the log line only: the database wins.
                if in_kafka.is_none() {
                    use rdkafka::consumer::Consumer;
                    in_kafka = Some(
                        consumer
                            .committed_offsets(tpl.clone(), Duration::from_secs(2))
                            .ok(),
                    );
                }
                let kafka = in_kafka
                    .as_ref()
                    .and_then(Option::as_ref)
                    .as_ref()
                    .and_then(|c| c.find_partition(topic, partition))
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
                if let Err(e) = tpl.set_partition_offset(topic, partition, Offset::Offset(offset)) {
                    tracing::warn!(%topic, partition, error = %e, "could not set the start offset");
                    continue;
                }
                match kafka {
                    Some(k) if k > offset => {
                        tracing::info!(%topic, partition, stored = offset, kafka = k, "starting from the stored offset; Kafka's committed offset is ahead of it (records past the stored offset were not stored, and are read again)")
                    }
                    Some(k) if k < offset => {
                        tracing::info!(%topic, partition, stored = offset, kafka = k, "starting from the stored offset; Kafka's committed offset lags behind it")
                    }
                    _ => {
                        tracing::info!(%topic, partition, stored = offset, "starting from the stored offset")
                    }
                }
            }
        }
    }
}

impl ConsumerContext for Callbacks {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::consumer::{Consumer, RebalanceProtocol};
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.start_from_stored_offsets(consumer, tpl);
                self.pre_rebalance(consumer, &Rebalance::Assign(tpl));
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = assigned {
                    tracing::error!(error = %e, "could not take the assigned partitions");
                }
                self.post_rebalance(consumer, &Rebalance::Assign(tpl));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.pre_rebalance(consumer, &Rebalance::Revoke(tpl));
                let released = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = released {
                    tracing::error!(error = %e, "could not release the revoked partitions");
                }
                self.post_rebalance(consumer, &Rebalance::Revoke(tpl));
            }
            other => {
                let code: rdkafka::types::RDKafkaErrorCode = other.into();
                tracing::error!(error = %code, "rebalance error");
                let error = rdkafka::error::KafkaError::Rebalance(code);
                self.pre_rebalance(consumer, &Rebalance::Error(error.clone()));
                // As librdkafka documents: drop the assignment.
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "could not drop the assignment");
                }
                self.shared.assignment_lost();
                self.post_rebalance(consumer, &Rebalance::Error(error));
            }
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let parts = parts_of(tpl);
        self.shared
            .stats
            .revocations
            .fetch_add(1, Ordering::Relaxed);
        // 0. A transactional sink sends its offsets with the group's
        // generation. With cooperative assignment the generation has
        // already moved on when the revocation comes, and the consume loop,
        // which keeps it current, is waiting here: without this refresh the
        // sink's transactions are refused (ILLEGAL_GENERATION) while this
        // callback waits for their records, until one side gives up.
        self.shared.refresh_group_metadata(consumer);
        // 1. Stop handing out the revoked partitions (a record waiting for
        // its due time was never handed out: the new owner reads it).
        release_held(
            &self.shared,
            Some(&parts),
            "partition revoked before the graph took it",
        );
        lock(&self.shared.delayed).retain(|k, _| !parts.contains(k));
        // 2. Wait (bounded) for their records in flight (not when stopping:
        // what is still in flight then was abandoned).
        let wait = if self.shared.closing.load(Ordering::SeqCst) {
            Duration::ZERO
        } else {
            self.revoke_timeout
        };
        let deadline = Instant::now() + wait;
        let mut tracker = lock(&self.shared.tracker);
        loop {
            let in_flight = tracker.in_flight(Some(&parts));
            if in_flight == 0 {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if wait.is_zero() {
                    break;
                }
                self.shared
                    .stats
                    .revoke_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                if self.shared.transactional.load(Ordering::SeqCst) {
                    // Their transactions may still commit after the
                    // partitions moved on (or came back to this member):
                    // the source stops, see `KafkaIoError::RevokeTimedOut`.
                    *lock(&self.shared.revoke_failure) = Some(in_flight);
                    tracing::error!(in_flight, timeout = ?self.revoke_timeout, "revoke: records still in flight in transactional mode; stopping");
                } else {
                    tracing::warn!(in_flight, timeout = ?self.revoke_timeout, "revoke: records still in flight; committing the finished prefix only (they will be processed again by the new owner)");
                }
                break;
            }
            tracker = self
                .shared
                .changed
                .wait_timeout(tracker, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        // 3. Commit their finished prefix (in transactional mode the sink's
        // transactions did, with the records that finished), then 4. forget them.
        let offsets = tracker.to_commit_for(&parts);
        drop(tracker);
        if !self.shared.transactional.load(Ordering::SeqCst) {
            commit(consumer, &self.shared, &offsets, CommitMode::Sync);
        }
        // A new generation: a transaction begun before it does not commit.
        self.shared.release_partitions(&parts);
        lock(&self.shared.high_watermarks).retain(|k, _| !parts.contains(k));
        tracing::info!(partitions = ?parts, "partitions revoked and released");
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.shared
                .stats
                .assignments
                .fetch_add(1, Ordering::Relaxed);
            let parts = parts_of(tpl);
            tracing::info!(partitions = ?parts, "partitions assigned");
            // A new generation, with the group metadata the transactional
            // sink must send from now on.
            let metadata = self.shared.group_metadata_of(consumer);
            self.shared.take_partitions(&parts, metadata);
            if self.shared.offset_store.0.get().is_some() {
                // The stored offsets each partition starts from are
                // committed (in the store): the next mirror takes them to
                // Kafka even if nothing more is read there (a crash between
                // a batch and its mirror left Kafka behind).
                let mut tracker = lock(&self.shared.tracker);
                for e in tpl.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        tracker.committed(e.topic(), e.partition(), o);
                    }
                }
            }
            set_assigned(consumer, &self.shared, tpl);
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        match result {
            Ok(()) => {
                let mut tracker = lock(&self.shared.tracker);
                for e in offsets.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        tracker.committed(e.topic(), e.partition(), o);
                    }
                }
            }
            Err(e) => {
                self.shared
                    .stats
                    .commit_failures
                    .fetch_add(1, Ordering::Relaxed);
                log_commit_failure(&e);
            }
        }
    }
}
