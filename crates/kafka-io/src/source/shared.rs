//! State shared by the consumer thread, its librdkafka callbacks and the
//! acknowledgements arriving from the graph.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LockResult, Mutex, MutexGuard, OnceLock, WaitTimeoutResult};
use std::time::Duration;

use bytes::Bytes;
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
