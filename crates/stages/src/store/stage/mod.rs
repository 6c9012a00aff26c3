//! The store as a batch stage: keys, retries, acknowledgements after commit.

mod forward;
mod key;
mod stats;
mod write;

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sluicegate_core::stage::BatchResult;
use sluicegate_core::{BatchStage, CommitLedger, Origin, Outputs, RetryPolicy};

use super::{Store, StoreError};
pub use forward::ForwardStored;
pub use key::origin_key;
use key::{KeyFn, OriginFn};
pub use stats::StoreStats;

/// A [`Store`] as a [`BatchStage`]: give it to a
/// [`BatchSpec`](sluicegate_core::BatchSpec) with a
/// [`BatchConfig`](sluicegate_core::BatchConfig), and core gathers batches
/// by count, bytes and deadline (adaptive batching: a quiet stream flushes
/// at the deadline, a busy one fills batches).
///
/// For each batch it serializes every value to JSON, computes each row's
/// idempotency key, writes the batch with [`Store::write`] (one
/// transaction), and returns one result per input **after the commit**, so
/// core resolves the acknowledgements only then:
///
/// - a stored row (or one already there: a replay) is delivered;
/// - a row the database rejected, one that does not encode, or one without
///   a key fails alone (to the dead-letter route, with the reason);
/// - a transient failure retries the whole batch as [`RetryPolicy`] says;
///   when the retries run out, or on a permanent batch error (including a
///   failed commit), every row of the batch fails: dead-lettered if the
///   graph has a dead-letter route, else failed. With
///   [`stop_when_unavailable`](StoreStage::stop_when_unavailable) running
///   out of retries stops the graph instead, so a Kafka source commits
///   nothing past the batch.
///
/// # Idempotency keys
///
/// By default the origin's `"{topic}/{partition}/{offset}"` ([`origin_key`]);
/// [`key_fallback`](StoreStage::key_fallback) gives a key for records whose
/// origin lacks them, [`key_by`](StoreStage::key_by) replaces the origin key
/// altogether. User keys are stored as `"key:{key}"`, which a Kafka origin
/// key (topic names cannot hold `:`) never equals.
///
/// # Backpressure
///
/// One batch at a time: while a batch is written (and retried), the stage's
/// mailbox fills and the stages before it wait. Choose the batch size for
/// the database (hundreds of rows amortise a commit: 40x the rows per
/// second of one row per transaction into PostgreSQL in
/// `benches/store.rs`) and a deadline for latency (tens of milliseconds).
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use sluicegate_core::{BatchConfig, BatchSpec};
/// use sluicegate_stages::Record;
/// use sluicegate_stages::store::{open, StoreStage};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = open(None, "orders").await?; // SQLite at sluicegate.db
/// let stage = StoreStage::<Record>::new(store);
/// let stats = stage.stats();
/// let spec = BatchSpec::new("store", stage, BatchConfig::new(500, Duration::from_millis(50)));
/// // g.source(...).via(...).to_batch(spec);
/// # drop((spec, stats));
/// # Ok(())
/// # }
/// ```
pub struct StoreStage<T> {
    store: Arc<dyn Store>,
    key_by: Option<KeyFn<T>>,
    key_fallback: Option<KeyFn<T>>,
    origin_by: Option<OriginFn>,
    retry: RetryPolicy,
    stop_when_unavailable: bool,
    /// Transient failures go on (to be retried elsewhere) instead of being
    /// retried in place.
    non_blocking: bool,
    /// The source's ledger and how long to wait for a gap to close, when
    /// the batches commit the source's offsets.
    offsets: Option<(Arc<dyn CommitLedger>, Duration)>,
    stats: StoreStats,
    _types: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for StoreStage<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreStage")
            .field("store", &self.store.describe())
            .field("retry", &self.retry)
            .finish()
    }
}

