//! Exactly-once Kafka to Kafka: a transactional sink that commits each batch's
//! outputs and the consumed offsets they cover in one Kafka transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use sluicegate_core::stage::BatchResult;
use sluicegate_core::{BatchStage, CancellationToken, CommitLedger, Origin, Outputs, RetryPolicy};

use crate::config::KafkaConfig;
use crate::error::KafkaIoError;
use crate::sink::{ProducerRecord, TracingContext, future_record};
use crate::source::{ExactlyOnce, Generation, Ownership};

/// Counters of one [`KafkaTxnSink`].
#[derive(Debug, Default, serde::Serialize)]
pub struct TxnStats {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Transactions aborted (each batch is tried again in a new one, up to
    /// [`KafkaTxnSink::max_attempts`]).
    pub aborts: AtomicU64,
    /// Records committed.
    pub records: AtomicU64,
    /// Records the broker had acknowledged in transactions that were then
    /// aborted: `read_committed` readers never see them.
    pub aborted_records: AtomicU64,
    /// Transactions aborted because the source's assignment changed between
    /// their start and their commit (see [`ExactlyOnce`]); included in
    /// `aborts`, not counted against [`KafkaTxnSink::max_attempts`].
    pub reassigned: AtomicU64,
    /// Records not produced because their partition was revoked before
    /// their transaction began (the partition's new owner reads them again
    /// from the last committed transaction).
    pub revoked: AtomicU64,
    /// Transactions whose offsets stopped short of their own records,
    /// because an earlier record of the partition was still unfinished
    /// after [`KafkaTxnSink::gap_wait`] (see "Ordering" on [`KafkaTxnSink`]).
    pub gaps: AtomicU64,
    /// Times the producer queue was full (backpressure, not an error).
    pub queue_full: AtomicU64,
    /// Transactions that carried offsets only: records that finished
    /// without a batch of this sink to commit them with (dead-lettered,
    /// filtered, held up in another branch) while no batch came, and at
    /// stop.
    pub offset_only_commits: AtomicU64,
}

/// How one transaction attempt failed.
struct Attempt {
    error: KafkaIoError,
    /// Records the broker acknowledged in the attempt.
    produced: u64,
    /// The producer is unusable: no abort, no further attempt.
    fatal: bool,
}

/// Produces each batch in one Kafka transaction together with the consumed
/// offsets it covers: exactly-once from a [`KafkaSource`](crate::KafkaSource)
/// in [transactional mode](crate::KafkaSource::transactional) to an output
/// topic, for readers with `isolation.level=read_committed`.
///
/// A [`BatchStage`]: connect it with
/// [`Stream::to_batch`](sluicegate_core::Stream::to_batch) and a
/// [`BatchSpec`](sluicegate_core::BatchSpec); one batch is one transaction.
///
/// # Per batch
///
/// 1. `begin_transaction`;
/// 2. produce every record and await every delivery;
/// 3. `send_offsets_to_transaction` with the source's group metadata and,
///    per partition, the offset after the contiguous run of records that
///    are finished or in this batch (through the source's [`ExactlyOnce`]);
/// 4. `commit_transaction`, unless the source's assignment changed since
///    the transaction began (its [`Generation`] moved): then the
///    transaction is aborted and the batch tried again under the new
///    assignment.
///
/// The batch's acknowledgements resolve as delivered only after the commit
/// returned: that is when their records are finished. On any error the
/// transaction is aborted (the broker discards its outputs for
/// `read_committed` readers, and its offsets) and the same batch is tried
/// again in a new transaction, after a backoff, up to
/// [`KafkaTxnSink::max_attempts`]. If the last attempt fails too, or the
/// producer fails fatally (fenced by a newer instance with the same
/// `transactional.id`, say), the error is fatal: the batch's records fail
/// (they never go to the dead-letter route, which is outside the
/// transaction) and the graph stops, with
/// [`KafkaIoError::TransactionFailed`]. Nothing was committed past them, so
/// a restart reads them again from the last committed transaction.
///
/// `init_transactions` runs in the stage's start hook, bounded by
/// [`KafkaTxnSink::init_timeout`]; it also aborts a
/// transaction a previous instance with the same `transactional.id` left
/// open (after a crash).
///
/// # Ordering
///
/// The offsets a transaction commits may only cover records whose outputs
/// it commits, or that finished otherwise (filtered, dead-lettered). So the
/// records of each input partition must reach the sink in offset order:
/// keep the stages between the source and the sink sequential
/// (concurrency 1), or give them [`Order::Preserve`](sluicegate_core::Order)
/// or [`Order::PerKey`](sluicegate_core::Order) keyed by partition. If an
/// earlier record of a partition is still unfinished when a batch is ready
/// to commit (it is on its way to the dead-letter route, or was reordered),
/// the sink waits up to [`KafkaTxnSink::gap_wait`] for it; after that it
/// commits the offsets up to it only, counts a
/// [gap](TxnStats::gaps) and logs a warning: the outputs past the gap are
/// then committed before their offsets, and a crash before the next
/// transaction would produce them again (at-least-once for those records).
///
/// An input that became several records (`flat_map`), or that also went
/// down another branch (`broadcast`), counts as finishing in a transaction
/// only once every other part of it finished (the source reports split
/// records' parts in transactional mode): the offsets stop short of it
/// until then, after [`KafkaTxnSink::gap_wait`] as above.
///
/// # What is exactly-once
///
/// The output topic, for `read_committed` readers, and the consumed
/// offsets. Side effects of the stages (a store write, an HTTP call) and
/// dead letters (written outside the transaction) are at-least-once.
/// After a crash (or a forced shutdown that abandons a batch), the next
/// `init_transactions` with the same `transactional.id` aborts the open
/// transaction, or the broker does after `transaction.timeout.ms`; until
/// then `read_committed` readers of its partitions wait at it. The group
/// resumes from the offsets of the last committed transaction. Use one sink per source,
/// with a `transactional.id` unique to that source and stable across
/// restarts (e.g. the application name and the worker's index).
///
/// # Rebalances
///
/// Records of a partition revoked before their transaction began are not
/// produced (their acknowledgements resolve as dropped; the new owner reads
/// them again). On revoke the source waits up to its
/// [`revoke_timeout`](crate::KafkaSource::revoke_timeout) for the
/// partition's records in flight, which resolve once their transaction
/// commits: keep it above the batch deadline plus a transaction's time. If
/// it passes, the source stops with [`KafkaIoError::RevokeTimedOut`]
/// rather than let those records commit after the partition moved on. A
/// partition revoked during a transaction aborts it, and the batch is tried
/// again without that partition's records; so is a transaction during
/// which partitions were assigned (any change of the assignment's
/// [`Generation`], see [`ExactlyOnce`]). Such an abort does not count as a
/// failed attempt.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use sluicegate_core::{map, BatchConfig, BatchSpec, Graph, StageSpec};
/// use sluicegate_kafka_io::{KafkaConfig, KafkaSource, KafkaTxnSink, ProducerRecord};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let kafka = KafkaConfig::new("127.0.0.1:9092");
/// let source = KafkaSource::new(kafka.clone(), "orders-eos", ["orders"]).transactional(true);
/// let sink = KafkaTxnSink::new(&kafka, "orders-upper", "orders-eos-0", source.exactly_once())?;
/// let mut g = Graph::builder("orders-eos");
/// g.source("in", source)
///     .via(StageSpec::new("upper", map(|b: bytes::Bytes| {
///         ProducerRecord::new(b.to_ascii_uppercase())
///     })))
///     .to_batch(BatchSpec::new("out", sink, BatchConfig::new(500, Duration::from_millis(100))));
/// let report = g.build()?.start().await?.wait().await;
/// # Ok(()) }
/// ```
pub struct KafkaTxnSink {
    producer: FutureProducer<TracingContext>,
    topic: String,
    transactional_id: String,
    source: ExactlyOnce,
    init_timeout: Duration,
    timeout: Duration,
    retry: RetryPolicy,
    gap_wait: Duration,
    hold_before_commit: Duration,
    idle_commit_interval: Duration,
    preserve_key: bool,
    preserve_headers: bool,
    stats: Arc<TxnStats>,
    /// One transaction at a time: the batches' and the idle commits'.
    txn: Arc<tokio::sync::Mutex<()>>,
    /// Stops the idle committer at stop.
    stopping: CancellationToken,
}

impl KafkaTxnSink {
    /// A sink producing to `topic` in transactions of the producer
    /// `transactional_id`, committing the offsets of the source `source`
    /// couples it to (from [`KafkaSource::exactly_once`](crate::KafkaSource::exactly_once),
    /// the source in transactional mode).
    ///
    /// `config` is the producer's (any librdkafka property passes through;
    /// `transactional.id` is set here; `linger.ms` defaults to 5).
    /// `transaction.timeout.ms` (librdkafka's default 60 s) bounds how long
    /// the broker keeps a transaction of a vanished producer open.
    ///
    /// # Errors
    ///
    /// [`KafkaIoError::Config`] naming a setting librdkafka rejects.
    pub fn new(
        config: &KafkaConfig,
        topic: impl Into<String>,
        transactional_id: impl Into<String>,
        source: ExactlyOnce,
    ) -> Result<Self, KafkaIoError> {
        let transactional_id = transactional_id.into();
        let producer = config
            .clone()
            .set("transactional.id", transactional_id.clone())
            .set_default("linger.ms", "5")
            .client_config()
            .create_with_context(TracingContext)
            .map_err(|e| config.explain(e))?;
        Ok(KafkaTxnSink {
            producer,
            topic: topic.into(),
            transactional_id,
            source,
            init_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::new(3, Duration::from_millis(100), Duration::from_secs(5)),
            gap_wait: Duration::from_secs(1),
            hold_before_commit: Duration::ZERO,
            idle_commit_interval: Duration::from_secs(1),
            preserve_key: true,
            preserve_headers: true,
            stats: Arc::new(TxnStats::default()),
            txn: Arc::new(tokio::sync::Mutex::new(())),
            stopping: CancellationToken::new(),
        })
    }

