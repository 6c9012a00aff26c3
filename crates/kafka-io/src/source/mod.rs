//! The Kafka source: a consumer group member that hands records to a graph
//! and commits offsets only for finished work.
//!
//! # How it works
//!
//! The consumer (librdkafka's `BaseConsumer`) runs on a thread of its own,
//! polling in a loop. Each record becomes an envelope whose origin is
//! (topic, partition, offset, key, timestamp, headers, original bytes) and
//! whose acknowledgement reports back to an [`OffsetTracker`](crate::OffsetTracker). Offsets are
//! committed from the tracker's contiguous finished prefix, on an interval
//! and every N finished records, on revoke and on shutdown; each commit is
//! synchronous on the consumer thread (one round trip, off the async
//! runtime), so the committed offsets the source reports are exact. A dedicated thread, not an async task, because the
//! revoke handler must wait (bounded) for in-flight records before the
//! partitions are released, and that wait must not stall an async worker.
//!
//! # Backpressure
//!
//! When the graph's first mailbox is full, the source stops handing out
//! records and waits for room. If the stall lasts longer than
//! [`KafkaSource::pause_after`], it pauses every assigned partition and
//! keeps polling (so `max.poll.interval.ms` is never exceeded and the group
//! does not rebalance), and resumes when there is room. What librdkafka
//! prefetches is bounded by `queued.max.messages.kbytes` (16 MiB by default
//! here, instead of librdkafka's 64 MiB), so memory stays bounded throughout.
//!
//! One record that does not finish holds its partition's commits back
//! while the records after it finish. So that this uncommitted window does
//! not grow for as long as the record is stuck, a partition whose window
//! reaches [`KafkaSource::window_limit`] records is paused on its own (the
//! other partitions keep flowing) and resumed once the window is below three
//! quarters of the limit. Resuming after a full graph leaves such a
//! partition paused, and the reverse; [`KafkaSourceHandle::partitions`]
//! says which partitions are paused, and why.
//!
//! # Rebalances
//!
//! On revoke the source stops handing out the revoked partitions, waits up to
//! [`KafkaSource::revoke_timeout`] for their in-flight records, commits their
//! finished prefix, and forgets them. Other partitions keep flowing.
//!
//! # Transactional mode
//!
//! With [`KafkaSource::transactional`], for exactly-once Kafka to Kafka, the
//! source commits nothing itself: a [`KafkaTxnSink`](crate::KafkaTxnSink)
//! commits the offsets in its transactions, through the [`ExactlyOnce`]
//! coupling: offsets computed from the same tracker, the group metadata the
//! consumer thread captures, and an assignment generation that moves at
//! every assignment and revocation, so a transaction begun under another
//! assignment is aborted rather than committed. Revocations still wait for the
//! revoked partitions' records in flight, so their transactions commit
//! before the partitions are released.
//!
//! # Failures
//!
//! A record whose outcome is [`Outcome::Failed`](sluicegate_core::Outcome::Failed)
//! is not finished: the commit never passes it, so it is read again after a
//! restart instead of being skipped. It no longer counts as in flight
//! (neither a drain nor a revoke waits for it). What the source does next
//! depends on the failure's [kind](sluicegate_core::FailureKind); it never
//! goes on with the partition's commits stuck behind the record in silence:
//!
//! | the record                                           | the source stops with          |
//! |------------------------------------------------------|--------------------------------|
//! | failed with no dead-letter route (error, panic, fatal) | [`KafkaIoError::RecordFailed`] |
//! | its acknowledgement leaked (dropped unresolved: a bug) | [`KafkaIoError::RecordLeaked`] |
//! | abandoned while the graph runs (a stage that should have taken it stopped) | [`KafkaIoError::RecordAbandoned`] |
//! | abandoned once the graph's shutdown began (the drain deadline passed, or the error that started the shutdown stopped a stage) | nothing of its own: the graph's report says it did not drain |
//!
//! The error names the record (topic, partition, offset; the first to fail,
//! the lowest offset of its partition) and the source commits everything
//! finished before it on the way out. Stopping, rather than seeking back
//! and delivering the record again, is deliberate: a record is abandoned
//! mid-run only when part of the graph is gone, and a leak is a bug; in
//! both cases delivering it again into the same graph would not finish it.

mod acker;
mod callbacks;
mod commit;
mod consume;
mod exactly_once;
mod group;
mod handle;
mod metadata;
mod pause;
mod record;
mod shared;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use sluicegate_core::{BoxError, Source, SourceContext};

use crate::config::KafkaConfig;
#[cfg(doc)]
use crate::error::KafkaIoError;

pub use exactly_once::{ExactlyOnce, Generation, Ownership};
pub use group::consumer_group;
pub use handle::{KafkaSourceHandle, PartitionLag, PauseReason};
use shared::Shared;
pub use shared::SourceStats;

