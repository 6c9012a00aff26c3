//! The live view of a running source.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rdkafka::consumer::ConsumerGroupMetadata;
use sluicegate_core::{CommitLedger, Origin};

use super::shared::{Ownership, Shared, SourceStats, lock};
use crate::tracker::PartitionState;

/// A live view of a running [`KafkaSource`](super::KafkaSource): partitions, lag, counters.
#[derive(Debug, Clone)]
pub struct KafkaSourceHandle {
    pub(super) shared: Arc<Shared>,
}

/// One partition's commit frontier, as far as this consumer knows: how far
/// it was fetched, finished and committed, what holds the commits back and
/// for how long, its lag, and whether it is paused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionLag {
    /// Offsets, in-flight count, window and its oldest unfinished record.
    #[serde(flatten)]
    pub state: PartitionState,
    /// The partition's high watermark at the last check.
    pub high_watermark: Option<i64>,
    /// High watermark minus the committed offset.
    pub lag: Option<i64>,
    /// Why the partition is not fetched now, or `None` (JSON `null`) when it
    /// is.
    pub paused: Option<PauseReason>,
    /// The window limit ([`KafkaSource::window_limit`](super::KafkaSource::window_limit)).
    pub window_limit: usize,
}

/// Why a partition is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// The graph is full: every partition of the source is paused
    /// ([`KafkaSource::pause_after`](super::KafkaSource::pause_after)).
    GraphFull,
    /// The partition's window reached its limit
    /// ([`KafkaSource::window_limit`](super::KafkaSource::window_limit)).
    Window,
    /// Both.
    GraphFullAndWindow,
}

impl PauseReason {
    /// `graph full`, `window` or `graph full, window`.
    pub fn describe(self) -> &'static str {
        match self {
            PauseReason::GraphFull => "graph full",
            PauseReason::Window => "window",
            PauseReason::GraphFullAndWindow => "graph full, window",
        }
    }
}

impl KafkaSourceHandle {
    /// Every owned partition's commit frontier, in (topic, partition) order.
    pub fn partitions(&self) -> Vec<PartitionLag> {
        let states = lock(&self.shared.tracker).states();
        let marks = lock(&self.shared.high_watermarks);
        let graph_full = self.shared.paused.load(Ordering::Relaxed);
        let window_limit = self.shared.window_limit.load(Ordering::Relaxed);
        states
            .into_iter()
            .map(|state| {
                let high_watermark = marks.get(&(state.topic.clone(), state.partition)).copied();
                let lag = match (high_watermark, state.committed) {
                    (Some(h), Some(c)) => Some((h - c).max(0)),
                    _ => None,
                };
                let paused = match (graph_full, state.window_paused) {
                    (false, false) => None,
                    (true, false) => Some(PauseReason::GraphFull),
                    (false, true) => Some(PauseReason::Window),
                    (true, true) => Some(PauseReason::GraphFullAndWindow),
                };
                PartitionLag {
                    state,
                    high_watermark,
                    lag,
                    paused,
                    window_limit,
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
    /// [`KafkaSource::transactional`](super::KafkaSource::transactional)): a transactional sink commits its
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
    /// [`OffsetTracker::to_commit_with`](crate::OffsetTracker::to_commit_with)), where that moved past the last
    /// commit. Origins without a topic, partition and offset are ignored.
    ///
    /// Nothing is marked finished: the records finish when their
    /// acknowledgements resolve, after the transaction committed. Call
    /// [`KafkaSourceHandle::mark_committed`] once it has.
    pub fn transaction_offsets(&self, origins: &[&Origin]) -> Vec<(String, i32, i64)> {
        let mut finishing: BTreeMap<(String, i32), BTreeMap<i64, usize>> = BTreeMap::new();
        for o in origins {
            if let (Some(t), Some(p), Some(off)) = (&o.topic, o.partition, o.offset) {
                *finishing
                    .entry((t.to_string(), p))
                    .or_default()
                    .entry(off)
                    .or_default() += 1;
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

/// The ledger a stage committing this source's offsets with its own work
/// uses: a store writing them with its rows (see
/// [`KafkaSource::offsets_in`](super::KafkaSource::offsets_in)), or any
/// other [`CommitLedger`] user.
impl CommitLedger for KafkaSourceHandle {
    fn group(&self) -> String {
        self.shared.group.get().cloned().unwrap_or_default()
    }

    fn offsets_with(&self, origins: &[&Origin]) -> Vec<(String, i32, i64)> {
        self.transaction_offsets(origins)
    }

    fn committed(&self, offsets: &[(String, i32, i64)]) {
        self.mark_committed(offsets);
    }
}
