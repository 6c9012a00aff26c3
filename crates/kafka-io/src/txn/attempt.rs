//! One transaction of a batch: produce, send the offsets, check the
//! assignment, commit; or abort.

use std::sync::atomic::Ordering;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sluicegate_core::Origin;

use super::KafkaTxnSink;
use crate::error::KafkaIoError;
use crate::producer::{ProducerRecord, TracingContext, enqueue};
use crate::source::{Generation, Ownership};

/// How one transaction attempt failed.
pub(super) struct Attempt {
    pub(super) error: KafkaIoError,
    /// Records the broker acknowledged in the attempt.
    pub(super) produced: u64,
    /// The producer is unusable: no abort, no further attempt.
    pub(super) fatal: bool,
}

impl KafkaTxnSink {
    pub(super) fn step_error(&self, step: &'static str, source: KafkaError) -> KafkaIoError {
        KafkaIoError::Transaction {
            transactional_id: self.transactional_id.clone(),
            step,
            source,
        }
    }

    /// Whether `error` leaves the producer unusable.
    pub(super) fn is_fatal(&self, error: &KafkaError) -> bool {
        let txn_fatal = matches!(error, KafkaError::Transaction(e) if e.is_fatal());
        txn_fatal || self.producer.client().fatal_error().is_some()
    }

