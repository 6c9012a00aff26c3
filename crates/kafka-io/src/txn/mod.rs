//! Exactly-once Kafka to Kafka: a transactional sink that commits each batch's
//! outputs and the consumed offsets they cover in one Kafka transaction.

mod attempt;
mod idle;
mod stage;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use sluicegate_core::{CancellationToken, RetryPolicy};

use crate::config::KafkaConfig;
use crate::error::KafkaIoError;
use crate::producer::{Outgoing, TracingContext, default_retry, outgoing_settings};
use crate::source::ExactlyOnce;
#[cfg(doc)]
use crate::source::Generation;
pub use stats::TxnStats;

/// Produces each batch in one Kafka transaction together with the consumed
/// offsets it covers: exactly-once from a [`KafkaSource`](crate::KafkaSource)
/// in [transactional mode](crate::KafkaSource::transactional) to an output
/// topic, for readers with `isolation.level=read_committed`.
///
/// A [`BatchStage`](sluicegate_core::BatchStage): connect it with
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
    outgoing: Outgoing,
    transactional_id: String,
    source: ExactlyOnce,
    init_timeout: Duration,
    timeout: Duration,
    retry: RetryPolicy,
    gap_wait: Duration,
    hold_before_commit: Duration,
    idle_commit_interval: Duration,
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
            outgoing: Outgoing::new(topic.into()),
            transactional_id,
            source,
            init_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            retry: default_retry(),
            gap_wait: Duration::from_secs(1),
            hold_before_commit: Duration::ZERO,
            idle_commit_interval: Duration::from_secs(1),
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

    outgoing_settings!(
        attempts = "Transactions tried per batch before the sink gives up and stops the graph (default 3; an abort because the assignment changed does not count).",
        backoff = "The delay before the first retry of an aborted batch, doubling each time up to the policy's cap (default 100 ms, capped at 5 s, each wait up to half as long again with jitter; see [`RetryPolicy`](sluicegate_core::RetryPolicy))."
    );

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

    /// The sink's counters.
    pub fn stats(&self) -> Arc<TxnStats> {
        self.stats.clone()
    }

    /// The producer's `transactional.id`.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }
}
