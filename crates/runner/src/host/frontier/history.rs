//! [`History`]: each partition's recent lag and commit rate, in bounded
//! memory; a partition's [`Trend`] is what the page draws.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use sluicegate_kafka_io::PartitionLag;

/// One partition's recent history, oldest point first: the time of each
/// point (seconds since the first point of the [`History`]), the lag, and
/// the records committed per second since the point before (`None` for the
/// first point, or where an offset was unknown).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Trend {
    /// Seconds since the history began.
    pub t: Vec<f64>,
    /// The lag at each point.
    pub lag: Vec<Option<i64>>,
    /// Records committed per second since the point before.
    pub committed_per_s: Vec<Option<f64>>,
}

struct Point {
    at: Instant,
    lag: Option<i64>,
    committed: Option<i64>,
}

/// Each partition's lag and committed offset at regular points in time, in
/// bounded memory (at most `len` points per partition owned).
pub struct History {
    every: Duration,
    len: usize,
    start: Option<Instant>,
    last: Option<Instant>,
    points: BTreeMap<(String, i32), VecDeque<Point>>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("every", &self.every)
            .field("len", &self.len)
            .field("partitions", &self.points.len())
            .finish_non_exhaustive()
    }
}

impl History {
    /// A history with a point every `every`, `len` points per partition.
    pub fn new(every: Duration, len: usize) -> Self {
        History {
            every,
            len: len.max(2),
            start: None,
            last: None,
            points: BTreeMap::new(),
        }
    }

    /// How often a point is recorded.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// Records a point for each of `partitions` at `at`, if the last point
    /// is at least `every` older (or there is none); returns whether it did.
    /// Partitions not listed (revoked) are forgotten.
    pub fn record(&mut self, at: Instant, partitions: &[PartitionLag]) -> bool {
        if self
            .last
            .is_some_and(|last| at.saturating_duration_since(last) < self.every)
        {
            return false;
        }
        self.start.get_or_insert(at);
        self.last = Some(at);
        let owned: BTreeSet<(String, i32)> = partitions
            .iter()
            .map(|p| (p.state.topic.clone(), p.state.partition))
            .collect();
        self.points.retain(|k, _| owned.contains(k));
        for p in partitions {
            let points = self
                .points
                .entry((p.state.topic.clone(), p.state.partition))
                .or_default();
            if points.len() == self.len {
                points.pop_front();
            }
            points.push_back(Point {
                at,
                lag: p.lag,
                committed: p.state.committed,
            });
        }
        true
    }

    /// The history of `topic`/`partition` (empty when it has none).
    pub fn trend(&self, topic: &str, partition: i32) -> Trend {
        let mut trend = Trend::default();
        let (Some(start), Some(points)) =
            (self.start, self.points.get(&(topic.to_string(), partition)))
        else {
            return trend;
        };
        let mut before: Option<&Point> = None;
        for p in points {
            trend
                .t
                .push(p.at.saturating_duration_since(start).as_secs_f64());
            trend.lag.push(p.lag);
            let rate = before.and_then(|b| {
                let dt = p.at.saturating_duration_since(b.at).as_secs_f64();
                match (b.committed, p.committed) {
                    (Some(c0), Some(c1)) if dt > 0.0 => Some((c1 - c0).max(0) as f64 / dt),
                    _ => None,
                }
            });
            trend.committed_per_s.push(rate);
            before = Some(p);
        }
        trend
    }
}
