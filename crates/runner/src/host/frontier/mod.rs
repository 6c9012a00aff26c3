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

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluicegate_kafka_io::{KafkaSourceHandle, PartitionLag};

mod counters;
mod history;
mod prometheus;

pub use counters::Counters;
pub use history::{History, Trend};
pub use prometheus::prometheus;

/// How often a [`Frontier`] records a point of each partition's history.
pub const HISTORY_EVERY: Duration = Duration::from_secs(5);

/// How many points of history a [`Frontier`] keeps per partition (with
/// [`HISTORY_EVERY`], the last five minutes).
pub const HISTORY_LEN: usize = 60;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
