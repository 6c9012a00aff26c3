//! The live view of a running source.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sluicegate_core::{CommitLedger, Origin};

use super::exactly_once::ExactlyOnce;
use super::shared::{Shared, SourceStats, lock};
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

    /// Whether this consumer owns `topic`/`partition` now (it is assigned and
    /// its revocation, if one is under way, has not finished).
    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        lock(&self.shared.tracker).owns(topic, partition)
    }

    /// The coupling a [`KafkaTxnSink`](crate::KafkaTxnSink) commits this
    /// source's offsets through (see [`ExactlyOnce`]).
    pub fn exactly_once(&self) -> ExactlyOnce {
        ExactlyOnce {
            shared: self.shared.clone(),
        }
    }
}

/// The ledger a stage committing this source's offsets with its own work
/// uses: a store writing them with its rows (see
/// [`KafkaSource::offsets_in`](super::KafkaSource::offsets_in)), or any
/// other [`CommitLedger`] user: the one of [`ExactlyOnce`].
impl CommitLedger for KafkaSourceHandle {
    fn group(&self) -> String {
        self.exactly_once().group()
    }

    fn offsets_with(&self, origins: &[&Origin]) -> Vec<(String, i32, i64)> {
        self.exactly_once().offsets_with(origins)
    }

    fn committed(&self, offsets: &[(String, i32, i64)]) {
        self.exactly_once().committed(offsets);
    }
}
