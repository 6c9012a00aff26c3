//! The Kafka source: a consumer group member that hands records to a graph
//! and commits offsets only for finished work.
//!
//! # How it works
//!
//! The consumer (librdkafka's `BaseConsumer`) runs on a thread of its own,
//! polling in a loop. Each record becomes an envelope whose origin is
//! (topic, partition, offset, key, timestamp, headers, original bytes) and
//! whose acknowledgement reports back to an [`OffsetTracker`]. Offsets are
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
//! commits the offsets in its transactions, computed from the same tracker
//! ([`KafkaSourceHandle::transaction_offsets`]), with the group metadata the
//! consumer thread captures after each assignment
//! ([`KafkaSourceHandle::group_metadata`]). Revocations still wait for the
//! revoked partitions' records in flight, so their transactions commit
//! before the partitions are released.
//!
//! # Failures
//!
//! A record whose outcome is [`Outcome::Failed`](sluicegate_core::Outcome::Failed)
//! (failed with no dead-letter route, or abandoned at a forced shutdown) is
//! not finished: the commit never passes it. A failure that is not an
//! abandon stops the source with [`KafkaIoError::RecordFailed`], so the
//! record is read again after a restart instead of being skipped.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance,
};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sluicegate_core::mailbox::TrySendError;
use sluicegate_core::{
    Ack, AckReceiver, BoxError, DropReason, Envelope, FailureKind, Origin, Outcome, Source,
    SourceContext,
};

use crate::config::KafkaConfig;
use crate::error::KafkaIoError;
use crate::sink::TracingContext;
use crate::tracker::{Finish, OffsetTracker, PartitionState};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counters of one Kafka source.
#[derive(Debug, Default, serde::Serialize)]
pub struct SourceStats {
    /// Records handed to the graph.
    pub records: AtomicU64,
    /// Offset commits that succeeded.
    pub commits: AtomicU64,
    /// Offset commits that failed (retried at the next one).
    pub commit_failures: AtomicU64,
    /// Times the partitions were paused because the graph was full.
    pub pauses: AtomicU64,
    /// Partition assignments received (the first one included).
    pub assignments: AtomicU64,
    /// Revocations handled.
    pub revocations: AtomicU64,
    /// Revocations that gave up waiting for in-flight records.
    pub revoke_timeouts: AtomicU64,
    /// Acknowledgements for partitions no longer owned (ignored).
    pub late_acks: AtomicU64,
    /// Records handed out but not committed when the source stopped: at most
    /// this many are read again after a restart.
    pub uncommitted_at_stop: AtomicU64,
    /// Records fetched again at or below an offset already handed out (after
    /// a fetch position reset): skipped, since each is in flight or finished.
    pub skipped_refetched: AtomicU64,
}

/// State shared by the consumer thread, its callbacks and the
/// acknowledgements arriving from the graph.
#[derive(Debug, Default)]
struct Shared {
    tracker: Mutex<OffsetTracker>,
    /// Signalled whenever a record finishes or fails.
    changed: Condvar,
    /// Envelopes read but not yet taken by the graph (it was full).
    held: Mutex<VecDeque<Envelope<Bytes>>>,
    finished_since_commit: AtomicUsize,
    paused: AtomicBool,
    /// Set once the source is stopping: a revoke then does not wait.
    closing: AtomicBool,
    /// Set when the consumer has left the group.
    stopped: AtomicBool,
    stats: SourceStats,
    high_watermarks: Mutex<BTreeMap<(String, i32), i64>>,
    /// Offsets are committed by a transactional sink, never by the source.
    transactional: AtomicBool,
    /// The consumer group metadata, refreshed on the consumer thread.
    group_metadata: GroupMetadataSlot,
    /// Partitions revoked and not assigned again since.
    released: Mutex<BTreeSet<(String, i32)>>,
    /// Records still in flight when a revocation in transactional mode gave
    /// up waiting for them.
    revoke_failure: Mutex<Option<usize>>,
}