    /// How long `init_transactions` may take at start (default 30 s).
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.init_timeout = timeout;
        self
    }

    /// How long each of `send_offsets_to_transaction`, `commit_transaction`
    /// and `abort_transaction` may take (default 30 s).
    pub fn transaction_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Transactions tried per batch before the sink gives up and stops the
    /// graph (default 3).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.retry = self.retry.max_attempts(attempts);
        self
    }

    /// The delay before the first retry of an aborted batch, doubling each
    /// time up to the policy's cap (default 100 ms, capped at 5 s, each wait
    /// up to half as long again with jitter; see [`RetryPolicy`]).
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.retry = self.retry.initial_backoff(backoff);
        self
    }

    /// The whole retry policy: attempts, first and longest wait, jitter
    /// (default 3 attempts, 100 ms doubling up to 5 s, with jitter).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How long a ready batch waits for an earlier record of one of its
    /// partitions to finish elsewhere before committing offsets short of it
    /// (default 1 s; see "Ordering" above).
    pub fn gap_wait(mut self, wait: Duration) -> Self {
        self.gap_wait = wait;
        self
    }

    /// Fault injection for tests: keep each transaction open this long after
    /// its records are acknowledged and its offsets sent, before committing
    /// it (default zero). A process killed meanwhile leaves an open
    /// transaction, with its records on the broker, for the next
    /// `init_transactions` with the same id to abort: what a test of
    /// exactly-once needs to happen often.
    pub fn hold_before_commit(mut self, hold: Duration) -> Self {
        self.hold_before_commit = hold;
        self
    }

    /// How often, while no batch comes, the sink commits the offsets of
    /// records that finished without one (default 1 s): dead-lettered or
    /// filtered records at the end of the input, or a record another
    /// branch of a fan-out held back. Those offsets then go in a
    /// transaction of their own. The same happens once at stop.
    pub fn idle_commit_interval(mut self, interval: Duration) -> Self {
        self.idle_commit_interval = interval;
        self
    }

    /// Whether a record without a key takes its origin's key (default true).
    pub fn preserve_key(mut self, preserve: bool) -> Self {
        self.preserve_key = preserve;
        self
    }

    /// Whether the origin's headers are copied before the record's own (default true).
    pub fn preserve_headers(mut self, preserve: bool) -> Self {
        self.preserve_headers = preserve;
        self
    }

    /// The sink's counters.
    pub fn stats(&self) -> Arc<TxnStats> {
        self.stats.clone()
    }

    /// The producer's `transactional.id`.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    fn step_error(&self, step: &'static str, source: KafkaError) -> KafkaIoError {
        KafkaIoError::Transaction {
            transactional_id: self.transactional_id.clone(),
            step,
            source,
        }
    }

    /// Whether `error` leaves the producer unusable.
    fn is_fatal(&self, error: &KafkaError) -> bool {
        let txn_fatal = matches!(error, KafkaError::Transaction(e) if e.is_fatal());
        txn_fatal || self.producer.client().fatal_error().is_some()
    }

    /// Runs a blocking producer call on the blocking pool.
    async fn blocking<T: Send + 'static>(
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
    async fn attempt(
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
            let topic = record.topic.as_deref().unwrap_or(&self.topic);
            loop {
                let fr = future_record(
                    topic,
                    record,
                    origin,
                    self.preserve_key,
                    self.preserve_headers,
                );
                match self.producer.send_result(fr) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => {
                        send_error = Some(e);
                        break;
                    }
                }
            }
            if send_error.is_some() {
                break;
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
        // 4. Commit (a retriable failure may simply be retried).
        let timeout = self.timeout;
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .blocking("commit_transaction", move |p| p.commit_transaction(timeout))
                .await
            {
                Ok(()) => return Ok(offsets),
                Err((KafkaIoError::Transaction { source, .. }, false))
                    if tries < 3
                        && matches!(&source, KafkaError::Transaction(e) if e.is_retriable() && !e.txn_requires_abort()) =>
                {
                    tracing::debug!(error = %source, "commit_transaction failed; retrying it");
                }
                Err((error, fatal)) => return Err(fail(error, produced, fatal)),
            }
        }
    }

    /// Aborts the current transaction.
    async fn abort(&self) -> Result<(), (KafkaIoError, bool)> {
        let timeout = self.timeout;
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .blocking("abort_transaction", move |p| p.abort_transaction(timeout))
                .await
            {
                Ok(()) => return Ok(()),
                Err((KafkaIoError::Transaction { source, .. }, false))
                    if tries < 3
                        && matches!(&source, KafkaError::Transaction(e) if e.is_retriable()) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Which records to produce: those of owned partitions (and those
    /// without a Kafka origin). Records of revoked partitions are skipped.
    fn live(&self, origins: &[&Origin]) -> Result<Vec<bool>, KafkaIoError> {
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

    /// What commits offsets in transactions of their own, sharing the
    /// producer (one transaction at a time).
    fn idle_committer(&self) -> IdleCommitter {
        IdleCommitter {
            producer: self.producer.clone(),
            source: self.source.clone(),
            stats: self.stats.clone(),
            txn: self.txn.clone(),
            timeout: self.timeout,
            transactional_id: self.transactional_id.clone(),
        }
    }

    fn give_up(
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
        tracing::info!(transactional_id = %self.transactional_id, topic = %self.topic, "transactions initialised");
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

/// Commits, in a transaction of their own, the offsets of records that
/// finished without a batch of the sink (see
/// [`KafkaTxnSink::idle_commit_interval`]).
struct IdleCommitter {
    producer: FutureProducer<TracingContext>,
    source: ExactlyOnce,
    stats: Arc<TxnStats>,
    txn: Arc<tokio::sync::Mutex<()>>,
    timeout: Duration,
    transactional_id: String,
}

impl IdleCommitter {
    /// One offsets-only transaction, if the finished prefix moved past the
    /// last commit. A failed one is aborted and left to the next try;
    /// `Err` only when the producer is unusable.
    async fn commit(&self) -> Result<(), KafkaIoError> {
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