/// A Kafka consumer-group member as a sluicegate [`Source`]. Emits each
/// record's payload as [`Bytes`] (empty for a tombstone); everything else
/// about the record is in its [`Origin`](sluicegate_core::Origin).
///
/// # Example
///
/// ```no_run
/// use sluicegate_core::{map, Graph, StageSpec};
/// use sluicegate_core::testing::CollectSink;
/// use sluicegate_kafka_io::{KafkaConfig, KafkaSource};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let source = KafkaSource::new(KafkaConfig::new("127.0.0.1:9092"), "orders-group", ["orders"]);
/// let lag = source.handle(); // partitions, lag, commit counters while it runs
/// let mut g = Graph::builder("orders");
/// g.source("kafka", source)
///     .via(StageSpec::new("len", map(|b: bytes::Bytes| b.len())))
///     .to(StageSpec::new("sink", CollectSink::new()));
/// let report = g.build()?.start().await?.wait().await;
/// # Ok(()) }
/// ```
pub struct KafkaSource {
    config: KafkaConfig,
    topics: Vec<String>,
    commit_interval: Duration,
    commit_every: usize,
    revoke_timeout: Duration,
    poll_interval: Duration,
    pause_after: Duration,
    connect_timeout: Duration,
    lag_interval: Duration,
    keep_raw: bool,
    shared: Arc<Shared>,
}

impl KafkaSource {
    /// The default [`KafkaSource::window_limit`].
    pub const DEFAULT_WINDOW_LIMIT: usize = 10_000;

    /// A member of consumer group `group_id` reading `topics`.
    ///
    /// Defaults applied unless `config` sets them: `enable.auto.commit=false`
    /// and `enable.auto.offset.store=false` (the source commits),
    /// `auto.offset.reset=earliest`, `queued.max.messages.kbytes=16384`.
    pub fn new<I, S>(config: KafkaConfig, group_id: impl Into<String>, topics: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let group_id = group_id.into();
        let config = config
            .set("group.id", group_id.clone())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set_default("auto.offset.reset", "earliest")
            .set_default("queued.max.messages.kbytes", "16384")
            .set_default("enable.partition.eof", "false");
        KafkaSource {
            config,
            topics: topics.into_iter().map(Into::into).collect(),
            commit_interval: Duration::from_secs(1),
            commit_every: 1_000,
            revoke_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(100),
            pause_after: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(10),
            lag_interval: Duration::from_secs(5),
            keep_raw: true,
            shared: Arc::new(Shared {
                window_limit: Self::DEFAULT_WINDOW_LIMIT.into(),
                group: group_id.into(),
                ..Shared::default()
            }),
        }
    }

    /// Commit at least this often while records finish (default 1 s).
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// Also commit after this many records finish (default 1000).
    pub fn commit_every(mut self, records: usize) -> Self {
        self.commit_every = records.max(1);
        self
    }

    /// How long a revoke waits for in-flight records (default 10 s; keep it
    /// well below `session.timeout.ms`).
    pub fn revoke_timeout(mut self, timeout: Duration) -> Self {
        self.revoke_timeout = timeout;
        self
    }

    /// How long the graph must stay full before the partitions are paused
    /// (default 500 ms; keep it well below `max.poll.interval.ms`). Shorter
    /// stalls are ordinary backpressure: the source waits for room without
    /// polling, and what librdkafka prefetched stays in its bounded buffer.
    /// Pausing discards that buffer (it is fetched again on resume), so it is
    /// kept for stalls long enough to threaten the group membership.
    pub fn pause_after(mut self, after: Duration) -> Self {
        self.pause_after = after;
        self
    }

    /// How long to wait for the cluster at start (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often the high watermarks behind [`KafkaSourceHandle::partitions`]'
    /// lag are refreshed (default 5 s). Each refresh is one ListOffsets
    /// request per partition leader, made on the consumer thread (at most
    /// 500 ms without polling, when a broker does not answer).
    pub fn lag_interval(mut self, interval: Duration) -> Self {
        self.lag_interval = interval;
        self
    }

    /// The most records a partition hands out from its oldest unfinished
    /// record on (default 10,000): its window, finished or not. When a
    /// partition's window reaches the limit (one record held up, many
    /// finished behind it), that partition alone is paused, and resumed once
    /// the window is below three quarters of the limit (the record finished,
    /// or failed and the source stopped). Other partitions keep flowing.
    /// Each pause is logged once at warn, each resume at info, and counted
    /// ([`SourceStats::window_pauses`], and per partition in
    /// [`KafkaSourceHandle::partitions`]).
    ///
    /// # Choosing the limit
    ///
    /// The window bounds the source's memory per partition (one small entry
    /// per record) and what a restart reads again on that partition when
    /// the record holding it back never finishes. It must be well above the
    /// records a partition normally has in flight at once (the graph's
    /// mailbox capacities and concurrency), or the partition pauses during
    /// ordinary work: the default suits graphs holding up to a few thousand
    /// records. At least 1.
    pub fn window_limit(self, records: usize) -> Self {
        self.shared
            .window_limit
            .store(records.max(1), Ordering::Relaxed);
        self
    }