/// Whether a partition is this consumer's, for a transactional sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ownership {
    /// Assigned and tracked.
    Owned,
    /// Revoked since its records were handed out.
    Revoked,
    /// Never consumed by this source.
    Foreign,
}

/// The consumer's group metadata (member id, generation), captured on the
/// consumer thread after each assignment for a transactional sink to send
/// with its offsets.
#[derive(Default)]
struct GroupMetadataSlot(Mutex<Option<Arc<ConsumerGroupMetadata>>>);

impl std::fmt::Debug for GroupMetadataSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known = lock(&self.0).is_some();
        f.debug_struct("GroupMetadata")
            .field("known", &known)
            .finish()
    }
}

impl Shared {
    fn refresh_group_metadata(&self, consumer: &BaseConsumer<Callbacks>) {
        if self.transactional.load(Ordering::Relaxed) {
            if let Some(gm) = consumer.group_metadata() {
                *lock(&self.group_metadata.0) = Some(Arc::new(gm));
            }
        }
    }
}

/// A live view of a running [`KafkaSource`]: partitions, lag, counters.
#[derive(Debug, Clone)]
pub struct KafkaSourceHandle {
    shared: Arc<Shared>,
}

/// One partition's lag, as far as this consumer knows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionLag {
    /// Offsets and in-flight count.
    #[serde(flatten)]
    pub state: PartitionState,
    /// The partition's high watermark at the last check.
    pub high_watermark: Option<i64>,
    /// High watermark minus the committed offset.
    pub lag: Option<i64>,
}

impl KafkaSourceHandle {
    /// Every owned partition's offsets, in-flight count and lag.
    pub fn partitions(&self) -> Vec<PartitionLag> {
        let states = lock(&self.shared.tracker).states();
        let marks = lock(&self.shared.high_watermarks);
        states
            .into_iter()
            .map(|state| {
                let high_watermark = marks.get(&(state.topic.clone(), state.partition)).copied();
                let lag = match (high_watermark, state.committed) {
                    (Some(h), Some(c)) => Some((h - c).max(0)),
                    _ => None,
                };
                PartitionLag {
                    state,
                    high_watermark,
                    lag,
                }
            })
            .collect()
    }

    /// The source's counters.
    pub fn stats(&self) -> &SourceStats {
        &self.shared.stats
    }

    /// Whether the consumer has stopped and left the group.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }

    /// Whether the partitions are paused (the graph is full).
    pub fn is_paused(&self) -> bool {
        self.shared.paused.load(Ordering::Relaxed)
    }

    /// Whether the source is in transactional mode (see
    /// [`KafkaSource::transactional`]): a transactional sink commits its
    /// offsets.
    pub fn is_transactional(&self) -> bool {
        self.shared.transactional.load(Ordering::SeqCst)
    }

    /// The consumer group metadata (group, member id, generation) a
    /// transactional producer sends with the offsets, so the group
    /// coordinator can fence a member that lost its partitions. Captured on
    /// the consumer thread after each assignment (the generation changes at
    /// every rebalance) and about every second; `None` until the first
    /// assignment, and always `None` outside transactional mode.
    pub fn group_metadata(&self) -> Option<Arc<ConsumerGroupMetadata>> {
        lock(&self.shared.group_metadata.0).clone()
    }

