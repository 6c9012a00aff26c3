//! State shared by the consumer thread, its librdkafka callbacks and the
//! acknowledgements arriving from the graph.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LockResult, Mutex, MutexGuard, OnceLock, WaitTimeoutResult};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use sluicegate_core::{DropReason, Envelope, FailureKind, ItemError};

use super::exactly_once::Assignment;
use crate::error::KafkaIoError;
use crate::offset_store::OffsetStore;
use crate::tracker::OffsetTracker;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
    /// Times a partition was paused because its window reached the limit
    /// ([`KafkaSource::window_limit`](super::KafkaSource::window_limit)).
    pub window_pauses: AtomicU64,
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
    /// Records held until their due time, their partition paused meanwhile
    /// ([`KafkaSource::due_header`](super::KafkaSource::due_header)).
    pub delayed: AtomicU64,
}

/// State shared by the consumer thread, its callbacks and the
/// acknowledgements arriving from the graph.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) tracker: Mutex<OffsetTracker>,
    /// Signalled whenever a record finishes or fails.
    pub(super) changed: Changed,
    /// Envelopes read but not yet taken by the graph (it was full).
    pub(super) held: Mutex<VecDeque<Envelope<Bytes>>>,
    pub(super) finished_since_commit: AtomicUsize,
    /// See [`KafkaSource::window_limit`](super::KafkaSource::window_limit).
    pub(super) window_limit: AtomicUsize,
    pub(super) paused: AtomicBool,
    /// Set once the source is stopping: a revoke then does not wait.
    pub(super) closing: AtomicBool,
    /// Set when the consumer has left the group.
    pub(super) stopped: AtomicBool,
    pub(super) stats: SourceStats,
    pub(super) high_watermarks: Mutex<BTreeMap<(String, i32), i64>>,
    /// Offsets are committed by a transactional sink, never by the source.
    pub(super) transactional: AtomicBool,
    /// Ownership, its generation and the group metadata, for a
    /// transactional sink (see [`ExactlyOnce`](super::ExactlyOnce)); locked
    /// before `tracker` when both are.
    pub(super) assignment: Mutex<Assignment>,
    /// The first record that ended unfinished (the source stops with it).
    pub(super) failure: Mutex<Option<RecordFailure>>,
    /// Records still in flight when a revocation in transactional mode gave
    /// up waiting for them.
    pub(super) revoke_failure: Mutex<Option<usize>>,
    /// The consumer group.
    pub(super) group: OnceLock<String>,
    /// Where the offsets are kept instead of Kafka, if anywhere.
    pub(super) offset_store: StoreSlot,
    /// Why the stored offsets could not be read at an assignment (the
    /// source stops with it).
    pub(super) offset_load_failure: Mutex<Option<KafkaIoError>>,
    /// With an offset store: the offsets last mirrored to Kafka.
    pub(super) mirrored: Mutex<BTreeMap<(String, i32), i64>>,
    /// See [`KafkaSource::due_header`](super::KafkaSource::due_header).
    pub(super) due_header: OnceLock<String>,
    /// Per partition, the record held until its due time (not yet
    /// tracked: the partition's commits stop before it), the partition
    /// paused meanwhile. Only the consumer thread touches it.
    pub(super) delayed: Mutex<BTreeMap<(String, i32), Delayed>>,
}

/// A record fetched before its due time, and any of its partition's
/// records fetched after it before the pause took hold (in order).
pub(super) struct Delayed {
    pub(super) due: std::time::Instant,
    pub(super) messages: VecDeque<rdkafka::message::OwnedMessage>,
}

impl std::fmt::Debug for Delayed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use rdkafka::Message as _;
        f.debug_struct("Delayed")
            .field("due", &self.due)
            .field(
                "offsets",
                &self.messages.iter().map(|m| m.offset()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The [`OffsetStore`] of a source that keeps its offsets outside Kafka.
#[derive(Default)]
pub(super) struct StoreSlot(pub(super) OnceLock<Arc<dyn OffsetStore>>);

impl std::fmt::Debug for StoreSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StoreSlot")
            .field(&self.0.get().map(|s| s.describe()))
            .finish()
    }
}

/// A condition variable that signals only when someone waits: every
/// acknowledgement notifies it, and a notification with no waiter would
/// still cost a system call (a futex wake) per record.
#[derive(Debug, Default)]
pub(super) struct Changed {
    cv: Condvar,
    /// Threads inside [`Changed::wait_timeout`]; counted under the mutex
    /// they wait with, so a notifier that changed the state under that
    /// mutex sees them.
    waiters: AtomicUsize,
}

