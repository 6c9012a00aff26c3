//! The commit frontier of a graph's Kafka sources, for `/status`,
//! `/metrics`, the status page and the live view.
//!
//! Per partition: how far it was fetched (the next offset to hand out),
//! finished (every record before it finished) and committed; its lag (the
//! high watermark minus the committed offset); the oldest unfinished record,
//! which holds the commits back, and how long ago it was handed out; the
//! window (records handed out from that record on) against its limit; and
//! whether the partition is paused, and why. Per process: commits,
//! assignments, revocations and pauses, as counters.
//!
//! A [`Frontier`] also keeps each partition's recent lag and commit rate
//! (a [`History`]: one point every [`HISTORY_EVERY`], the last
//! [`HISTORY_LEN`]), which the page draws as small charts.
//!
//! ```no_run
//! use sluicegate_kafka_io::{KafkaConfig, KafkaSource};
//! use sluicegate_runner::frontier::Frontier;
//!
//! let source = KafkaSource::new(KafkaConfig::new("127.0.0.1:9092"), "group", ["orders"]);
//! let frontier = Frontier::new([source.handle()]);
//! // ... once the graph runs:
//! for p in frontier.partitions() {
//!     println!("{}/{}: committed {:?}, held back by {:?}", p.state.topic, p.state.partition, p.state.committed, p.state.oldest_unfinished);
//! }
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluicegate_kafka_io::{KafkaSourceHandle, PartitionLag, PauseReason, SourceStats};

/// How often a [`Frontier`] records a point of each partition's history.
pub const HISTORY_EVERY: Duration = Duration::from_secs(5);

/// How many points of history a [`Frontier`] keeps per partition (with
/// [`HISTORY_EVERY`], the last five minutes).
pub const HISTORY_LEN: usize = 60;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The counters of a process's Kafka sources, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Records handed to the graph.
    pub records: u64,
    /// Offset commits that succeeded.
    pub commits: u64,
    /// Offset commits that failed.
    pub commit_failures: u64,
    /// Partition assignments received.
    pub assignments: u64,
    /// Revocations handled.
    pub revocations: u64,
    /// Pauses of every partition because the graph was full.
    pub graph_full_pauses: u64,
    /// Pauses of one partition because its window reached the limit.
    pub window_pauses: u64,
}

impl Counters {
    /// One source's counters.
    pub fn of(stats: &SourceStats) -> Counters {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            records: get(&stats.records),
            commits: get(&stats.commits),
            commit_failures: get(&stats.commit_failures),
            assignments: get(&stats.assignments),
            revocations: get(&stats.revocations),
            graph_full_pauses: get(&stats.pauses),
            window_pauses: get(&stats.window_pauses),
        }
    }

    fn add(&mut self, o: Counters) {
        self.records += o.records;
        self.commits += o.commits;
        self.commit_failures += o.commit_failures;
        self.assignments += o.assignments;
        self.revocations += o.revocations;
        self.graph_full_pauses += o.graph_full_pauses;
        self.window_pauses += o.window_pauses;
    }
}

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

/// The Kafka sources of a graph, seen together: their partitions' commit
/// frontier, their counters, and each partition's recent history. Cheap to
/// clone (clones share everything).
#[derive(Clone)]
pub struct Frontier {
    inner: Arc<Inner>,
}

struct Inner {
    sources: Vec<KafkaSourceHandle>,
    history: Mutex<History>,
}

impl std::fmt::Debug for Frontier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontier")
            .field("sources", &self.inner.sources.len())
            .field("history", &*lock(&self.inner.history))
            .finish()
    }
}

impl Frontier {
    /// The frontier of `sources`, keeping a point of history every
    /// [`HISTORY_EVERY`], [`HISTORY_LEN`] points per partition.
    pub fn new(sources: impl IntoIterator<Item = KafkaSourceHandle>) -> Self {
        Frontier::with_history(sources, HISTORY_EVERY, HISTORY_LEN)
    }

    /// The frontier of `sources`, keeping a point of history every `every`,
    /// `len` points per partition.
    pub fn with_history(
        sources: impl IntoIterator<Item = KafkaSourceHandle>,
        every: Duration,
        len: usize,
    ) -> Self {
        Frontier {
            inner: Arc::new(Inner {
                sources: sources.into_iter().collect(),
                history: Mutex::new(History::new(every, len)),
            }),
        }
    }

