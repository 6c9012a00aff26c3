//! The Prometheus text exposition format.

use std::fmt::Write as _;

use super::snapshot::{MailboxSnapshot, Snapshot, StageSnapshot};

impl Snapshot {
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
pub(super) type StageCounter = (&'static str, &'static str, fn(&StageSnapshot) -> u64);
/// A mailbox gauge to render: name, type, help, accessor.
pub(super) type MailboxGauge = (
    &'static str,
    &'static str,
    &'static str,
    fn(&MailboxSnapshot) -> f64,
);

pub(super) fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
