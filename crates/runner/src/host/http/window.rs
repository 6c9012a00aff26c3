//! The recent samples of the board, and the window rates are measured
//! over: from the newest sample at least [`WINDOW`] old to now.

use std::collections::VecDeque;
use std::time::Duration;

use sluicegate_core::Snapshot;
use tokio::time::Instant;

use super::board::{StatusBoard, lock};
use super::{SAMPLE_EVERY, WINDOW};
use crate::host::rate::Period;

/// A baseline younger than this is not used (too short to measure a rate).
const MIN_WINDOW: Duration = Duration::from_millis(100);

/// One recorded snapshot, for rates.
struct Sample {
    at: Instant,
    snapshot: Snapshot,
}

/// The board's recent samples, oldest first; at most one sample older than
/// [`WINDOW`] is kept.
#[derive(Default)]
pub(super) struct Samples(VecDeque<Sample>);

impl Samples {
    /// How many samples are kept.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// The snapshot now and the baseline the figures are measured against.
pub(super) struct Window {
    pub(super) now: Snapshot,
    /// The baseline and its age; `None` means "since the start".
    before: Option<(Duration, Snapshot)>,
}

impl Window {
    /// The period measured.
    pub(super) fn period(&self) -> Period<'_> {
        Period::aged(&self.now, self.before.as_ref().map(|(age, s)| (*age, s)))
    }
}

impl StatusBoard {
    /// Takes a snapshot, picks the baseline, and records the snapshot as a
    /// sample when one is due.
    pub(super) fn window(&self) -> Window {
        let now = self.inner.metrics.snapshot();
        let at = Instant::now();
        let mut samples = lock(&self.inner.samples);
        let samples = &mut samples.0;
        // Keep exactly one sample at least WINDOW old: the baseline.
        while samples
            .get(1)
            .is_some_and(|s| at.saturating_duration_since(s.at) >= WINDOW)
        {
            samples.pop_front();
        }
        // A graph restarted under the same metrics (uptime went back) makes
        // the old samples meaningless.
        if samples
            .back()
            .is_some_and(|s| s.snapshot.uptime_ns > now.uptime_ns)
        {
            samples.clear();
        }
        let before = samples.front().and_then(|s| {
            let age = at.saturating_duration_since(s.at);
            (age >= MIN_WINDOW).then(|| (age, s.snapshot.clone()))
        });
        if samples
            .back()
            .is_none_or(|s| at.saturating_duration_since(s.at) >= SAMPLE_EVERY)
        {
            samples.push_back(Sample {
                at,
                snapshot: now.clone(),
            });
        }
        Window { now, before }
    }
}