impl<T: Serialize + Send + 'static> StoreStage<T> {
    /// A stage writing into `store`, keyed by origin, with the default
    /// [`RetryPolicy`].
    pub fn new(store: Arc<dyn Store>) -> Self {
        StoreStage {
            store,
            key_by: None,
            key_fallback: None,
            origin_by: None,
            retry: RetryPolicy::default(),
            stop_when_unavailable: false,
            non_blocking: false,
            offsets: None,
            stats: StoreStats::default(),
            _types: PhantomData,
        }
    }

    /// The key for records whose origin has no partition and offset;
    /// `None` from `key` fails the row ([`StoreError::NoKey`]).
    pub fn key_fallback(
        mut self,
        key: impl Fn(&T, &Origin) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.key_fallback = Some(Arc::new(key));
        self
    }

    /// The key for every record, instead of the origin's (a business key,
    /// so that the same order arriving twice from different offsets is
    /// stored once); `None` fails the row.
    pub fn key_by(
        mut self,
        key: impl Fn(&T, &Origin) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.key_by = Some(Arc::new(key));
        self
    }

    /// The origin each row is keyed and labelled by (its topic, partition
    /// and offset columns), computed from the record's: for records read
    /// back from a retry topic, the origin of their first reading
    /// (`sluicegate_kafka_io::retry::original_origin`), so that a retried
    /// record is stored under the same key as if it had gone in the first
    /// time, and a replay of either is refused by that key.
    pub fn origin_by(mut self, f: impl Fn(&Origin) -> Origin + Send + Sync + 'static) -> Self {
        self.origin_by = Some(Arc::new(f));
        self
    }

    /// How transient failures are retried.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// When true, a batch that still fails transiently after the last retry
    /// is a fatal error that stops the graph (its rows resolve as failed,
    /// never dead-lettered), instead of dead-lettering the batch.
    pub fn stop_when_unavailable(mut self, stop: bool) -> Self {
        self.stop_when_unavailable = stop;
        self
    }

    /// Non-blocking retries: a transient failure is not retried here
    /// (which would hold the batch, and the partitions behind it) but
    /// handed on, each failed record marked
    /// [`is_transient`](sluicegate_core::ItemError::is_transient) for a
    /// dead-letter route that retries later (kafka-io's retry topics).
    ///
    /// A batch that fails transiently is written again one row per
    /// transaction, so that only the rows that fail again are handed on:
    /// a lock held on one row, or a trigger refusing one record for a
    /// while, does not send its whole batch around. A connection lost
    /// fails every row the same way. The [`RetryPolicy`] is not used.
    /// Not with [`commit_offsets`](Self::commit_offsets), whose batches
    /// carry offsets that only the whole batch may commit.
    pub fn non_blocking_retries(mut self, on: bool) -> Self {
        self.non_blocking = on;
        self
    }

    /// Writes the source's consumer offsets in each batch's transaction,
    /// with its rows: exactly-once into the database. `ledger` is the
    /// source's commit frontier (a `KafkaSourceHandle`, whose source keeps
    /// its offsets in this same store: `KafkaSource::offsets_in`).
    ///
    /// Each batch's offsets cover, per partition, every record that is
    /// finished or in the batch (and finished everywhere else, when it was
    /// fanned out), up to the first that is not: a row the database
    /// refuses, a record still on its way to the dead-letter route or in
    /// another branch. A batch waits up to `gap_wait` for such a record
    /// before committing offsets short of it; the records past the gap are
    /// then written again after a crash (their rows already there), and
    /// the source's next commit moves the offsets on.
    ///
    /// The store must keep offsets ([`Store::write_with_offsets`]: SQLite
    /// and PostgreSQL do, in [`OFFSETS_TABLE`](super::OFFSETS_TABLE)).
    pub fn commit_offsets(mut self, ledger: Arc<dyn CommitLedger>, gap_wait: Duration) -> Self {
        self.offsets = Some((ledger, gap_wait));
        self
    }

    /// The stage's counters (a handle that stays valid after the stage moves
    /// into the graph).
    pub fn stats(&self) -> StoreStats {
        self.stats.clone()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

impl<T: Serialize + Send + 'static> BatchStage for StoreStage<T> {
    type In = T;
    type Out = ();
    type Error = StoreError;

    async fn process_batch(
        &self,
        batch: Vec<T>,
        origins: &[&Origin],
    ) -> BatchResult<(), StoreError> {
        let (early, rows) = self.rows(&batch, origins);
        drop(batch);
        Ok(self
            .write_rows(early, rows, origins)
            .await
            .into_iter()
            .map(|r| r.map(|()| Outputs::one(())))
            .collect())
    }

    fn is_fatal(&self, error: &StoreError) -> bool {
        self.stop_when_unavailable && matches!(error, StoreError::Exhausted { .. })
    }

    fn is_transient(&self, error: &StoreError) -> bool {
        self.non_blocking && error.is_transient()
    }
}
