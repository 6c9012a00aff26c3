//! Offset-only transactions: the offsets of records that finished without
//! a batch of the sink to commit them with.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sluicegate_core::CommitLedger;

use super::{KafkaTxnSink, TxnStats};
use crate::error::KafkaIoError;
use crate::producer::TracingContext;
use crate::source::ExactlyOnce;

impl KafkaTxnSink {
    /// What commits offsets in transactions of their own, sharing the
    /// producer (one transaction at a time).
    pub(super) fn idle_committer(&self) -> IdleCommitter {
        IdleCommitter {
            producer: self.producer.clone(),
            source: self.source.clone(),
            stats: self.stats.clone(),
            txn: self.txn.clone(),
            timeout: self.timeout,
            transactional_id: self.transactional_id.clone(),
        }
    }
}

/// Commits, in a transaction of their own, the offsets of records that
/// finished without a batch of the sink (see
/// [`KafkaTxnSink::idle_commit_interval`]).
pub(super) struct IdleCommitter {
    producer: FutureProducer<TracingContext>,
    source: ExactlyOnce,
    stats: Arc<TxnStats>,
    txn: Arc<tokio::sync::Mutex<()>>,
    timeout: Duration,
    pub(super) transactional_id: String,
}

impl IdleCommitter {
    /// One offsets-only transaction, if the finished prefix moved past the
    /// last commit. A failed one is aborted and left to the next try;
    /// `Err` only when the producer is unusable.
    pub(super) async fn commit(&self) -> Result<(), KafkaIoError> {
        let _one_at_a_time = self.txn.lock().await;
        let began = self.source.generation();
        let offsets = CommitLedger::offsets_with(&self.source, &[]);
        if offsets.is_empty() {
            return Ok(());
        }
        // Not assigned yet, or reassigned already: the next try.
        let Ok(group) = self.source.group_metadata_for(began) else {
            return Ok(());
        };
        let (producer, list, timeout) = (self.producer.clone(), offsets.clone(), self.timeout);
        let source = self.source.clone();
        let committed = tokio::task::spawn_blocking(move || {
            producer.begin_transaction()?;
            let sent = (|| {
                let mut tpl = TopicPartitionList::new();
                for (t, p, o) in &list {
                    tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
                }
                producer.send_offsets_to_transaction(&tpl, &group, timeout)?;
                if source.unchanged_since(began).is_err() {
                    // Reassigned meanwhile: aborted, the next try.
                    return Err(KafkaError::Canceled);
                }
                producer.commit_transaction(timeout)
            })();
            if sent.is_err() {
                let _ = producer.abort_transaction(timeout);
            }
            sent
        })
        .await
        .unwrap_or(Err(KafkaError::Canceled));
        match committed {
            Ok(()) => {
                CommitLedger::committed(&self.source, &offsets);
                self.stats
                    .offset_only_commits
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(transactional_id = %self.transactional_id, ?offsets, "offsets committed in a transaction of their own");
                Ok(())
            }
            Err(e) => {
                let fatal = matches!(&e, KafkaError::Transaction(t) if t.is_fatal())
                    || self.producer.client().fatal_error().is_some();
                let error = KafkaIoError::Transaction {
                    transactional_id: self.transactional_id.clone(),
                    step: "offset-only commit",
                    source: e,
                };
                if fatal {
                    return Err(error);
                }
                tracing::warn!(error = %error, "offset-only commit failed; the next one tries again");
                Ok(())
            }
        }
    }
}