    /// Whether this consumer owns `topic`/`partition` now (it is assigned and
    /// its revocation, if one is under way, has not finished).
    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        lock(&self.shared.tracker).owns(topic, partition)
    }

    pub(crate) fn ownership(&self, topic: &str, partition: i32) -> Ownership {
        if self.owns(topic, partition) {
            Ownership::Owned
        } else if lock(&self.shared.released).contains(&(topic.to_string(), partition)) {
            Ownership::Revoked
        } else {
            Ownership::Foreign
        }
    }

    /// The offsets a transaction must commit along with the outputs of the
    /// records at `origins`: for every owned partition, the first offset
    /// that is neither finished nor among `origins` (see
    /// [`OffsetTracker::to_commit_with`]), where that moved past the last
    /// commit. Origins without a topic, partition and offset are ignored.
    ///
    /// Nothing is marked finished: the records finish when their
    /// acknowledgements resolve, after the transaction committed. Call
    /// [`KafkaSourceHandle::mark_committed`] once it has.
    pub fn transaction_offsets(&self, origins: &[&Origin]) -> Vec<(String, i32, i64)> {
        let mut finishing: BTreeMap<(String, i32), BTreeSet<i64>> = BTreeMap::new();
        for o in origins {
            if let (Some(t), Some(p), Some(off)) = (&o.topic, o.partition, o.offset) {
                finishing.entry((t.to_string(), p)).or_default().insert(off);
            }
        }
        lock(&self.shared.tracker).to_commit_with(&finishing)
    }

    /// Notes offsets (topic, partition, next offset to read) that a
    /// transaction committed, for [`KafkaSourceHandle::partitions`] and the
    /// lag; counted in [`SourceStats::commits`].
    pub fn mark_committed(&self, offsets: &[(String, i32, i64)]) {
        if offsets.is_empty() {
            return;
        }
        let mut tracker = lock(&self.shared.tracker);
        for (t, p, o) in offsets {
            tracker.committed(t, *p, *o);
        }
        self.shared.stats.commits.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reports each record's outcome to the tracker.
struct Acker(Arc<Shared>);

impl AckReceiver for Acker {
    fn on_ack(&self, origin: &Origin, outcome: Outcome) {
        let (Some(topic), Some(partition), Some(offset)) =
            (&origin.topic, origin.partition, origin.offset)
        else {
            return;
        };
        let shared = &self.0;
        {
            let mut tracker = lock(&shared.tracker);
            if outcome.is_finished() {
                match tracker.finish(topic, partition, offset) {
                    Finish::Done => {
                        shared.finished_since_commit.fetch_add(1, Ordering::Relaxed);
                    }
                    Finish::Untracked => {
                        shared.stats.late_acks.fetch_add(1, Ordering::Relaxed);
                    }
                    // Held records taken back on revoke or shutdown resolve here.
                    Finish::Unknown => {}
                }
            } else {
                if let Outcome::Failed(e) = &outcome {
                    if e.kind() != FailureKind::Abandoned {
                        tracing::error!(%topic, partition, offset, error = %e, "record failed with nowhere to go; its offset will not be committed");
                    }
                    if e.kind() != FailureKind::Abandoned && e.kind() != FailureKind::Leaked {
                        tracker.fail(topic, partition, offset);
                    }
                }
            }
        }
        shared.changed.notify_all();
    }
}

/// librdkafka callbacks: rebalances and commit results.
struct Callbacks {
    shared: Arc<Shared>,
    revoke_timeout: Duration,
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
            {
                let mut released = lock(&self.shared.released);
                for p in &parts {
                    released.remove(p);
                }
            }
            // A new generation: the transactional sink must send this one.
            self.shared.refresh_group_metadata(consumer);
            // librdkafka keeps a partition's pause flag across a revoke and a
            // later assignment: one paused while owned before would never be
            // fetched again. Set every new partition to the source's state.
            let result = if self.shared.paused.load(Ordering::Relaxed) {
                consumer.pause(tpl)
            } else {
                consumer.resume(tpl)
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "could not set the pause state of newly assigned partitions");
            }
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

/// Commits `offsets` (topic, partition, next offset to read).
fn commit(
    consumer: &BaseConsumer<Callbacks>,
    shared: &Shared,
    offsets: &[(String, i32, i64)],
    mode: CommitMode,
) {
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in offsets {
        if let Err(e) = tpl.add_partition_offset(t, *p, Offset::Offset(*o)) {
            tracing::warn!(error = %e, "bad offset to commit");
            return;
        }
    }
    shared.finished_since_commit.store(0, Ordering::Relaxed);
    match consumer.commit(&tpl, mode) {
        Ok(()) => {
            shared.stats.commits.fetch_add(1, Ordering::Relaxed);
            if matches!(mode, CommitMode::Sync) {
                let mut tracker = lock(&shared.tracker);
                for (t, p, o) in offsets {
                    tracker.committed(t, *p, *o);
                }
            }
        }
        Err(e) => {
            shared.stats.commit_failures.fetch_add(1, Ordering::Relaxed);
            log_commit_failure(&e);
        }
    }
}

fn log_commit_failure(e: &rdkafka::error::KafkaError) {
    if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::RebalanceInProgress) {
        // Expected while a rebalance is pending; the next commit retries.
        tracing::debug!(error = %e, "offset commit refused during a rebalance");
    } else {
        tracing::warn!(error = %e, "offset commit failed; the next commit retries");
    }
}

