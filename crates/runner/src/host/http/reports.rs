//! What the board reports: the `/status` JSON, the `/metrics` text and
//! the `/health` answer.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use super::Phase;
use super::board::{StatusBoard, lock};
use crate::host::exposition::{escape_label, family};

impl StatusBoard {
    /// The JSON document `/status` returns:
    ///
    /// ```text
    /// {
    ///   "graph": "reference",            the graph's name
    ///   "phase": "running",              see Phase::name
    ///   "error": null,                   the message of a failed phase
    ///   "uptime_s": 12.5,                seconds since the graph started
    ///   "window_s": 1.2,                 the period rates and split cover
    ///   "snapshot": { ... },             sluicegate_core::Snapshot
    ///   "rates": { "decode": 1520.0 },   records taken in per second, per node
    ///                                    (created, for a source)
    ///   "split": { "decode": { "busy": 0.4, "blocked": 0.0, "idle": 0.6 } },
    ///   "bottleneck": { "stage": "store", "busy": 0.97, "blocked": 0.0 } or null,
    ///   "kafka": { "partitions": [..], "counters": {..}, "trend_every_s": 5.0 } or null,
    ///                                    the commit frontier, see Frontier::status
    ///   "extra": ...                     what set_extra's callback returned, or null
    /// }
    /// ```
    ///
    /// The split counts the phase a node is still in, so a node stuck in one
    /// call for the whole window shows that phase at 100%; it is all zeros
    /// for a node that ended before the window began.
    pub fn status(&self) -> Value {
        let window = self.window();
        let period = window.period();
        let mut rates = Map::new();
        let mut split = Map::new();
        for f in period.stages() {
            rates.insert(f.name().to_string(), json!(f.rate.unwrap_or(0.0)));
            split.insert(
                f.name().to_string(),
                json!({ "busy": f.busy, "blocked": f.blocked, "idle": f.idle }),
            );
        }
        let bottleneck = period.bottleneck();
        let phase = self.phase();
        // Called outside the lock, so the callback may use the board.
        let extra = lock(&self.inner.extra).clone();
        let extra = extra.map_or(Value::Null, |f| f());
        let frontier = lock(&self.inner.frontier).clone();
        let kafka = frontier.map_or(Value::Null, |f| f.status());
        let uptime_s = window.now.uptime_ns as f64 / 1e9;
        let graph = window.now.graph.clone();
        json!({
            "graph": graph,
            "phase": phase.name(),
            "error": phase.error(),
            "uptime_s": uptime_s,
            "window_s": period.seconds(),
            "rates": rates,
            "split": split,
            "bottleneck": bottleneck,
            "kafka": kafka,
            "extra": extra,
            "snapshot": window.now,
        })
    }

    /// The text `/metrics` returns: [`Snapshot::to_prometheus`](sluicegate_core::Snapshot::to_prometheus) followed by
    /// `sluicegate_phase{graph,phase}` (1 for the current phase, 0 for the
    /// others), `sluicegate_uptime_seconds{graph}`, the commit frontier
    /// of the Kafka sources, if any ([`crate::host::frontier::prometheus`]), and
    /// the text of [`set_extra_metrics`](Self::set_extra_metrics), if any.
    pub fn prometheus(&self) -> String {
        let snapshot = self.inner.metrics.snapshot();
        let mut out = snapshot.to_prometheus();
        let g = escape_label(&snapshot.graph);
        let current = self.phase().name();
        family(
            &mut out,
            "sluicegate_phase",
            "gauge",
            "The runner's lifecycle phase (1 for the current one).",
        );
        for name in Phase::NAMES {
            let _ = writeln!(
                out,
                "sluicegate_phase{{graph=\"{g}\",phase=\"{name}\"}} {}",
                u8::from(name == current)
            );
        }
        family(
            &mut out,
            "sluicegate_uptime_seconds",
            "gauge",
            "Seconds since the graph started.",
        );
        let _ = writeln!(
            out,
            "sluicegate_uptime_seconds{{graph=\"{g}\"}} {}",
            snapshot.uptime_ns as f64 / 1e9
        );
        let frontier = lock(&self.inner.frontier).clone();
        if let Some(f) = frontier {
            out.push_str(&f.prometheus(&snapshot.graph));
        }
        // Called outside the lock, like the extra status.
        let extra = lock(&self.inner.extra_metrics).clone();
        if let Some(f) = extra {
            out.push_str(&f(&snapshot.graph));
        }
        out
    }

    /// The JSON `/health` returns, and whether it is healthy (`200`) or not
    /// (`503`).
    pub(super) fn health(&self) -> (bool, Value) {
        let phase = self.phase();
        let healthy = phase.is_healthy();
        (
            healthy,
            json!({
                "status": if healthy { "ok" } else { "unavailable" },
                "phase": phase.name(),
                "error": phase.error(),
            }),
        )
    }
}
