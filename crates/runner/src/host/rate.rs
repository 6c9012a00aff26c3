//! Rates over a period: records per second and the busy / blocked / idle
//! split of each node, between two snapshots of the graph's metrics.
//!
//! The status server ([`http`](crate::host::http)) and the live view
//! ([`view`](crate::host::view)) both show these figures; a [`Period`] computes
//! them once, the same way for both.
//!
//! ```
//! use sluicegate_runner::rate::Period;
//! # fn show(now: &sluicegate_core::Snapshot, before: Option<&sluicegate_core::Snapshot>) {
//! let period = Period::between(now, before);
//! for f in period.stages() {
//!     println!("{}: {:?} rec/s, busy {:.0}%", f.name(), f.rate, f.busy * 100.0);
//! }
//! # }
//! ```

use std::time::Duration;

use sluicegate_core::metrics::StageSnapshot;
use sluicegate_core::{Bottleneck, Snapshot};

/// The figures of the period from a baseline snapshot to `now`, or of the
/// whole run when there is no baseline.
#[derive(Debug, Clone, Copy)]
pub struct Period<'a> {
    now: &'a Snapshot,
    before: Option<&'a Snapshot>,
    seconds: f64,
}

/// One node's figures over a [`Period`].
#[derive(Debug, Clone, Copy)]
pub struct StageFigures<'a> {
    /// The node now.
    pub stage: &'a StageSnapshot,
    /// Records taken in per second (created, for a source); `None` when the
    /// period has no length.
    pub rate: Option<f64>,
    /// The share of the period the node was busy.
    pub busy: f64,
    /// The share of the period the node was blocked on a full downstream.
    pub blocked: f64,
    /// The share of the period the node was idle.
    pub idle: f64,
}

impl StageFigures<'_> {
    /// The node's name.
    pub fn name(&self) -> &str {
        &self.stage.name
    }

    /// Whether any of the node's time was accounted in the period (a node
    /// that ended before the period began has none).
    pub fn has_split(&self) -> bool {
        self.busy + self.blocked + self.idle > 0.0
    }
}

impl<'a> Period<'a> {
    /// The period between `before` and `now`, measured on the graph's own
    /// clock (the snapshots' uptime); the whole run when there is no
    /// `before`, or when it is not older than `now` (a graph restarted
    /// under the same metrics).
    pub fn between(now: &'a Snapshot, before: Option<&'a Snapshot>) -> Self {
        match before.filter(|b| b.uptime_ns < now.uptime_ns) {
            Some(b) => Period {
                now,
                before: Some(b),
                seconds: (now.uptime_ns - b.uptime_ns) as f64 / 1e9,
            },
            None => Self::whole_run(now),
        }
    }

    /// The period from `before`, taken `age` ago, to `now`; the whole run
    /// without a `before`.
    pub fn aged(now: &'a Snapshot, before: Option<(Duration, &'a Snapshot)>) -> Self {
        match before {
            Some((age, b)) => Period {
                now,
                before: Some(b),
                seconds: age.as_secs_f64(),
            },
            None => Self::whole_run(now),
        }
    }

    /// The whole run, up to `now`.
    pub fn whole_run(now: &'a Snapshot) -> Self {
        Period {
            now,
            before: None,
            seconds: now.uptime_ns as f64 / 1e9,
        }
    }

    /// The length of the period, in seconds.
    pub fn seconds(&self) -> f64 {
        self.seconds
    }

    /// Whether the period starts at a baseline (rather than the start).
    pub fn is_windowed(&self) -> bool {
        self.before.is_some()
    }

    /// The snapshot the period ends at.
    pub fn now(&self) -> &'a Snapshot {
        self.now
    }

    /// The baseline, if any.
    pub fn before(&self) -> Option<&'a Snapshot> {
        self.before
    }

    /// The node most likely holding the graph back over the period
    /// ([`Snapshot::bottleneck`]).
    pub fn bottleneck(&self) -> Option<Bottleneck> {
        self.now.bottleneck(self.before)
    }

    /// Each node's figures, in the snapshot's order.
    pub fn stages(&self) -> impl Iterator<Item = StageFigures<'a>> + '_ {
        self.now.stages.iter().map(move |s| {
            let prev = self.before.and_then(|b| b.stage(&s.name));
            let items = s.items_in.saturating_sub(prev.map_or(0, |p| p.items_in));
            let rate = (self.seconds > 0.0).then(|| items as f64 / self.seconds);
            let (busy, blocked, idle) = s.time_split(prev);
            StageFigures {
                stage: s,
                rate,
                busy,
                blocked,
                idle,
            }
        })
    }
}
