//! The live counters of one node, and the metrics clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::clock::{CLOSED, Phase, unpack};
use super::histogram::Histogram;

/// What kind of node a stage is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// Produces envelopes.
    Source,
    /// Transforms envelopes.
    Stage,
    /// Ends a stream.
    Sink,
    /// Receives the failed items of every stage.
    DeadLetter,
}

/// The metrics clock: Tokio's (paused in tests that pause time), else the
/// system's monotonic clock.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The live counters of one node.
#[derive(Debug)]
pub struct StageMetrics {
    pub(crate) name: Arc<str>,
    pub(crate) kind: NodeKind,
    pub(crate) concurrency: usize,
    /// When the node first took an item in (emitted one, for a source), in
    /// nanoseconds since `epoch` plus one; 0 before that.
    pub(super) first_in: AtomicU64,
    /// When the node last handed items on (delivered them, for a sink), in
    /// nanoseconds since `epoch` plus one; 0 before that.
    pub(super) last_out: AtomicU64,
    /// Envelopes taken from the mailbox (or created, for a source).
    pub(crate) items_in: AtomicU64,
    /// Envelopes emitted downstream (or delivered, for a sink).
    pub(crate) items_out: AtomicU64,
    /// Inputs for which the stage emitted nothing.
    pub(crate) filtered: AtomicU64,
    /// Inputs that failed (error or panic).
    pub(crate) failed: AtomicU64,
    /// Of the failed, how many were panics.
    pub(crate) panics: AtomicU64,
    /// Items abandoned at a forced shutdown.
    pub(crate) abandoned: AtomicU64,
    pub(crate) busy_ns: AtomicU64,
    pub(crate) blocked_ns: AtomicU64,
    pub(crate) idle_ns: AtomicU64,
    pub(crate) latency: Histogram,
    /// The open phase: [`Phase`] in the top two bits, its start in
    /// nanoseconds since `epoch` below. Written with the time counters under
    /// `seq`.
    pub(super) open: AtomicU64,
    /// Of a busy open phase, the items in flight (at most `concurrency`):
    /// that share of it is busy, the rest idle. Written under `seq`.
    pub(super) open_level: AtomicU64,
    /// Sequence lock over the time counters and `open`: odd while the node's
    /// one [`Clock`] writes them, so a reader can take a consistent cut.
    pub(super) seq: AtomicU64,
    pub(super) epoch: Instant,
    /// The highest busy, blocked and idle values handed out, so reported
    /// time never goes backwards (a Prometheus counter that drops reads as a
    /// reset).
    pub(super) reported: [AtomicU64; 3],
}

impl StageMetrics {
    pub(crate) fn new(name: Arc<str>, kind: NodeKind, concurrency: usize) -> Self {
        StageMetrics {
            name,
            kind,
            concurrency,
            first_in: AtomicU64::new(0),
            last_out: AtomicU64::new(0),
            items_in: AtomicU64::new(0),
            items_out: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            blocked_ns: AtomicU64::new(0),
            idle_ns: AtomicU64::new(0),
            latency: Histogram::default(),
            open: AtomicU64::new(CLOSED),
            open_level: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            epoch: now(),
            reported: Default::default(),
        }
    }

    pub(super) fn phase_counter(&self, phase: Phase) -> &AtomicU64 {
        match phase {
            Phase::Busy => &self.busy_ns,
            Phase::Blocked => &self.blocked_ns,
            Phase::Idle => &self.idle_ns,
        }
    }

    /// The items this node may have in flight at once (at least 1).
    pub(super) fn limit(&self) -> u64 {
        self.concurrency.max(1) as u64
    }

    /// Of `ns` spent busy with `level` items in flight, the busy share; the
    /// rest is idle.
    pub(super) fn busy_share(&self, ns: u64, level: u64) -> u64 {
        let limit = self.limit();
        if level >= limit {
            ns
        } else {
            (u128::from(ns) * u128::from(level) / u128::from(limit)) as u64
        }
    }

    pub(super) fn since_epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Notes `at` as when the node first took an item in, unless it had.
    pub(crate) fn note_first_in(&self, at: Instant) {
        if self.first_in.load(Ordering::Relaxed) == 0 {
            let _ = self.first_in.compare_exchange(
                0,
                self.since_epoch(at) + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Notes now as when the node first took an item in, unless it had
    /// (the clock is read only the first time).
    pub(crate) fn note_first_in_now(&self) {
        if self.first_in.load(Ordering::Relaxed) == 0 {
            self.note_first_in(now());
        }
    }

    /// Notes `at` as the last time the node handed items on.
    pub(crate) fn note_out(&self, at: Instant) {
        self.last_out
            .fetch_max(self.since_epoch(at) + 1, Ordering::Relaxed);
    }

    /// A stamp (`first_in`, `last_out`) as nanoseconds since `started`.
    pub(super) fn stamp_since(&self, stamp: &AtomicU64, started: Instant) -> Option<u64> {
        match stamp.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(
                (self.epoch + Duration::from_nanos(ns - 1))
                    .saturating_duration_since(started)
                    .as_nanos() as u64,
            ),
        }
    }

    /// Busy, blocked and idle nanoseconds, each including the part of the
    /// open phase elapsed so far; never less than a previous call returned.
    pub(super) fn time_ns(&self) -> [u64; 3] {
        let closed = || {
            [
                self.busy_ns.load(Ordering::Relaxed),
                self.blocked_ns.load(Ordering::Relaxed),
                self.idle_ns.load(Ordering::Relaxed),
            ]
        };
        // The writer holds the lock for a few instructions; if it is
        // descheduled inside, fall back to the closed phases only.
        let mut cut = None;
        for _ in 0..1_000 {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let time = closed();
            let open = self.open.load(Ordering::Relaxed);
            let level = self.open_level.load(Ordering::Relaxed);
            let now = self.since_epoch(now());
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                cut = Some((time, open, level, now));
                break;
            }
        }
        let (mut time, open, level, now) = cut.unwrap_or_else(|| (closed(), CLOSED, 0, 0));
        if let Some((phase, since)) = unpack(open) {
            let elapsed = now.saturating_sub(since);
            if phase == Phase::Busy {
                let busy = self.busy_share(elapsed, level);
                time[Phase::Busy as usize] += busy;
                time[Phase::Idle as usize] += elapsed - busy;
            } else {
                time[phase as usize] += elapsed;
            }
        }
        for (t, reported) in time.iter_mut().zip(&self.reported) {
            *t = reported.fetch_max(*t, Ordering::Relaxed).max(*t);
        }
        time
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}
