//! librdkafka callbacks: rebalances and commit results.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::pause::set_assigned;
use super::shared::{Shared, commit, lock, log_commit_failure, release_held};
use crate::sink::TracingContext;

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

impl ConsumerContext for Callbacks {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let parts = parts_of(tpl);
        self.shared
            .stats
            .revocations
            .fetch_add(1, Ordering::Relaxed);
        // 1. Stop handing out the revoked partitions.
        release_held(
            &self.shared,
            Some(&parts),
            "partition revoked before the graph took it",
        );
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
        // Released first: a transactional sink must never see the partition
        // as neither owned nor revoked.
        lock(&self.shared.released).extend(parts.iter().cloned());
        lock(&self.shared.tracker).remove(&parts);
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
            lock(&self.shared.tracker).assign(&parts);
            {
                let mut released = lock(&self.shared.released);
                for p in &parts {
                    released.remove(p);
                }
            }
            // A new generation: the transactional sink must send this one.
            self.shared.refresh_group_metadata(consumer);
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