impl Changed {
    /// [`Condvar::wait_timeout`].
    pub(super) fn wait_timeout<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        dur: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let result = self.cv.wait_timeout(guard, dur);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// [`Condvar::notify_all`], when a thread waits. Call it after the
    /// change, once the mutex the waiters use is released (or still held).
    pub(super) fn notify_all(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.cv.notify_all();
        }
    }
}

/// A record that ended without finishing, and why.
#[derive(Debug)]
pub(super) struct RecordFailure {
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) error: ItemError,
}

impl RecordFailure {
    /// The error the source stops with.
    pub(super) fn into_error(self) -> KafkaIoError {
        let RecordFailure {
            topic,
            partition,
            offset,
            error,
        } = self;
        match error.kind() {
            FailureKind::Leaked => KafkaIoError::RecordLeaked {
                topic,
                partition,
                offset,
            },
            FailureKind::Abandoned => KafkaIoError::RecordAbandoned {
                topic,
                partition,
                offset,
                stage: error.stage().to_string(),
                reason: error.message().to_string(),
            },
            _ => KafkaIoError::RecordFailed {
                topic,
                partition,
                offset,
            },
        }
    }
}

impl Shared {
    /// Whether acknowledgements report split records' parts: a stage that
    /// commits the offsets with its own work (a transactional sink, a store
    /// keeping them) needs to know when every other part of a record in
    /// its batch finished.
    pub(super) fn tracks_parts(&self) -> bool {
        self.transactional.load(Ordering::Relaxed) || self.offset_store.0.get().is_some()
    }

    /// Keeps `failure` as the source's failure unless one is kept already
    /// (an earlier offset of the same partition replaces it); returns
    /// whether it was kept.
    pub(super) fn note_failure(&self, failure: RecordFailure) -> bool {
        let mut kept = lock(&self.failure);
        let replace = match &*kept {
            None => true,
            Some(k) => {
                k.topic == failure.topic
                    && k.partition == failure.partition
                    && failure.offset < k.offset
            }
        };
        if replace {
            *kept = Some(failure);
        }
        replace
    }

    /// The error the source stops with, when a record ended unfinished.
    pub(super) fn take_failure(&self) -> Option<KafkaIoError> {
        lock(&self.failure).take().map(RecordFailure::into_error)
    }
}

/// Commits `offsets` (topic, partition, next offset to read): to Kafka, or,
/// for a source that keeps its offsets elsewhere, there first (the
/// authority) and then to Kafka too, for the tools that watch a group's
/// lag there.
pub(super) fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
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
    if let Some(store) = shared.offset_store.0.get() {
        let group = shared.group.get().map_or("", String::as_str);
        match store.save(group, offsets) {
            Ok(()) => {
                shared.stats.commits.fetch_add(1, Ordering::Relaxed);
                let mut tracker = lock(&shared.tracker);
                for (t, p, o) in offsets {
                    tracker.committed(t, *p, *o);
                }
            }
            Err(e) => {
                shared.stats.commit_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(store = %store.describe(), error = %e, "offset commit failed; the next commit retries");
                return;
            }
        }
        mirror(consumer, shared, offsets);
        return;
    }
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

/// Commits to Kafka the offsets a source with an offset store committed
/// there (by its own commits, or with a store's batches), so the tools that
/// watch a group's lag in Kafka see it move. Informational: the source
/// resumes from the store. Only what changed since the last mirror.
pub(super) fn mirror<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    shared: &Shared,
    offsets: &[(String, i32, i64)],
) {
    let mut mirrored = lock(&shared.mirrored);
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in offsets {
        if mirrored.get(&(t.clone(), *p)) != Some(o)
            && tpl.add_partition_offset(t, *p, Offset::Offset(*o)).is_err()
        {
            return;
        }
    }
    if tpl.count() == 0 {
        return;
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => {
            for e in tpl.elements() {
                if let Offset::Offset(o) = e.offset() {
                    mirrored.insert((e.topic().to_string(), e.partition()), o);
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "mirroring the stored offsets to Kafka failed"),
    }
}

/// [`mirror`] for every partition's offset committed so far.
pub(super) fn mirror_committed<C: ConsumerContext>(consumer: &BaseConsumer<C>, shared: &Shared) {
    if shared.offset_store.0.get().is_none() {
        return;
    }
    let committed: Vec<(String, i32, i64)> = lock(&shared.tracker)
        .states()
        .into_iter()
        .filter_map(|s| Some((s.topic, s.partition, s.committed?)))
        .collect();
    mirror(consumer, shared, &committed);
}

pub(super) fn log_commit_failure(e: &rdkafka::error::KafkaError) {
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
pub(super) fn release_held(shared: &Shared, parts: Option<&[(String, i32)]>, why: &'static str) {
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
