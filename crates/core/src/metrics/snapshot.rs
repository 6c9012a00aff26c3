//! Snapshots of the metrics, the bottleneck and the active period.

use serde::{Deserialize, Serialize};

use super::stage::NodeKind;

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
pub(super) const BLOCKED_LIMIT: f64 = 0.1;

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
    /// [module docs](crate::metrics)). When no candidate holds its upstream back (the
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
}
