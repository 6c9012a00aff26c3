//! Per-stage and per-mailbox metrics, snapshots, Prometheus text and the
//! bottleneck finder.
//!
//! Every counter is a relaxed atomic updated by the stage's own task (once
//! per batch where it can), so metrics stay on in production. Time is split
//! three ways, as Flink does: *busy* (processing), *blocked* (waiting for room
//! downstream) and *idle* (waiting for input). Each node also publishes the
//! phase it is in and since when, so a snapshot counts the phase still open:
//! a stage stuck for minutes on one call shows as busy for those minutes, not
//! as doing nothing.
//!
//! # Stages with a concurrency above one
//!
//! Busy is utilisation: while such a stage waits for its items in flight,
//! each moment counts as busy in the share `in flight / concurrency` and as
//! idle in the rest, so a sink allowed 1,024 deliveries at once with 81 in
//! flight is 8% busy, not busy because at least one is. The time its own
//! task spends between waits (taking input, starting items, settling
//! results) counts as fully busy: meanwhile it can take nothing more.
//!
//! # The clock
//!
//! Time is read from Tokio's clock ([`tokio::time::Instant`]), which is the
//! system's monotonic clock except in a runtime whose time is paused (tests
//! with `start_paused`): there a stage sleeping 10 ms per item is busy for
//! those virtual milliseconds, so splits and bottlenecks are deterministic.
//!
//! One concept a file: `histogram`, `stage` (a node's live counters),
//! `clock` (its phase, published without locks), `registry` ([`Metrics`]),
//! `snapshot` ([`Snapshot`], the bottleneck, the active period) and
//! `prometheus` (the text format).

mod clock;
mod histogram;
mod prometheus;
mod registry;
mod snapshot;
mod stage;

pub(crate) use clock::{Clock, Phase};
pub use histogram::Histogram;
pub use prometheus::PrometheusCollector;
pub use registry::Metrics;
pub use snapshot::{Bottleneck, HistogramSnapshot, MailboxSnapshot, Snapshot, StageSnapshot};
pub use stage::{NodeKind, StageMetrics};

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use super::clock::*;
    use super::stage::*;

    /// A phase a snapshot has seen open keeps that time when the node
    /// switches phase: counting it again under the new phase would report
    /// more time than has passed, for good (reported values never go back).
    #[test]
    fn a_switch_after_a_snapshot_counts_the_open_time_once() {
        let m = Arc::new(StageMetrics::new("s".into(), NodeKind::Stage, 1));
        let started = Instant::now();
        let mut clock = Clock::start(m.clone(), Phase::Idle);
        // An open phase long enough that counting it twice cannot hide in
        // the time between the reads below.
        while started.elapsed() < Duration::from_millis(5) {
            std::hint::spin_loop();
        }
        let seen = m.time_ns();
        assert!(seen[Phase::Idle as usize] > 0, "{seen:?}");
        clock.switch(Phase::Busy);
        let after = m.time_ns();
        let wall = started.elapsed().as_nanos() as u64;
        assert!(
            after.iter().sum::<u64>() <= wall,
            "{seen:?} then {after:?}: more than the {wall} ns that passed"
        );
        drop(clock);
    }

    /// A reader racing the one writer sees every counter grow monotonically
    /// and never more time in all than has passed: the open phase is never
    /// counted twice.
    #[test]
    fn snapshots_racing_the_clock_are_consistent_and_monotonic() {
        let m = Arc::new(StageMetrics::new("s".into(), NodeKind::Stage, 1));
        let started = Instant::now();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (m, done) = (m.clone(), done.clone());
            std::thread::spawn(move || {
                let mut clock = Clock::start(m, Phase::Idle);
                let phases = [Phase::Idle, Phase::Busy, Phase::Blocked];
                for i in 0..200_000 {
                    clock.lap(phases[i % 3], phases[(i + 1) % 3]);
                    if i % 1_000 == 0 {
                        clock.switch(Phase::Busy);
                        clock.switch(phases[(i + 1) % 3]);
                    }
                }
                done.store(true, Ordering::SeqCst);
            })
        };
        let mut last = [0u64; 3];
        let mut reads = 0u64;
        while !done.load(Ordering::SeqCst) {
            let t = m.time_ns();
            let wall = started.elapsed().as_nanos() as u64;
            assert!(
                t.iter().zip(&last).all(|(a, b)| a >= b),
                "{last:?} then {t:?}"
            );
            assert!(
                t.iter().sum::<u64>() <= wall,
                "{t:?} is more than {wall} ns"
            );
            last = t;
            reads += 1;
        }
        writer.join().expect("writer");
        assert!(reads > 0);
        // The clock is dropped: every phase closed, nothing open is added.
        assert_eq!(m.time_ns(), m.time_ns());
    }
}