    /// Runs a blocking producer call on the blocking pool.
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        step: &'static str,
        call: impl FnOnce(&FutureProducer<TracingContext>) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, (KafkaIoError, bool)> {
        let producer = self.producer.clone();
        let joined = tokio::task::spawn_blocking(move || call(&producer)).await;
        match joined {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let fatal = self.is_fatal(&e);
                Err((self.step_error(step, e), fatal))
            }
            Err(_) => Err((self.step_error(step, KafkaError::Canceled), true)),
        }
    }

    /// One transaction over the records of `batch` marked live under the
    /// assignment of generation `began`. Returns the offsets it committed.
    pub(super) async fn attempt(
        &self,
        batch: &[ProducerRecord],
        origins: &[&Origin],
        live: &[bool],
        began: Generation,
    ) -> Result<Vec<(String, i32, i64)>, Attempt> {
        let fail = |error: KafkaIoError, produced: u64, fatal: bool| Attempt {
            error,
            produced,
            fatal,
        };
        if let Err(e) = self.producer.begin_transaction() {
            let fatal = self.is_fatal(&e);
            return Err(fail(self.step_error("begin_transaction", e), 0, fatal));
        }
        // 1. Produce every live record.
        let mut deliveries = Vec::with_capacity(batch.len());
        let mut send_error = None;
        for ((record, origin), live) in batch.iter().zip(origins).zip(live) {
            if !live {
                continue;
            }
            let fr = self.outgoing.record(record, origin);
            match enqueue(&self.producer, fr, &self.stats.queue_full).await {
                Ok(delivery) => deliveries.push(delivery),
                Err(e) => {
                    send_error = Some(e);
                    break;
                }
            }
        }
        let mut produced = 0u64;
        let mut delivery_error = send_error;
        for result in futures::future::join_all(deliveries).await {
            match result {
                Ok(Ok(_)) => produced += 1,
                Ok(Err((e, _))) => {
                    delivery_error.get_or_insert(e);
                }
                Err(_canceled) => {
                    delivery_error.get_or_insert(KafkaError::Canceled);
                }
            }
        }
        if let Some(e) = delivery_error {
            let fatal = self.is_fatal(&e);
            return Err(fail(self.step_error("produce", e), produced, fatal));
        }
        // 2. The offsets these records (and the ones finished before them) cover.
        let live_origins: Vec<&Origin> = origins
            .iter()
            .zip(live)
            .filter(|(_, l)| **l)
            .map(|(o, _)| *o)
            .collect();
        let (offsets, short) =
            sluicegate_core::ledger::offsets_for(&self.source, &live_origins, self.gap_wait).await;
        if !short.is_empty() {
            self.stats.gaps.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(transactional_id = %self.transactional_id, partitions = ?short, wait = ?self.gap_wait, "an earlier record is unfinished: committing offsets short of this transaction's records (they would be produced again after a crash before the next commit); keep per-partition order before the transactional sink");
        }
        if !offsets.is_empty() {
            let group = match self.source.group_metadata_for(began) {
                Ok(group) => group,
                Err(error) => return Err(fail(error, produced, false)),
            };
            let timeout = self.timeout;
            let list = offsets.clone();
            let sent = self
                .blocking("send_offsets_to_transaction", move |p| {
                    let mut tpl = TopicPartitionList::new();
                    for (t, part, o) in &list {
                        tpl.add_partition_offset(t, *part, Offset::Offset(*o))?;
                    }
                    p.send_offsets_to_transaction(&tpl, &group, timeout)
                })
                .await;
            if let Err((error, fatal)) = sent {
                return Err(fail(error, produced, fatal));
            }
        }
        if !self.hold_before_commit.is_zero() {
            tokio::time::sleep(self.hold_before_commit).await;
        }
        // 3. Under another assignment, the records' partitions may have been
        // revoked (their new owner produces them again) and the offsets
        // were computed, and sent, for the old one: abort, try again. A
        // revocation of the transaction's partitions cannot finish from
        // here to the commit: it waits for these records.
        if let Err(error) = self.source.unchanged_since(began) {
            return Err(fail(error, produced, false));
        }
        // 4. Commit.
        self.end(true)
            .await
            .map(|()| offsets)
            .map_err(|(error, fatal)| fail(error, produced, fatal))
    }

    /// Aborts the current transaction.
    pub(super) async fn abort(&self) -> Result<(), (KafkaIoError, bool)> {
        self.end(false).await
    }

    /// Commits (`commit`) or aborts the current transaction. A retriable
    /// failure is tried again, up to 3 times in all; for a commit, only
    /// one that does not require an abort.
    async fn end(&self, commit: bool) -> Result<(), (KafkaIoError, bool)> {
        let step = if commit {
            "commit_transaction"
        } else {
            "abort_transaction"
        };
        let timeout = self.timeout;
        let mut tries = 0;
        loop {
            tries += 1;
            let ended = self
                .blocking(step, move |p| {
                    if commit {
                        p.commit_transaction(timeout)
                    } else {
                        p.abort_transaction(timeout)
                    }
                })
                .await;
            match ended {
                Err((KafkaIoError::Transaction { source, .. }, false))
                    if tries < 3
                        && matches!(&source, KafkaError::Transaction(e) if e.is_retriable() && !(commit && e.txn_requires_abort())) =>
                {
                    tracing::debug!(error = %source, step, "failed; trying it again");
                }
                other => return other,
            }
        }
    }

    /// Which records to produce: those of owned partitions (and those
    /// without a Kafka origin). Records of revoked partitions are skipped.
    pub(super) fn live(&self, origins: &[&Origin]) -> Result<Vec<bool>, KafkaIoError> {
        origins
            .iter()
            .map(|o| match (&o.topic, o.partition, o.offset) {
                (Some(t), Some(p), Some(offset)) => match self.source.ownership(t, p) {
                    Ownership::Owned => Ok(true),
                    Ownership::Revoked => Ok(false),
                    Ownership::Foreign => Err(KafkaIoError::ForeignRecord {
                        topic: t.to_string(),
                        partition: p,
                        offset,
                    }),
                },
                _ => Ok(true),
            })
            .collect()
    }

    pub(super) fn give_up(
        &self,
        records: usize,
        attempts: u32,
        fatal: bool,
        error: KafkaIoError,
    ) -> KafkaIoError {
        tracing::error!(transactional_id = %self.transactional_id, records, attempts, fatal, %error, "batch not committed; stopping");
        KafkaIoError::TransactionFailed {
            transactional_id: self.transactional_id.clone(),
            records,
            attempts,
            fatal,
            source: Box::new(error),
        }
    }
}