    /// Transactional mode, for exactly-once Kafka to Kafka with a
    /// [`KafkaTxnSink`](crate::KafkaTxnSink) (default off).
    ///
    /// The source then never commits offsets itself (no interval, count,
    /// revoke or shutdown commits): the sink commits them inside each
    /// transaction, along with the outputs of the records they cover. The
    /// source still tracks which records are finished, captures the group
    /// metadata the sink sends with the offsets
    /// ([`ExactlyOnce::group_metadata_for`]), pauses on a full graph, and
    /// on revoke still waits (up to [`KafkaSource::revoke_timeout`]) for the
    /// revoked partitions' records in flight, so their transactions commit
    /// before another member takes the partitions over. Keep the revoke
    /// timeout above the sink's batch deadline plus one transaction's time:
    /// if it passes with records still in flight, the source stops with
    /// [`KafkaIoError::RevokeTimedOut`] (a restart reads them again from the
    /// last committed transaction).
    ///
    /// Inputs written by transactional producers should be read with
    /// `isolation.level=read_committed`, librdkafka's default (keep it).
    pub fn transactional(self, on: bool) -> Self {
        self.shared.transactional.store(on, Ordering::SeqCst);
        self
    }

    /// Keeps the group's offsets in `store` (a database) instead of Kafka:
    /// exactly-once into that database, when the stage storing the records
    /// writes each batch's offsets in the same transaction as its rows
    /// (`StoreStage::commit_offsets` in `sluicegate-stages`, with this
    /// source's [`handle`](KafkaSource::handle) as the ledger).
    ///
    /// - **On every assignment** the source reads the stored offsets of
    ///   the assigned partitions and starts each from its stored offset. A
    ///   partition with none starts where Kafka says (the group's committed
    ///   offset there, when a group switches to this mode, else
    ///   `auto.offset.reset`). When both exist the database wins: it is
    ///   written in the same transactions as the rows, so it says exactly
    ///   what was stored; the offset in Kafka can lag behind it (and the
    ///   difference is logged). If the store cannot be read, the source
    ///   stops with [`KafkaIoError::OffsetsUnavailable`].
    /// - **Commits** (on the interval, on revoke, at shutdown) write the
    ///   finished prefix to the store, never moving an offset back, then
    ///   the same offsets to Kafka, for the tools that watch a group's lag
    ///   there (that second commit is best-effort).
    ///
    /// Records fanned out to several branches count as finished for the
    /// store's commit only once every other branch finished them.
    /// Incompatible with [`KafkaSource::transactional`] (one place commits
    /// the offsets).
    pub fn offsets_in(self, store: std::sync::Arc<dyn crate::OffsetStore>) -> Self {
        // Set once: a source is built once.
        let _ = self.shared.offset_store.0.set(store);
        self
    }

    /// Holds each record whose header `name` holds a time in the future
    /// (milliseconds since the Unix epoch, as
    /// [`headers::RETRY_DUE`](crate::headers::RETRY_DUE) does on retry
    /// topics) until that time: its partition is paused meanwhile (the
    /// consumer keeps polling, so the group membership is never at risk),
    /// the record is handed to the graph when due and the partition
    /// fetched again. Its partition's commits stop before it while it
    /// waits; a revoke or a shutdown drops it (it is read again). Records
    /// behind it on its partition wait with it: a retry topic's records
    /// share one delay, so they come due in the order they were written.
    /// Counted in [`SourceStats::delayed`].
    pub fn due_header(self, name: impl Into<String>) -> Self {
        let _ = self.shared.due_header.set(name.into());
        self
    }

    /// Whether origins keep the record's original bytes for dead letters
    /// (default true; shares the payload's buffer, no copy).
    pub fn keep_raw(mut self, keep: bool) -> Self {
        self.keep_raw = keep;
        self
    }

    /// A live view of this source (partitions, lag, counters).
    pub fn handle(&self) -> KafkaSourceHandle {
        KafkaSourceHandle {
            shared: self.shared.clone(),
        }
    }

    /// The coupling through which a [`KafkaTxnSink`](crate::KafkaTxnSink)
    /// commits this source's offsets in its transactions (see
    /// [`ExactlyOnce`]; the source must be in
    /// [transactional mode](KafkaSource::transactional)).
    pub fn exactly_once(&self) -> ExactlyOnce {
        self.handle().exactly_once()
    }

    /// The client configuration (secrets redacted in `Debug`).
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }
}

impl Source for KafkaSource {
    type Out = Bytes;

    async fn run(self, cx: SourceContext<Bytes>) -> Result<(), BoxError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let name = format!("kafka-{}", cx.name());
        let rt = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let result = self.consume(cx, rt);
                let _ = tx.send(result);
            })
            .map_err(|e| Box::new(e) as BoxError)?;
        match rx.await {
            Ok(result) => result.map_err(|e| Box::new(e) as BoxError),
            Err(_) => Err("the Kafka consumer thread panicked".into()),
        }
    }
}