/// Takes back held envelopes (of `parts`, or all): their offsets are
/// rewound in the tracker so no commit passes them, and their
/// acknowledgements resolve without effect.
fn release_held(shared: &Shared, parts: Option<&[(String, i32)]>, why: &'static str) {
    let taken: Vec<Envelope<Bytes>> = {
        let mut held = lock(&shared.held);
        let (take, keep): (Vec<_>, Vec<_>) = held.drain(..).partition(|env| {
            let o = env.origin();
            parts.is_none_or(|ps| {
                ps.iter()
                    .any(|(t, p)| o.topic.as_deref() == Some(t.as_str()) && o.partition == Some(*p))
            })
        });
        held.extend(keep);
        take
    };
    if taken.is_empty() {
        return;
    }
    {
        let mut tracker = lock(&shared.tracker);
        let mut firsts: HashMap<(&str, i32), i64> = HashMap::new();
        for env in &taken {
            let o = env.origin();
            if let (Some(t), Some(p), Some(off)) = (o.topic.as_deref(), o.partition, o.offset) {
                let first = firsts.entry((t, p)).or_insert(off);
                *first = (*first).min(off);
            }
        }
        for ((t, p), off) in firsts {
            tracker.rewind(t, p, off);
        }
    }
    for env in taken {
        env.into_parts().1.drop_with(DropReason::Other(why.into()));
    }
}

