//! The commit frontier as Prometheus text: [`prometheus`].

use std::fmt::Write as _;

use sluicegate_kafka_io::{PartitionLag, PauseReason};

use super::Counters;
use crate::host::exposition::{escape_label, family};

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
        family(
            &mut out,
            &format!("sluicegate_kafka_partition_{name}"),
            "gauge",
            help,
        );
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
    family(
        &mut out,
        "sluicegate_kafka_partition_paused",
        "gauge",
        "Whether the partition is paused (not fetched), by reason.",
    );
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
    family(
        &mut out,
        "sluicegate_kafka_partition_window_pauses_total",
        "counter",
        "Times the window limit paused the partition since it was assigned.",
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
        family(
            &mut out,
            &format!("sluicegate_kafka_{name}_total"),
            "counter",
            help,
        );
        let _ = writeln!(
            out,
            "sluicegate_kafka_{name}_total{{graph=\"{g}\"}} {value}"
        );
    }
    family(
        &mut out,
        "sluicegate_kafka_pauses_total",
        "counter",
        "Pauses: of every partition on a full graph, of one partition on a full window.",
    );
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
