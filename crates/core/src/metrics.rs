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

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::mailbox::MailboxStats;

/// Upper bounds of the latency buckets, in microseconds (powers of four up to
/// about 4.5 minutes); the last bucket is unbounded.
const BUCKETS_US: [u64; 14] = [
    1,
    4,
    16,
    64,
    256,
    1_024,
    4_096,
    16_384,
    65_536,
    262_144,
    1_048_576,
    4_194_304,
    16_777_216,
    268_435_456,
];

/// A fixed-bucket latency histogram of atomics.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS_US.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn record(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let idx = BUCKETS_US.partition_point(|&b| b < us);
        self.counts[idx].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Records `n` observations that took `total` together (each `total / n`).
    pub fn record_n(&self, total: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let each = total / u32::try_from(n).unwrap_or(u32::MAX);
        let us = each.as_micros() as u64;
        let idx = BUCKETS_US.partition_point(|&b| b < us);
        self.counts[idx].fetch_add(n, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(total.as_nanos() as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds_us: BUCKETS_US.to_vec(),
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

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
    first_in: AtomicU64,
    /// When the node last handed items on (delivered them, for a sink), in
    /// nanoseconds since `epoch` plus one; 0 before that.
    last_out: AtomicU64,
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
    open: AtomicU64,
    /// Of a busy open phase, the items in flight (at most `concurrency`):
    /// that share of it is busy, the rest idle. Written under `seq`.
    open_level: AtomicU64,
    /// Sequence lock over the time counters and `open`: odd while the node's
    /// one [`Clock`] writes them, so a reader can take a consistent cut.
    seq: AtomicU64,
    epoch: Instant,
    /// The highest busy, blocked and idle values handed out, so reported
    /// time never goes backwards (a Prometheus counter that drops reads as a
    /// reset).
    reported: [AtomicU64; 3],
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

    fn phase_counter(&self, phase: Phase) -> &AtomicU64 {
        match phase {
            Phase::Busy => &self.busy_ns,
            Phase::Blocked => &self.blocked_ns,
            Phase::Idle => &self.idle_ns,
        }
    }

    /// The items this node may have in flight at once (at least 1).
    fn limit(&self) -> u64 {
        self.concurrency.max(1) as u64
    }

    /// Of `ns` spent busy with `level` items in flight, the busy share; the
    /// rest is idle.
    fn busy_share(&self, ns: u64, level: u64) -> u64 {
        let limit = self.limit();
        if level >= limit {
            ns
        } else {
            (u128::from(ns) * u128::from(level) / u128::from(limit)) as u64
        }
    }

    fn since_epoch(&self, at: Instant) -> u64 {
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
    fn stamp_since(&self, stamp: &AtomicU64, started: Instant) -> Option<u64> {
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
    fn time_ns(&self) -> [u64; 3] {
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
const CLOSED: u64 = u64::MAX;
const SINCE_MASK: u64 = (1 << 62) - 1;

fn unpack(open: u64) -> Option<(Phase, u64)> {
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
    metrics: Arc<StageMetrics>,
    last: Instant,
    phase: Phase,
    level: u64,
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
    fn publish(&self, close: bool, next: Option<(Phase, u64)>) -> (Instant, Duration) {
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

/// The registry of a graph's metrics.
#[derive(Debug)]
pub struct Metrics {
    graph: String,
    started: Mutex<Instant>,
    stages: Mutex<Vec<Arc<StageMetrics>>>,
    mailboxes: Mutex<Vec<(Arc<MailboxStats>, Vec<String>)>>,
}

impl Metrics {
    pub(crate) fn new(graph: &str) -> Self {
        Metrics {
            graph: graph.to_string(),
            started: Mutex::new(now()),
            stages: Mutex::new(Vec::new()),
            mailboxes: Mutex::new(Vec::new()),
        }
    }

    /// Restarts the uptime clock (when the graph starts).
    pub(crate) fn mark_started(&self) {
        *self.started.lock().unwrap_or_else(|e| e.into_inner()) = now();
    }

    pub(crate) fn register_stage(&self, m: Arc<StageMetrics>) {
        self.stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(m);
    }

    pub(crate) fn register_mailbox(&self, stats: Arc<MailboxStats>, from: Vec<String>) {
        self.mailboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((stats, from));
    }

    /// A consistent-enough copy of every counter (each value is read
    /// atomically; the set is not one atomic cut).
    pub fn snapshot(&self) -> Snapshot {
        let started = *self.started.lock().unwrap_or_else(|e| e.into_inner());
        let stages = self
            .stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|m| {
                let [busy_ns, blocked_ns, idle_ns] = m.time_ns();
                StageSnapshot {
                    name: m.name.to_string(),
                    kind: m.kind,
                    concurrency: m.concurrency,
                    items_in: m.items_in.load(Ordering::Relaxed),
                    items_out: m.items_out.load(Ordering::Relaxed),
                    filtered: m.filtered.load(Ordering::Relaxed),
                    failed: m.failed.load(Ordering::Relaxed),
                    panics: m.panics.load(Ordering::Relaxed),
                    abandoned: m.abandoned.load(Ordering::Relaxed),
                    busy_ns,
                    blocked_ns,
                    idle_ns,
                    latency: m.latency.snapshot(),
                    first_in_ns: m.stamp_since(&m.first_in, started),
                    last_out_ns: m.stamp_since(&m.last_out, started),
                }
            })
            .collect();
        let mailboxes = self
            .mailboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(s, from)| MailboxSnapshot {
                stage: s.stage.to_string(),
                from: from.clone(),
                capacity: s.capacity,
                depth: s.depth.load(Ordering::Relaxed),
                peak_depth: s.peak_depth.load(Ordering::Relaxed),
                max_bytes: s.max_bytes,
                bytes: s.bytes.load(Ordering::Relaxed),
                overflow: s.overflow,
                accepted: s.accepted.load(Ordering::Relaxed),
                dropped: s.dropped.load(Ordering::Relaxed),
            })
            .collect();
        Snapshot {
            graph: self.graph.clone(),
            uptime_ns: now().saturating_duration_since(started).as_nanos() as u64,
            stages,
            mailboxes,
        }
    }
}

/// Latency histogram counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramSnapshot {
    /// Upper bounds of the buckets in microseconds; one more bucket (+Inf) follows.
    pub bounds_us: Vec<u64>,
    /// Observations per bucket (not cumulative), `bounds_us.len() + 1` entries.
    pub counts: Vec<u64>,
    /// Sum of all observations in nanoseconds.
    pub sum_ns: u64,
}

impl HistogramSnapshot {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper bound (µs) of the bucket holding quantile `q` (0..=1);
    /// `None` when empty or in the unbounded bucket.
    pub fn quantile_upper_us(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return self.bounds_us.get(i).copied();
            }
        }
        None
    }
}

/// One node's counters at a moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSnapshot {
    /// The node's name.
    pub name: String,
    /// Source, stage, sink or dead-letter.
    pub kind: NodeKind,
    /// Maximum items processed at once.
    pub concurrency: usize,
    /// Envelopes taken in (created, for a source).
    pub items_in: u64,
    /// Envelopes emitted (delivered, for a sink).
    pub items_out: u64,
    /// Inputs for which nothing was emitted.
    pub filtered: u64,
    /// Inputs that failed (errors and panics).
    pub failed: u64,
    /// Of the failed, panics.
    pub panics: u64,
    /// Items abandoned at a forced shutdown.
    pub abandoned: u64,
    /// Nanoseconds spent processing.
    pub busy_ns: u64,
    /// Nanoseconds spent waiting for room downstream.
    pub blocked_ns: u64,
    /// Nanoseconds spent waiting for input.
    pub idle_ns: u64,
    /// Processing latency per item (per batch, for batch stages).
    pub latency: HistogramSnapshot,
    /// When the node first took an item in (emitted one, for a source), in
    /// nanoseconds since the graph started; `None` before.
    #[serde(default)]
    pub first_in_ns: Option<u64>,
    /// When the node last handed items on (delivered them, for a sink), in
    /// nanoseconds since the graph started; `None` before. Not kept for
    /// sources.
    #[serde(default)]
    pub last_out_ns: Option<u64>,
}

impl StageSnapshot {
    /// Busy, blocked and idle as fractions of their sum, over the period since
    /// `before` (or since the start, without it).
    pub fn time_split(&self, before: Option<&StageSnapshot>) -> (f64, f64, f64) {
        let (b0, k0, i0) = before.map_or((0, 0, 0), |p| (p.busy_ns, p.blocked_ns, p.idle_ns));
        let busy = self.busy_ns.saturating_sub(b0) as f64;
        let blocked = self.blocked_ns.saturating_sub(k0) as f64;
        let idle = self.idle_ns.saturating_sub(i0) as f64;
        let total = busy + blocked + idle;
        if total <= 0.0 {
            (0.0, 0.0, 0.0)
        } else {
            (busy / total, blocked / total, idle / total)
        }
    }
}

/// One mailbox at a moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxSnapshot {
    /// The stage this mailbox feeds.
    pub stage: String,
    /// The nodes that send into it.
    pub from: Vec<String>,
    /// Capacity in items.
    pub capacity: usize,
    /// Items waiting plus items in progress.
    pub depth: usize,
    /// The highest depth seen.
    pub peak_depth: usize,
    /// Byte budget, if any.
    pub max_bytes: Option<usize>,
    /// Bytes waiting plus in progress (0 without a weigher).
    pub bytes: usize,
    /// The overflow policy.
    pub overflow: crate::mailbox::Overflow,
    /// Envelopes queued (not counting those the policy dropped on arrival).
    pub accepted: u64,
    /// Envelopes dropped by the overflow policy.
    pub dropped: u64,
}

impl MailboxSnapshot {
    /// Depth over capacity, 0..=1.
    pub fn fill(&self) -> f64 {
        self.depth as f64 / self.capacity.max(1) as f64
    }
}

/// Every counter of a graph at a moment; serializable for a status page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The graph's name.
    pub graph: String,
    /// Nanoseconds since the graph started (or was built, before it starts).
    pub uptime_ns: u64,
    /// Per node.
    pub stages: Vec<StageSnapshot>,
    /// Per mailbox.
    pub mailboxes: Vec<MailboxSnapshot>,
}