/// A Kafka consumer-group member as a sluicegate [`Source`]. Emits each
/// record's payload as [`Bytes`] (empty for a tombstone); everything else
/// about the record is in its [`Origin`].
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
        let config = config
            .set("group.id", group_id)
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
            shared: Arc::new(Shared::default()),
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

    /// Transactional mode, for exactly-once Kafka to Kafka with a
    /// [`KafkaTxnSink`](crate::KafkaTxnSink) (default off).
    ///
    /// The source then never commits offsets itself (no interval, count,
    /// revoke or shutdown commits): the sink commits them inside each
    /// transaction, along with the outputs of the records they cover. The
    /// source still tracks which records are finished, captures the group
    /// metadata the sink sends with the offsets
    /// ([`KafkaSourceHandle::group_metadata`]), pauses on a full graph, and
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

    /// The client configuration (secrets redacted in `Debug`).
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    fn consume(
        self,
        mut cx: SourceContext<Bytes>,
        rt: tokio::runtime::Handle,
    ) -> Result<(), KafkaIoError> {
        let shared = self.shared.clone();
        let callbacks = Callbacks {
            shared: shared.clone(),
            revoke_timeout: self.revoke_timeout,
        };
        let consumer: BaseConsumer<Callbacks> = self
            .config
            .client_config()
            .create_with_context(callbacks)
            .map_err(|e| self.config.explain(e))?;
        check_topics(&consumer, &self.config, &self.topics, self.connect_timeout)?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        tracing::info!(source = cx.name(), topics = ?self.topics, group = self.config.get("group.id"), "consuming");

        let receiver: Arc<dyn AckReceiver> = Arc::new(Acker(shared.clone()));
        let transactional = shared.transactional.load(Ordering::SeqCst);
        let mut topic_names: HashMap<String, Arc<str>> = HashMap::new();
        let mut last_commit = Instant::now();
        let mut last_group_metadata = Instant::now();
        let mut last_watermarks = Instant::now();
        let mut draining = false;
        let mut full_since: Option<Instant> = None;
        let result = loop {
            if cx.is_abandoned() {
                tracing::warn!(
                    source = cx.name(),
                    "shutdown deadline passed; committing only what finished"
                );
                break Ok(());
            }
            if let Some(in_flight) = lock(&shared.revoke_failure).take() {
                break Err(KafkaIoError::RevokeTimedOut {
                    in_flight,
                    timeout: self.revoke_timeout,
                });
            }
            if let Some((topic, partition, offset)) = lock(&shared.tracker).first_failure() {
                break Err(KafkaIoError::RecordFailed {
                    topic,
                    partition,
                    offset,
                });
            }
            if transactional {
                // The sink commits; keep the generation it sends current.
                if last_group_metadata.elapsed() >= Duration::from_secs(1) {
                    shared.refresh_group_metadata(&consumer);
                    last_group_metadata = Instant::now();
                }
            } else if last_commit.elapsed() >= self.commit_interval
                || shared.finished_since_commit.load(Ordering::Relaxed) >= self.commit_every
            {
                // Synchronous: one round trip per interval (or per
                // `commit_every` records) keeps the committed view exact,
                // without relying on librdkafka serving commit callbacks.
                let offsets = lock(&shared.tracker).to_commit();
                commit(&consumer, &shared, &offsets, CommitMode::Sync);
                last_commit = Instant::now();
            }
            if last_watermarks.elapsed() >= self.lag_interval {
                refresh_watermarks(&consumer, &shared);
                last_watermarks = Instant::now();
            }
            if cx.is_shutting_down() && !draining {
                draining = true;
                release_held(&shared, None, "shutting down before the graph took it");
                set_paused(&consumer, &shared, true);
            }
            if draining {
                if lock(&shared.tracker).in_flight(None) == 0 {
                    break Ok(());
                }
                // Keep serving the group while the graph drains.
                if let Some(Ok(m)) = cx.idle_blocking(|| consumer.poll(Duration::from_millis(10))) {
                    if let Some(env) =
                        envelope(&m, &shared, &receiver, &mut topic_names, self.keep_raw)
                    {
                        lock(&shared.held).push_back(env);
                        release_held(&shared, None, "shutting down before the graph took it");
                    }
                }
                continue;
            }
            if let Err(closed) = emit_held(&mut cx, &shared) {
                break Err(closed);
            }
            let paused = shared.paused.load(Ordering::Relaxed);
            if lock(&shared.held).is_empty() {
                full_since = None;
                if paused {
                    set_paused(&consumer, &shared, false);
                }
            } else {
                // The graph is full.
                let since = *full_since.get_or_insert_with(Instant::now);
                if !paused && since.elapsed() >= self.pause_after {
                    set_paused(&consumer, &shared, true);
                }
                let wait = if paused {
                    self.poll_interval
                } else {
                    self.pause_after.saturating_sub(since.elapsed())
                };
                rt.block_on(cx.ready_within(wait.min(self.poll_interval)));
                if !shared.paused.load(Ordering::Relaxed) {
                    // Short stall: wait without polling; the prefetched
                    // records stay in librdkafka's bounded buffer.
                    continue;
                }
            }
            let timeout = if shared.paused.load(Ordering::Relaxed) {
                Duration::ZERO
            } else {
                self.poll_interval
            };
            match cx.idle_blocking(|| consumer.poll(timeout)) {
                None => {}
                Some(Ok(message)) => {
                    if let Some(env) = envelope(
                        &message,
                        &shared,
                        &receiver,
                        &mut topic_names,
                        self.keep_raw,
                    ) {
                        lock(&shared.held).push_back(env);
                    }
                }
                Some(Err(e)) => {
                    if let Some((code, reason)) = consumer.client().fatal_error() {
                        tracing::error!(%reason, "fatal consumer error");
                        break Err(KafkaIoError::Client(
                            rdkafka::error::KafkaError::MessageConsumptionFatal(code),
                        ));
                    }
                    tracing::warn!(error = %e, "consumer error (librdkafka retries)");
                }
            }
        };
        // Final commit of everything finished, synchronously, then leave the
        // group (in transactional mode the sink's last transaction did).
        shared.closing.store(true, Ordering::SeqCst);
        release_held(&shared, None, "shutting down before the graph took it");
        let offsets = if transactional {
            Vec::new()
        } else {
            lock(&shared.tracker).to_commit()
        };
        commit(&consumer, &shared, &offsets, CommitMode::Sync);
        let uncommitted: i64 = lock(&shared.tracker)
            .states()
            .iter()
            .map(|s| s.next.unwrap_or(0) - s.committed.or(s.committable).unwrap_or(0))
            .sum();
        shared
            .stats
            .uncommitted_at_stop
            .store(uncommitted.max(0) as u64, Ordering::Relaxed);
        consumer.unsubscribe();
        drop(consumer);
        shared.stopped.store(true, Ordering::SeqCst);
        tracing::info!(source = cx.name(), committed = ?offsets, uncommitted, "consumer stopped");
        if let Err(e) = &result {
            tracing::error!(source = cx.name(), error = %e, "Kafka source stopped with an error");
        }
        result
    }
}

