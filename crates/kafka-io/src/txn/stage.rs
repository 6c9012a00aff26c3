//! The transactional sink as a batch stage: start, one transaction per
//! batch with its retries, stop.

use std::sync::atomic::Ordering;

use rdkafka::producer::Producer;
use sluicegate_core::stage::BatchResult;
use sluicegate_core::{BatchStage, CommitLedger, Origin, Outputs};

use super::KafkaTxnSink;
use crate::error::KafkaIoError;
use crate::producer::ProducerRecord;

impl BatchStage for KafkaTxnSink {
    type In = ProducerRecord;
    type Out = ();
    type Error = KafkaIoError;

    /// Checks the source is transactional and runs `init_transactions`.
    async fn start(&self) -> Result<(), KafkaIoError> {
        if !self.source.is_transactional() {
            return Err(KafkaIoError::NotTransactional);
        }
        let timeout = self.init_timeout;
        self.blocking("init_transactions", move |p| p.init_transactions(timeout))
            .await
            .map_err(|(e, _)| e)?;
        tracing::info!(transactional_id = %self.transactional_id, topic = %self.outgoing.topic, "transactions initialised");
        let committer = self.idle_committer();
        let (interval, stopping) = (self.idle_commit_interval, self.stopping.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stopping.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                if let Err(fatal) = committer.commit().await {
                    // The next batch meets the same error and stops the graph.
                    tracing::error!(transactional_id = %committer.transactional_id, error = %fatal, "the producer failed; no more offset-only commits");
                    return;
                }
            }
        });
        Ok(())
    }

    /// Commits the offsets of whatever finished since the last transaction.
    async fn stop(&self) -> Result<(), KafkaIoError> {
        self.stopping.cancel();
        self.idle_committer().commit().await
    }

    async fn process_batch(
        &self,
        batch: Vec<ProducerRecord>,
        origins: &[&Origin],
    ) -> BatchResult<(), KafkaIoError> {
        let n = batch.len();
        let mut attempts = 0;
        let _one_at_a_time = self.txn.lock().await;
        loop {
            attempts += 1;
            // Before deciding which records are live: the commit checks
            // that the assignment they were decided under still holds.
            let began = self.source.generation();
            let live = self
                .live(origins)
                .map_err(|e| self.give_up(n, attempts, false, e))?;
            let skipped = live.iter().filter(|l| !**l).count();
            match self.attempt(&batch, origins, &live, began).await {
                Ok(offsets) => {
                    CommitLedger::committed(&self.source, &offsets);
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .records
                        .fetch_add((n - skipped) as u64, Ordering::Relaxed);
                    if skipped > 0 {
                        self.stats
                            .revoked
                            .fetch_add(skipped as u64, Ordering::Relaxed);
                        tracing::info!(
                            skipped,
                            "records of revoked partitions not produced; their new owner reads them again"
                        );
                    }
                    return Ok(live
                        .into_iter()
                        .map(|l| Ok(if l { Outputs::one(()) } else { Outputs::none() }))
                        .collect());
                }
                Err(failed) => {
                    if failed.fatal {
                        return Err(self.give_up(n, attempts, true, failed.error));
                    }
                    if let Err((abort_error, fatal)) = self.abort().await {
                        tracing::error!(error = %abort_error, "abort_transaction failed");
                        return Err(self.give_up(n, attempts, fatal, abort_error));
                    }
                    self.stats.aborts.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .aborted_records
                        .fetch_add(failed.produced, Ordering::Relaxed);
                    if let KafkaIoError::AssignmentChanged { began, now } = failed.error {
                        // Not a failure: each such abort needs another
                        // rebalance. Try again at once, under the new one.
                        self.stats.reassigned.fetch_add(1, Ordering::Relaxed);
                        attempts -= 1;
                        tracing::info!(transactional_id = %self.transactional_id, began, now, "the assignment changed during the transaction; trying the batch again under the new one");
                        continue;
                    }
                    if !self.retry.allows_another(attempts) {
                        return Err(self.give_up(n, attempts, false, failed.error));
                    }
                    tracing::warn!(transactional_id = %self.transactional_id, attempt = attempts, error = %failed.error, "transaction aborted; trying the batch again in a new one");
                    tokio::time::sleep(self.retry.backoff(attempts)).await;
                }
            }
        }
    }

    /// Every error of this sink stops the graph: its batch could not be
    /// committed, and committing later batches past it would skip it.
    fn is_fatal(&self, _error: &KafkaIoError) -> bool {
        true
    }
}
