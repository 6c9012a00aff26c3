//! The store as a batch stage: keys, retries, acknowledgements after commit.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use sluicegate_core::ledger::{Offsets, offsets_for};
use sluicegate_core::stage::BatchResult;
use sluicegate_core::{BatchStage, CommitLedger, Origin, Outputs, RetryPolicy};

use super::{DbError, Row, RowResult, Store, StoreError, Written};

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    commits: AtomicU64,
    inserted: AtomicU64,
    duplicates: AtomicU64,
    rows_failed: AtomicU64,
    batches_failed: AtomicU64,
    retries: AtomicU64,
}

/// Live counters of a [`StoreStage`]; clones share them.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    inner: Arc<Counters>,
}

impl StoreStats {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Batches received.
    pub fn batches(&self) -> u64 {
        self.inner.batches.load(Ordering::Relaxed)
    }

    /// Transactions committed.
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// Rows inserted.
    pub fn inserted(&self) -> u64 {
        self.inner.inserted.load(Ordering::Relaxed)
    }

    /// Rows whose key was already stored (replays), so nothing was written.
    pub fn duplicates(&self) -> u64 {
        self.inner.duplicates.load(Ordering::Relaxed)
    }

    /// Rows that failed (rejected, unencodable, without a key, or in a
    /// failed batch).
    pub fn rows_failed(&self) -> u64 {
        self.inner.rows_failed.load(Ordering::Relaxed)
    }

    /// Batches that failed as a whole (after retries, or a permanent error).
    pub fn batches_failed(&self) -> u64 {
        self.inner.batches_failed.load(Ordering::Relaxed)
    }

    /// Retries after transient errors.
    pub fn retries(&self) -> u64 {
        self.inner.retries.load(Ordering::Relaxed)
    }
}

/// Makes a row's idempotency key from the value and its origin.
type KeyFn<T> = Arc<dyn Fn(&T, &Origin) -> Option<String> + Send + Sync>;

/// The origin a row is keyed and labelled by, from the record's.
type OriginFn = Arc<dyn Fn(&Origin) -> Origin + Send + Sync>;