fn set_paused(consumer: &BaseConsumer<Callbacks>, shared: &Shared, pause: bool) {
    let assignment = match consumer.assignment() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the assignment");
            return;
        }
    };
    shared.paused.store(pause, Ordering::Relaxed);
    let result = if pause {
        shared.stats.pauses.fetch_add(1, Ordering::Relaxed);
        consumer.pause(&assignment)
    } else {
        consumer.resume(&assignment)
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, pause, "pause/resume failed");
    }
}

/// Hands held envelopes to the graph until it is full.
fn emit_held(cx: &mut SourceContext<Bytes>, shared: &Shared) -> Result<(), KafkaIoError> {
    let mut held = lock(&shared.held);
    while let Some(env) = held.pop_front() {
        match cx.try_emit(env) {
            Ok(()) => {
                shared.stats.records.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(env)) => {
                held.push_front(env);
                return Ok(());
            }
            Err(TrySendError::Closed(env)) => {
                held.push_front(env);
                drop(held);
                release_held(shared, None, "the graph stopped");
                return Err(KafkaIoError::Client(rdkafka::error::KafkaError::Canceled));
            }
        }
    }
    Ok(())
}

/// The envelope of a fetched record, tracked; `None` (counted) when the
/// record was handed out before (fetched again after a position reset).
fn envelope(
    m: &rdkafka::message::BorrowedMessage<'_>,
    shared: &Shared,
    receiver: &Arc<dyn AckReceiver>,
    topics: &mut HashMap<String, Arc<str>>,
    keep_raw: bool,
) -> Option<Envelope<Bytes>> {
    let topic = match topics.get(m.topic()) {
        Some(t) => t.clone(),
        None => {
            let t: Arc<str> = m.topic().into();
            topics.insert(m.topic().to_string(), t.clone());
            t
        }
    };
    // Track before the graph can see it: its acknowledgement may arrive at once.
    if !lock(&shared.tracker).track(&topic, m.partition(), m.offset()) {
        shared
            .stats
            .skipped_refetched
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(topic = %topic, partition = m.partition(), offset = m.offset(), "record fetched again; already handed out, skipped");
        return None;
    }
    let payload = m.payload().map(Bytes::copy_from_slice);
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        h.value.map(Bytes::copy_from_slice).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let origin = Origin {
        topic: Some(topic.clone()),
        partition: Some(m.partition()),
        offset: Some(m.offset()),
        key: m.key().map(Bytes::copy_from_slice),
        timestamp: m.timestamp().to_millis(),
        headers,
        raw: if keep_raw { payload.clone() } else { None },
    };
    Some(Envelope::new(
        payload.unwrap_or_default(),
        Ack::new(origin, receiver.clone()),
    ))
}