    /// Every partition the sources own, by topic and partition (a partition
    /// listed by two sources at once, in the moment it moves between them,
    /// is shown once).
    pub fn partitions(&self) -> Vec<PartitionLag> {
        let mut all: Vec<PartitionLag> = self
            .inner
            .sources
            .iter()
            .flat_map(KafkaSourceHandle::partitions)
            .collect();
        all.sort_by(|a, b| {
            (&a.state.topic, a.state.partition).cmp(&(&b.state.topic, b.state.partition))
        });
        all.dedup_by(|a, b| {
            a.state.topic == b.state.topic && a.state.partition == b.state.partition
        });
        all
    }

    /// The sources' counters, summed.
    pub fn counters(&self) -> Counters {
        let mut sum = Counters::default();
        for s in &self.inner.sources {
            sum.add(Counters::of(s.stats()));
        }
        sum
    }

    /// Records a point of history if one is due (the status server's
    /// sampler calls this; `/status` does too).
    pub fn sample(&self) {
        let partitions = self.partitions();
        lock(&self.inner.history).record(Instant::now(), &partitions);
    }

    /// The JSON `/status` shows under `kafka`:
    ///
    /// ```text
    /// {
    ///   "partitions": [ { PartitionLag's fields, and
    ///                     "trend": { "t": [..], "lag": [..], "committed_per_s": [..] } } ],
    ///   "counters": { "records": 0, "commits": 0, "commit_failures": 0, "assignments": 0,
    ///                 "revocations": 0, "graph_full_pauses": 0, "window_pauses": 0 },
    ///   "trend_every_s": 5.0
    /// }
    /// ```
    pub fn status(&self) -> Value {
        let partitions = self.partitions();
        let mut history = lock(&self.inner.history);
        history.record(Instant::now(), &partitions);
        let rows: Vec<Value> = partitions
            .iter()
            .map(|p| {
                let mut row = serde_json::to_value(p).unwrap_or(Value::Null);
                if let Value::Object(fields) = &mut row {
                    let trend = history.trend(&p.state.topic, p.state.partition);
                    fields.insert(
                        "trend".into(),
                        serde_json::to_value(trend).unwrap_or(Value::Null),
                    );
                }
                row
            })
            .collect();
        let every = history.every().as_secs_f64();
        drop(history);
        json!({
            "partitions": rows,
            "counters": self.counters(),
            "trend_every_s": every,
        })
    }

    /// The Prometheus text for `/metrics` (see [`prometheus`]).
    pub fn prometheus(&self, graph: &str) -> String {
        prometheus(graph, &self.partitions(), &self.counters())
    }
}

