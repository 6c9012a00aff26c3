//! Prometheus exposition through `prometheus-client`: a [`Collector`] that
//! reads the graphs' metrics at each scrape, so a service registers
//! sluicegate's metrics in the registry it already has and serves them with
//! its own exporter. [`Snapshot::to_prometheus`] is the same encoding of one
//! snapshot, as text (the runner's `/metrics`).

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::registry::Metrics;
use super::snapshot::{MailboxSnapshot, Snapshot, StageSnapshot};

/// Reads one or more graphs' [`Metrics`] into a `prometheus-client`
/// registry at scrape time: nothing is copied or counted twice on the hot
/// path, and the busy/blocked/idle clock is exported as it is kept.
///
/// Register one collector for all the graphs of a process (families are
/// named once; a second collector would repeat their descriptions):
///
/// ```
/// use prometheus_client::registry::Registry;
/// use sluicegate_core::{Graph, metrics::PrometheusCollector};
///
/// let ingest = Graph::builder("ingest");
/// let export = Graph::builder("export");
/// let mut registry = Registry::default(); // the service's own registry
/// registry.register_collector(Box::new(
///     PrometheusCollector::new(ingest.metrics()).with(export.metrics()),
/// ));
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains("# TYPE sluicegate_stage_items_in counter"));
/// ```
///
/// Families (labels `graph` and `stage`, plus the ones named):
/// `sluicegate_stage_items_{in,out,filtered,failed,panicked,abandoned}_total`,
/// `sluicegate_stage_seconds_total{state="busy|blocked|idle"}`,
/// `sluicegate_stage_latency_seconds` (histogram),
/// `sluicegate_mailbox_{depth,capacity,peak_depth,bytes}` (gauges),
/// `sluicegate_mailbox_dropped_total{policy}`.
#[derive(Clone, Debug)]
pub struct PrometheusCollector {
    graphs: Vec<Arc<Metrics>>,
}

impl PrometheusCollector {
    /// A collector for one graph's metrics.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            graphs: vec![metrics],
        }
    }

    /// Adds another graph's metrics to the same families.
    #[must_use]
    pub fn with(mut self, metrics: Arc<Metrics>) -> Self {
        self.graphs.push(metrics);
        self
    }
}

impl Collector for PrometheusCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let snapshots: Vec<Snapshot> = self.graphs.iter().map(|m| m.snapshot()).collect();
        encode(&snapshots, encoder)
    }
}

/// One snapshot, fixed: what [`Snapshot::to_prometheus`] encodes.
#[derive(Debug)]
struct Fixed(Snapshot);

impl Collector for Fixed {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        encode(std::slice::from_ref(&self.0), encoder)
    }
}

impl Snapshot {
    /// Renders the snapshot in the Prometheus text exposition format (the
    /// families of [`PrometheusCollector`], without OpenMetrics' `# EOF`, so
    /// more families can follow).
    pub fn to_prometheus(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(self.clone())));
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &registry)
            .expect("writing to a String does not fail");
        out
    }
}

/// A stage counter: name (before `_total`), help, accessor.
type StageCounter = (&'static str, &'static str, fn(&StageSnapshot) -> u64);
/// A mailbox gauge: name, help, accessor.
type MailboxGauge = (&'static str, &'static str, fn(&MailboxSnapshot) -> u64);

const STAGE_COUNTERS: [StageCounter; 6] = [
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

const MAILBOX_GAUGES: [MailboxGauge; 4] = [
    (
        "depth",
        "Items waiting in or being processed from the mailbox.",
        |m| m.depth as u64,
    ),
    ("capacity", "Mailbox capacity in items.", |m| {
        m.capacity as u64
    }),
    ("peak_depth", "Highest mailbox depth seen.", |m| {
        m.peak_depth as u64
    }),
    (
        "bytes",
        "Bytes waiting in or being processed from the mailbox.",
        |m| m.bytes as u64,
    ),
];

fn labels<'a>(graph: &'a str, stage: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![("graph", graph), ("stage", stage)]
}

/// Every family, each with the samples of every snapshot's graph.
fn encode(snapshots: &[Snapshot], mut encoder: DescriptorEncoder) -> fmt::Result {
    let stages = || {
        snapshots
            .iter()
            .flat_map(|snap| snap.stages.iter().map(move |s| (snap.graph.as_str(), s)))
    };
    let mailboxes = || {
        snapshots
            .iter()
            .flat_map(|snap| snap.mailboxes.iter().map(move |m| (snap.graph.as_str(), m)))
    };
    for (name, help, get) in STAGE_COUNTERS {
        let name = format!("sluicegate_stage_{name}");
        let mut family = encoder.encode_descriptor(&name, help, None, MetricType::Counter)?;
        for (graph, s) in stages() {
            let labels = labels(graph, &s.name);
            ConstCounter::new(get(s)).encode(family.encode_family(&labels)?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "sluicegate_stage_seconds",
        "Time per state: busy, blocked (downstream full), idle (no input).",
        None,
        MetricType::Counter,
    )?;
    for (graph, s) in stages() {
        for (state, ns) in [
            ("busy", s.busy_ns),
            ("blocked", s.blocked_ns),
            ("idle", s.idle_ns),
        ] {
            let mut labels = labels(graph, &s.name);
            labels.push(("state", state));
            ConstCounter::new(ns as f64 / 1e9).encode(family.encode_family(&labels)?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "sluicegate_stage_latency_seconds",
        "Processing time per item (per batch for batch stages).",
        None,
        MetricType::Histogram,
    )?;
    for (graph, s) in stages() {
        let buckets: Vec<(f64, u64)> = s
            .latency
            .counts
            .iter()
            .enumerate()
            .map(|(i, count)| {
                let upper = s
                    .latency
                    .bounds_us
                    .get(i)
                    .map_or(f64::INFINITY, |us| *us as f64 / 1e6);
                (upper, *count)
            })
            .collect();
        let labels = labels(graph, &s.name);
        family
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(
                s.latency.sum_ns as f64 / 1e9,
                s.latency.count(),
                &buckets,
                None,
            )?;
    }
    for (name, help, get) in MAILBOX_GAUGES {
        let name = format!("sluicegate_mailbox_{name}");
        let mut family = encoder.encode_descriptor(&name, help, None, MetricType::Gauge)?;
        for (graph, m) in mailboxes() {
            let labels = labels(graph, &m.stage);
            ConstGauge::new(get(m)).encode(family.encode_family(&labels)?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "sluicegate_mailbox_dropped",
        "Envelopes dropped by the mailbox's overflow policy.",
        None,
        MetricType::Counter,
    )?;
    for (graph, m) in mailboxes() {
        let policy = format!("{:?}", m.overflow);
        let mut labels = labels(graph, &m.stage);
        labels.push(("policy", &policy));
        ConstCounter::new(m.dropped).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}
