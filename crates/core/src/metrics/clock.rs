//! A node's phase (busy, blocked, idle) and since when, published without locks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use super::stage::{StageMetrics, now};

/// What a node is doing: the three ways its time is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Processing.
    Busy = 0,
    /// Waiting for room downstream.
    Blocked = 1,
    /// Waiting for input.
    Idle = 2,
}

/// `open` when no phase is open (before start, after the node ends).
pub(super) const CLOSED: u64 = u64::MAX;
pub(super) const SINCE_MASK: u64 = (1 << 62) - 1;

pub(super) fn unpack(open: u64) -> Option<(Phase, u64)> {
    let phase = match open >> 62 {
        0 => Phase::Busy,
        1 => Phase::Blocked,
        2 => Phase::Idle,
        _ => return None,
    };
    Some((phase, open & SINCE_MASK))
}

/// Attributes elapsed time to busy, blocked or idle with one clock read per
/// phase change, and publishes the open phase for snapshots. A node has one
/// clock (the counters' only writer); dropping it closes the open phase.
///
/// A busy phase has a level, the items in flight: a stage with a
/// concurrency above one is busy in the share `level / concurrency` of
/// it and idle in the rest ([`Clock::lap_in_flight`]). Every other
/// busy phase is at the full level.
#[derive(Debug)]
pub(crate) struct Clock {
    pub(super) metrics: Arc<StageMetrics>,
    pub(super) last: Instant,
    pub(super) phase: Phase,
    pub(super) level: u64,
}

impl Clock {
    pub(crate) fn start(metrics: Arc<StageMetrics>, phase: Phase) -> Self {
        let level = metrics.limit();
        let clock = Clock {
            metrics,
            last: now(),
            phase,
            level,
        };
        clock.publish(false, Some((phase, level)));
        clock
    }

    /// When the current phase began.
    pub(crate) fn phase_start(&self) -> Instant {
        self.last
    }

    /// Ends the current phase (`ended`, which the caller states so a
    /// misattribution fails in debug builds), adding its time to that
    /// counter, and opens `next`; returns the ended phase's length.
    pub(crate) fn lap(&mut self, ended: Phase, next: Phase) -> Duration {
        debug_assert_eq!(ended, self.phase, "clock lap ends a phase that is not open");
        let full = self.metrics.limit();
        let (now, d) = self.publish(true, Some((next, full)));
        self.last = now;
        self.phase = next;
        self.level = full;
        d
    }

    /// Ends the open phase, whichever it is, and opens `phase` (busy at the
    /// full level). The time so far stays with the phase that was open: a
    /// snapshot may already have counted it there, and moving it afterwards
    /// would count it twice (the reported values never go back).
    pub(crate) fn switch(&mut self, phase: Phase) {
        let full = self.metrics.limit();
        if phase != self.phase || self.level != full {
            let (now, _) = self.publish(true, Some((phase, full)));
            self.last = now;
            self.phase = phase;
            self.level = full;
        }
    }

    /// Ends the current phase (as [`Clock::lap`] does) and opens the wait
    /// of a stage with `in_flight` items in flight: idle with none, else
    /// busy in the share `in_flight / concurrency` (idle in the rest).
    /// Returns the phase opened, for the lap that ends it.
    pub(crate) fn lap_in_flight(&mut self, ended: Phase, in_flight: usize) -> Phase {
        debug_assert_eq!(ended, self.phase, "clock lap ends a phase that is not open");
        let limit = self.metrics.limit();
        let level = (in_flight as u64).min(limit);
        let (phase, level) = if level == 0 {
            (Phase::Idle, limit)
        } else {
            (Phase::Busy, level)
        };
        let (now, _) = self.publish(true, Some((phase, level)));
        self.last = now;
        self.phase = phase;
        self.level = level;
        phase
    }

    /// The one writer's side of the sequence lock. With `close`, reads the
    /// time and adds the open phase's length to its counter; then publishes
    /// `next` as open since that time (or no open phase). The time is read
    /// inside the lock, so no reader can have counted the open phase past
    /// the moment the writer closes it.
    pub(super) fn publish(&self, close: bool, next: Option<(Phase, u64)>) -> (Instant, Duration) {
        let m = &*self.metrics;
        let s = m.seq.load(Ordering::Relaxed);
        debug_assert!(s & 1 == 0, "two clocks write one node's metrics");
        m.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        let (now, d) = if close {
            let now = now();
            let d = now.saturating_duration_since(self.last);
            let ns = d.as_nanos() as u64;
            // The only writer: no read-modify-write needed.
            let add = |counter: &AtomicU64, n: u64| {
                counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
            };
            if self.phase == Phase::Busy {
                let busy = m.busy_share(ns, self.level);
                add(&m.busy_ns, busy);
                if busy < ns {
                    add(&m.idle_ns, ns - busy);
                }
            } else {
                add(m.phase_counter(self.phase), ns);
            }
            (now, d)
        } else {
            (self.last, Duration::ZERO)
        };
        let (open, level) = next.map_or((CLOSED, 0), |(phase, level)| {
            let since = now.saturating_duration_since(m.epoch).as_nanos() as u64;
            (((phase as u64) << 62) | (since & SINCE_MASK), level)
        });
        m.open.store(open, Ordering::Relaxed);
        m.open_level.store(level, Ordering::Relaxed);
        m.seq.store(s.wrapping_add(2), Ordering::Release);
        (now, d)
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        self.publish(true, None);
    }
}