/// Prometheus text (format 0.0.4) for the commit frontier of `partitions`
/// and the `counters`, labelled with `graph`:
///
/// | series | type | labels |
/// |--------|------|--------|
/// | `sluicegate_kafka_partition_fetched_offset` | gauge | `topic`, `partition` |
/// | `sluicegate_kafka_partition_finished_offset` | gauge | |
/// | `sluicegate_kafka_partition_committed_offset` | gauge | |
/// | `sluicegate_kafka_partition_high_watermark` | gauge | |
/// | `sluicegate_kafka_partition_lag` | gauge | |
/// | `sluicegate_kafka_partition_oldest_unfinished_offset` | gauge | |
/// | `sluicegate_kafka_partition_oldest_unfinished_age_seconds` | gauge (0 when nothing is unfinished) | |
/// | `sluicegate_kafka_partition_in_flight` | gauge | |
/// | `sluicegate_kafka_partition_window_records` | gauge | |
/// | `sluicegate_kafka_partition_window_limit` | gauge | |
/// | `sluicegate_kafka_partition_paused` | gauge, 0 or 1 | `reason`: `graph_full`, `window` |
/// | `sluicegate_kafka_partition_window_pauses_total` | counter (since assigned) | |
/// | `sluicegate_kafka_records_total`, `_commits_total`, `_commit_failures_total`, `_assignments_total`, `_revocations_total` | counter | `graph` only |
/// | `sluicegate_kafka_pauses_total` | counter | `reason`: `graph_full`, `window` |
///
/// An offset not known yet (nothing committed, no high watermark read) has
/// no sample.
pub fn prometheus(graph: &str, partitions: &[PartitionLag], counters: &Counters) -> String {
    let mut out = String::new();
    let g = escape_label(graph);
    type Get = fn(&PartitionLag) -> Option<f64>;
    let gauges: [(&str, &str, Get); 10] = [
        (
            "fetched_offset",
            "One past the highest offset handed to the graph.",
            |p| p.state.next.map(|o| o as f64),
        ),
        (
            "finished_offset",
            "Every record before this offset is finished (the offset that could be committed now).",
            |p| p.state.committable.map(|o| o as f64),
        ),
        (
            "committed_offset",
            "The offset last committed: where a restart reads from.",
            |p| p.state.committed.map(|o| o as f64),
        ),
        (
            "high_watermark",
            "The partition's high watermark at the last check.",
            |p| p.high_watermark.map(|o| o as f64),
        ),
        (
            "lag",
            "Records between the committed offset and the high watermark.",
            |p| p.lag.map(|o| o as f64),
        ),
        (
            "oldest_unfinished_offset",
            "The first record handed out and not finished: what holds the commits back.",
            |p| p.state.oldest_unfinished.map(|o| o as f64),
        ),
        (
            "oldest_unfinished_age_seconds",
            "How long ago the oldest unfinished record was handed out (0 when none).",
            |p| {
                Some(
                    p.state
                        .oldest_unfinished_age
                        .map_or(0.0, |a| a.as_secs_f64()),
                )
            },
        ),
        ("in_flight", "Records handed out and not resolved.", |p| {
            Some(p.state.in_flight as f64)
        }),
        (
            "window_records",
            "Records handed out from the oldest unfinished one on.",
            |p| Some(p.state.window as f64),
        ),
        (
            "window_limit",
            "The window past which the partition is paused.",
            |p| Some(p.window_limit as f64),
        ),
    ];
    let labels = |p: &PartitionLag| {
        format!(
            "graph=\"{g}\",topic=\"{}\",partition=\"{}\"",
            escape_label(&p.state.topic),
            p.state.partition
        )
    };
    for (name, help, get) in gauges {
        let _ = writeln!(out, "# HELP sluicegate_kafka_partition_{name} {help}");
        let _ = writeln!(out, "# TYPE sluicegate_kafka_partition_{name} gauge");
        for p in partitions {
            if let Some(v) = get(p) {
                let _ = writeln!(
                    out,
                    "sluicegate_kafka_partition_{name}{{{}}} {v}",
                    labels(p)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP sluicegate_kafka_partition_paused Whether the partition is paused (not fetched), by reason."
    );
    let _ = writeln!(out, "# TYPE sluicegate_kafka_partition_paused gauge");
    for p in partitions {
        let (full, window) = match p.paused {
            None => (false, false),
            Some(PauseReason::GraphFull) => (true, false),
            Some(PauseReason::Window) => (false, true),
            Some(PauseReason::GraphFullAndWindow) => (true, true),
        };
        for (reason, on) in [("graph_full", full), ("window", window)] {
            let _ = writeln!(
                out,
                "sluicegate_kafka_partition_paused{{{},reason=\"{reason}\"}} {}",
                labels(p),
                u8::from(on)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP sluicegate_kafka_partition_window_pauses_total Times the window limit paused the partition since it was assigned."
    );
    let _ = writeln!(
        out,
        "# TYPE sluicegate_kafka_partition_window_pauses_total counter"
    );
    for p in partitions {
        let _ = writeln!(
            out,
            "sluicegate_kafka_partition_window_pauses_total{{{}}} {}",
            labels(p),
            p.state.window_pauses
        );
    }
    let totals: [(&str, &str, u64); 5] = [
        ("records", "Records handed to the graph.", counters.records),
        (
            "commits",
            "Offset commits that succeeded.",
            counters.commits,
        ),
        (
            "commit_failures",
            "Offset commits that failed (retried at the next one).",
            counters.commit_failures,
        ),
        (
            "assignments",
            "Partition assignments received.",
            counters.assignments,
        ),
        (
            "revocations",
            "Partition revocations handled.",
            counters.revocations,
        ),
    ];
    for (name, help, value) in totals {
        let _ = writeln!(out, "# HELP sluicegate_kafka_{name}_total {help}");
        let _ = writeln!(out, "# TYPE sluicegate_kafka_{name}_total counter");
        let _ = writeln!(
            out,
            "sluicegate_kafka_{name}_total{{graph=\"{g}\"}} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP sluicegate_kafka_pauses_total Pauses: of every partition on a full graph, of one partition on a full window."
    );
    let _ = writeln!(out, "# TYPE sluicegate_kafka_pauses_total counter");
    for (reason, value) in [
        ("graph_full", counters.graph_full_pauses),
        ("window", counters.window_pauses),
    ] {
        let _ = writeln!(
            out,
            "sluicegate_kafka_pauses_total{{graph=\"{g}\",reason=\"{reason}\"}} {value}"
        );
    }
    out
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