/// The stage that limits throughput, as found by [`Snapshot::bottleneck`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bottleneck {
    /// The stage's name.
    pub stage: String,
    /// Its busy fraction over the period (utilisation, for a stage with a
    /// concurrency above one).
    pub busy: f64,
    /// Its blocked fraction over the period.
    pub blocked: f64,
}

/// A stage blocked more than this fraction of its time is waiting on
/// something downstream, so it is not the bottleneck; a stage whose
/// upstream is blocked more than this is holding that upstream back.
const BLOCKED_LIMIT: f64 = 0.1;

impl Snapshot {
    /// A node by name.
    pub fn stage(&self, name: &str) -> Option<&StageSnapshot> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The mailbox feeding a stage.
    pub fn mailbox(&self, stage: &str) -> Option<&MailboxSnapshot> {
        self.mailboxes.iter().find(|m| m.stage == stage)
    }

    /// The bottleneck over the period since `before` (or since the start):
    /// the stage that is saturated while the stage before it is blocked on
    /// it.
    ///
    /// A candidate is a stage (sources excluded: a source is never the
    /// bottleneck of the pipeline it feeds) that did some work and is
    /// blocked less than 10% of the period (a stage waiting on its
    /// downstream is not what holds the pipeline back). Of the candidates
    /// whose upstream (a node sending into their mailbox) was blocked 10%
    /// of the period or more, the busiest is the bottleneck; busy is
    /// utilisation for a stage with a concurrency above one (see the
    /// [module docs](self)). When no candidate holds its upstream back (the
    /// pipeline keeps up with its input), the busiest candidate is named.
    /// `None` when no stage did any work in the period.
    pub fn bottleneck(&self, before: Option<&Snapshot>) -> Option<Bottleneck> {
        let split = |s: &StageSnapshot| s.time_split(before.and_then(|b| b.stage(&s.name)));
        let holds_back = |stage: &str| {
            self.mailbox(stage).is_some_and(|m| {
                m.from
                    .iter()
                    .any(|up| self.stage(up).is_some_and(|u| split(u).1 >= BLOCKED_LIMIT))
            })
        };
        let candidates: Vec<(Bottleneck, bool)> = self
            .stages
            .iter()
            .filter(|s| s.kind != NodeKind::Source)
            .filter_map(|s| {
                let (busy, blocked, _) = split(s);
                (busy > 0.0 && blocked < BLOCKED_LIMIT).then(|| {
                    let b = Bottleneck {
                        stage: s.name.clone(),
                        busy,
                        blocked,
                    };
                    (b, holds_back(&s.name))
                })
            })
            .collect();
        let busiest = |pressed_only: bool| {
            candidates
                .iter()
                .filter(|(_, pressed)| *pressed || !pressed_only)
                .max_by(|a, b| a.0.busy.total_cmp(&b.0.busy))
                .map(|(b, _)| b.clone())
        };
        busiest(true).or_else(|| busiest(false))
    }