/// The idempotency key of a record from its origin:
/// `"{topic}/{partition}/{offset}"` (topic empty when unknown), or `None`
/// when the origin has no partition or no offset.
pub fn origin_key(origin: &Origin) -> Option<String> {
    let (partition, offset) = (origin.partition?, origin.offset?);
    Some(format!(
        "{}/{partition}/{offset}",
        origin.topic.as_deref().unwrap_or("")
    ))
}

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

    fn row(&self, value: &T, origin: &Origin) -> Result<Row, StoreError> {
        let mapped;
        let origin = match &self.origin_by {
            Some(f) => {
                mapped = f(origin);
                &mapped
            }
            None => origin,
        };
        let id = match &self.key_by {
            Some(f) => f(value, origin).map(|k| format!("key:{k}")),
            None => origin_key(origin).or_else(|| {
                self.key_fallback
                    .as_ref()
                    .and_then(|f| f(value, origin))
                    .map(|k| format!("key:{k}"))
            }),
        }
        .ok_or(StoreError::NoKey)?;
        let payload =
            serde_json::to_string(value).map_err(|e| StoreError::Encode(e.to_string()))?;
        Ok(Row {
            id,
            topic: origin.topic.as_deref().map(str::to_string),
            partition: origin.partition,
            offset: origin.offset,
            payload,
        })
    }

    /// Writes `rows`, retrying transient failures as the policy says.
    async fn write_with_retry(
        &self,
        rows: &[Row],
        offsets: Option<(&str, &Offsets)>,
    ) -> Result<Vec<RowResult>, StoreError> {
        let mut attempt = 1;
        loop {
            let written = match offsets {
                Some((group, offsets)) => self.store.write_with_offsets(rows, group, offsets).await,
                None => self.store.write(rows).await,
            };
            match written {
                Ok(results) => return Ok(results),
                Err(e) if e.is_transient() && self.non_blocking => return Err(e),
                Err(e) if e.is_transient() && self.retry.allows_another(attempt) => {
                    StoreStats::add(&self.stats.inner.retries, 1);
                    let backoff = self.retry.backoff(attempt);
                    tracing::warn!(
                        store = %self.store.describe(),
                        attempt,
                        rows = rows.len(),
                        error = %error_chain(&e),
                        ?backoff,
                        "transient store error; retrying the batch"
                    );
                    tokio::time::sleep(backoff).await;
                    attempt += 1;
                }
                Err(e) if e.is_transient() => {
                    return Err(StoreError::Exhausted {
                        attempts: attempt,
                        last: Box::new(e),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl<T> StoreStage<T> {
    /// Each row in a transaction of its own (after its batch failed
    /// transiently), each with its own result.
    async fn write_one_by_one(&self, rows: &[Row]) -> Vec<RowResult> {
        let mut results = Vec::with_capacity(rows.len());
        for row in rows {
            // The database away: the rows left fail the same way, without
            // a connection attempt each.
            if let Some(Err(e @ StoreError::Unreachable { .. })) = results.last() {
                let e = e.clone();
                results.push(Err(e));
                continue;
            }
            let result = match self.store.write(std::slice::from_ref(row)).await {
                Ok(mut one) if one.len() == 1 => {
                    StoreStats::add(&self.stats.inner.commits, 1);
                    one.remove(0)
                }
                Ok(other) => Err(StoreError::Permanent {
                    op: "write",
                    source: DbError::msg(format!(
                        "the store returned {} results for 1 row",
                        other.len()
                    )),
                }),
                Err(e) => Err(e),
            };
            results.push(result);
        }
        results
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

impl<T: Serialize + Send + 'static> StoreStage<T> {
    /// Each value's row, or (`Some` in the first list) why it has none.
    fn rows(&self, batch: &[T], origins: &[&Origin]) -> (Vec<Option<StoreError>>, Vec<Row>) {
        StoreStats::add(&self.stats.inner.batches, 1);
        let mut early: Vec<Option<StoreError>> = Vec::with_capacity(batch.len());
        let mut rows = Vec::with_capacity(batch.len());
        for (value, origin) in batch.iter().zip(origins) {
            match self.row(value, origin) {
                Ok(row) => {
                    rows.push(row);
                    early.push(None);
                }
                Err(e) => early.push(Some(e)),
            }
        }
        (early, rows)
    }

    /// Writes the rows (one transaction, retried as the policy says) and
    /// returns each value's result, counted in the stats.
    async fn write_rows(
        &self,
        early: Vec<Option<StoreError>>,
        rows: Vec<Row>,
        origins: &[&Origin],
    ) -> Vec<Result<(), StoreError>> {
        let stats = &self.stats.inner;
        let written = if rows.is_empty() {
            Ok(Vec::new())
        } else if let Some((ledger, gap_wait)) = &self.offsets {
            // The records whose rows go in: the others are not finishing.
            let writing: Vec<&Origin> = origins
                .iter()
                .zip(&early)
                .filter(|(_, e)| e.is_none())
                .map(|(o, _)| *o)
                .collect();
            let (offsets, short) = offsets_for(&**ledger, &writing, *gap_wait).await;
            if !short.is_empty() {
                tracing::debug!(store = %self.store.describe(), partitions = ?short, "offsets stop short of the batch: an earlier record is unfinished");
            }
            let group = ledger.group();
            let written = self.write_with_retry(&rows, Some((&group, &offsets))).await;
            if let Ok(results) = &written {
                ledger.committed(&super::cap_offsets(&offsets, &rows, results));
            }
            written
        } else {
            match self.write_with_retry(&rows, None).await {
                Err(e) if e.is_transient() && self.non_blocking && rows.len() > 1 => {
                    tracing::debug!(store = %self.store.describe(), rows = rows.len(), error = %error_chain(&e), "transient batch failure; writing its rows one at a time");
                    Ok(self.write_one_by_one(&rows).await)
                }
                written => written,
            }
        };
        let written = match written {
            Ok(w) if w.len() == rows.len() => {
                if !rows.is_empty() {
                    StoreStats::add(&stats.commits, 1);
                }
                w
            }
            other => {
                let e = match other {
                    Err(e) => e,
                    Ok(w) => StoreError::Permanent {
                        op: "write",
                        source: DbError::msg(format!(
                            "the store returned {} results for {} rows",
                            w.len(),
                            rows.len()
                        )),
                    },
                };
                StoreStats::add(&stats.batches_failed, 1);
                tracing::warn!(
                    store = %self.store.describe(),
                    rows = rows.len(),
                    error = %error_chain(&e),
                    "store batch failed"
                );
                vec![Err(e); rows.len()]
            }
        };
        let mut written = written.into_iter();
        early
            .into_iter()
            .map(|slot| {
                let r = match slot {
                    Some(e) => Err(e),
                    None => written.next().unwrap_or_else(|| {
                        Err(StoreError::Permanent {
                            op: "write",
                            source: DbError::msg("missing result"),
                        })
                    }),
                };
                match r {
                    Ok(Written::Inserted) => {
                        StoreStats::add(&stats.inserted, 1);
                        Ok(())
                    }
                    Ok(Written::Duplicate) => {
                        StoreStats::add(&stats.duplicates, 1);
                        Ok(())
                    }
                    Err(e) => {
                        StoreStats::add(&stats.rows_failed, 1);
                        Err(e)
                    }
                }
            })
            .collect()
    }

    /// This store as a stage that passes each value on once its row is
    /// committed: a stage after it sees only stored records, in the order
    /// they came (one batch at a time). See [`ForwardStored`].
    pub fn forwarding(self) -> ForwardStored<T> {
        ForwardStored(self)
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

/// A [`StoreStage`] that hands each value on after its batch committed
/// (from [`StoreStage::forwarding`]): the store as a step in a chain rather
/// than a branch of a fan-out.
///
/// Its outputs are the stored values, one per stored (or already stored)
/// row, in input order; a row that fails goes to the dead-letter route as
/// with [`StoreStage`] and is not passed on. Whatever comes after it (a
/// transactional Kafka sink committing consumed offsets, say) therefore
/// never sees a record whose row is not committed. (A `broadcast` to a
/// store branch and a sink branch keeps the same promise through the
/// source's ledger, by making the sink wait for the store; the chain makes
/// the order plain and the waits unnecessary.)
pub struct ForwardStored<T>(StoreStage<T>);

impl<T> std::fmt::Debug for ForwardStored<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ForwardStored").field(&self.0).finish()
    }
}

impl<T> ForwardStored<T> {
    /// The store's counters.
    pub fn stats(&self) -> StoreStats {
        self.0.stats.clone()
    }
}

impl<T: Serialize + Send + 'static> BatchStage for ForwardStored<T> {
    type In = T;
    type Out = T;
    type Error = StoreError;

    async fn process_batch(
        &self,
        batch: Vec<T>,
        origins: &[&Origin],
    ) -> BatchResult<T, StoreError> {
        let (early, rows) = self.0.rows(&batch, origins);
        let results = self.0.write_rows(early, rows, origins).await;
        Ok(batch
            .into_iter()
            .zip(results)
            .map(|(value, r)| r.map(|()| Outputs::one(value)))
            .collect())
    }

    fn is_fatal(&self, error: &StoreError) -> bool {
        self.0.is_fatal(error)
    }

    fn is_transient(&self, error: &StoreError) -> bool {
        self.0.is_transient(error)
    }
}