/// The high watermark of every assigned partition, in one request per
/// partition leader (ListOffsets for the latest offset): the consumer thread
/// stops polling for one round trip, however many partitions it owns.
fn refresh_watermarks(consumer: &BaseConsumer<Callbacks>, shared: &Shared) {
    let Ok(mut query) = consumer.assignment() else {
        return;
    };
    // In a timestamp query, `End` (-1) asks for the latest offset: the high
    // watermark.
    if query.count() == 0 || query.set_all_offsets(Offset::End).is_err() {
        return;
    }
    let Ok(latest) = consumer.offsets_for_times(query, Duration::from_millis(500)) else {
        return;
    };
    let mut marks = lock(&shared.high_watermarks);
    for e in latest.elements() {
        if let (Offset::Offset(high), Ok(())) = (e.offset(), e.error()) {
            marks.insert((e.topic().to_string(), e.partition()), high);
        }
    }
}

/// Fails fast (within `timeout`) if the cluster is unreachable or a topic
/// does not exist.
fn check_topics(
    consumer: &BaseConsumer<Callbacks>,
    config: &KafkaConfig,
    topics: &[String],
    timeout: Duration,
) -> Result<usize, KafkaIoError> {
    let metadata =
        consumer
            .fetch_metadata(None, timeout)
            .map_err(|source| KafkaIoError::Unreachable {
                brokers: config.get("bootstrap.servers").unwrap_or("?").to_string(),
                waited: timeout,
                source,
            })?;
    let mut partitions = 0;
    for topic in topics {
        match metadata.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                partitions += t.partitions().len()
            }
            _ => return Err(KafkaIoError::UnknownTopic(topic.clone())),
        }
    }
    Ok(partitions)
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

/// `workers` members of one consumer group in this process, merged into one
/// stream (the seeds' many-workers pattern, with each member committing its
/// own partitions' finished offsets).
///
/// # Errors
///
/// [`KafkaIoError::TooManyWorkers`] when `workers` exceeds the topics'
/// partitions (the extra members would sit idle), after checking the
/// cluster within `connect_timeout`; [`KafkaIoError::Unreachable`] and
/// [`KafkaIoError::UnknownTopic`] as at start.
pub fn consumer_group(
    config: &KafkaConfig,
    group_id: &str,
    topics: &[&str],
    workers: usize,
    connect_timeout: Duration,
) -> Result<Vec<KafkaSource>, KafkaIoError> {
    let probe: BaseConsumer<Callbacks> = config
        .clone()
        .set("group.id", group_id)
        .client_config()
        .create_with_context(Callbacks {
            shared: Arc::new(Shared::default()),
            revoke_timeout: Duration::ZERO,
        })
        .map_err(|e| config.explain(e))?;
    let topic_names: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    let partitions = check_topics(&probe, config, &topic_names, connect_timeout)?;
    if workers > partitions {
        return Err(KafkaIoError::TooManyWorkers {
            topics: topics.join(","),
            workers,
            partitions,
        });
    }
    Ok((0..workers)
        .map(|_| {
            KafkaSource::new(config.clone(), group_id, topics.iter().copied())
                .connect_timeout(connect_timeout)
        })
        .collect())
}