    /// When the graph did its work: from the first item a source emitted to
    /// the last time any node handed items on (delivered them, for a sink),
    /// in nanoseconds since the graph started. `None` until a source has
    /// emitted and some node has handed an item on. A run's throughput over
    /// this period leaves out the start (a Kafka consumer joining its group,
    /// say) and the time after the last item.
    pub fn active_ns(&self) -> Option<(u64, u64)> {
        let first = self
            .stages
            .iter()
            .filter(|s| s.kind == NodeKind::Source)
            .filter_map(|s| s.first_in_ns)
            .min()?;
        let last = self.stages.iter().filter_map(|s| s.last_out_ns).max()?;
        Some((first, last.max(first)))
    }

    /// Renders the snapshot in the Prometheus text exposition format.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let g = escape(&self.graph);
        let stage_counters: [StageCounter; 6] = [
            ("items_in", "Envelopes taken in by the node.", |s| {
                s.items_in
            }),
            ("items_out", "Envelopes emitted by the node.", |s| {
                s.items_out
            }),
            (
                "items_filtered",
                "Inputs for which the node emitted nothing.",
                |s| s.filtered,
            ),
            (
                "items_failed",
                "Inputs that failed with an error or panic.",
                |s| s.failed,
            ),
            ("items_panicked", "Inputs whose processing panicked.", |s| {
                s.panics
            }),
            (
                "items_abandoned",
                "Items abandoned at a forced shutdown.",
                |s| s.abandoned,
            ),
        ];
        for (name, help, get) in stage_counters {
            let _ = writeln!(out, "# HELP sluicegate_stage_{name}_total {help}");
            let _ = writeln!(out, "# TYPE sluicegate_stage_{name}_total counter");
            for s in &self.stages {
                let _ = writeln!(
                    out,
                    "sluicegate_stage_{name}_total{{graph=\"{g}\",stage=\"{}\"}} {}",
                    escape(&s.name),
                    get(s)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP sluicegate_stage_seconds_total Time per state: busy, blocked (downstream full), idle (no input)."
        );
        let _ = writeln!(out, "# TYPE sluicegate_stage_seconds_total counter");
        for s in &self.stages {
            for (state, ns) in [
                ("busy", s.busy_ns),
                ("blocked", s.blocked_ns),
                ("idle", s.idle_ns),
            ] {
                let _ = writeln!(
                    out,
                    "sluicegate_stage_seconds_total{{graph=\"{g}\",stage=\"{}\",state=\"{state}\"}} {}",
                    escape(&s.name),
                    ns as f64 / 1e9
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP sluicegate_stage_latency_seconds Processing time per item (per batch for batch stages)."
        );
        let _ = writeln!(out, "# TYPE sluicegate_stage_latency_seconds histogram");
        for s in &self.stages {
            let name = escape(&s.name);
            let mut cumulative = 0;
            for (i, c) in s.latency.counts.iter().enumerate() {
                cumulative += c;
                let le = s
                    .latency
                    .bounds_us
                    .get(i)
                    .map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
                let _ = writeln!(
                    out,
                    "sluicegate_stage_latency_seconds_bucket{{graph=\"{g}\",stage=\"{name}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "sluicegate_stage_latency_seconds_sum{{graph=\"{g}\",stage=\"{name}\"}} {}",
                s.latency.sum_ns as f64 / 1e9
            );
            let _ = writeln!(
                out,
                "sluicegate_stage_latency_seconds_count{{graph=\"{g}\",stage=\"{name}\"}} {cumulative}"
            );
        }
        let gauges: [MailboxGauge; 4] = [
            (
                "depth",
                "gauge",
                "Items waiting in or being processed from the mailbox.",
                |m| m.depth as f64,
            ),
            ("capacity", "gauge", "Mailbox capacity in items.", |m| {
                m.capacity as f64
            }),
            ("peak_depth", "gauge", "Highest mailbox depth seen.", |m| {
                m.peak_depth as f64
            }),
            (
                "bytes",
                "gauge",
                "Bytes waiting in or being processed from the mailbox.",
                |m| m.bytes as f64,
            ),
        ];
        for (name, ty, help, get) in gauges {
            let _ = writeln!(out, "# HELP sluicegate_mailbox_{name} {help}");
            let _ = writeln!(out, "# TYPE sluicegate_mailbox_{name} {ty}");
            for m in &self.mailboxes {
                let _ = writeln!(
                    out,
                    "sluicegate_mailbox_{name}{{graph=\"{g}\",stage=\"{}\"}} {}",
                    escape(&m.stage),
                    get(m)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP sluicegate_mailbox_dropped_total Envelopes dropped by the mailbox's overflow policy."
        );
        let _ = writeln!(out, "# TYPE sluicegate_mailbox_dropped_total counter");
        for m in &self.mailboxes {
            let _ = writeln!(
                out,
                "sluicegate_mailbox_dropped_total{{graph=\"{g}\",stage=\"{}\",policy=\"{:?}\"}} {}",
                escape(&m.stage),
                m.overflow,
                m.dropped
            );
        }
        out
    }
}

/// A stage counter to render: name, help, accessor.
type StageCounter = (&'static str, &'static str, fn(&StageSnapshot) -> u64);
/// A mailbox gauge to render: name, type, help, accessor.
type MailboxGauge = (
    &'static str,
    &'static str,
    &'static str,
    fn(&MailboxSnapshot) -> f64,
);

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

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
