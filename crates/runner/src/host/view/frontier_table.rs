//! The commit frontier's table of the live view: [`render_frontier`].

use std::fmt::Write as _;
use std::time::Duration;

use sluicegate_kafka_io::PartitionLag;

use super::fit;
use crate::host::frontier::Counters;

/// Renders the commit frontier: a line of counters, a header, and one row
/// per partition: `topic/partition`, the fetched, finished and committed
/// offsets, the lag, the oldest unfinished offset with how long ago it was
/// handed out, the window against its limit, and why the partition is
/// paused (`-` when it is not). Unknown values show as `-`. Columns are as
/// wide as their widest value; every line ends with `\n` and is cut to
/// `width` characters (no cut when `width` is 0).
pub fn render_frontier(partitions: &[PartitionLag], counters: &Counters, width: usize) -> String {
    let offset = |o: Option<i64>| o.map_or_else(|| "-".to_string(), |o| o.to_string());
    let header = [
        "partition",
        "fetched",
        "finished",
        "committed",
        "lag",
        "oldest unfinished",
        "window",
        "paused",
    ];
    let mut rows: Vec<[String; 8]> = vec![header.map(str::to_string)];
    for p in partitions {
        let s = &p.state;
        let oldest = match (s.oldest_unfinished, s.oldest_unfinished_age) {
            (Some(o), Some(age)) => format!("{o} ({})", format_age(age)),
            (Some(o), None) => o.to_string(),
            _ => "-".to_string(),
        };
        rows.push([
            format!("{}/{}", s.topic, s.partition),
            offset(s.next),
            offset(s.committable),
            offset(s.committed),
            offset(p.lag),
            oldest,
            format!("{}/{}", s.window, p.window_limit),
            p.paused.map_or("-", |r| r.describe()).to_string(),
        ]);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut lines = vec![format!(
        "kafka  commits {}  assignments {}  revocations {}  pauses: graph full {}, window {}",
        counters.commits,
        counters.assignments,
        counters.revocations,
        counters.graph_full_pauses,
        counters.window_pauses
    )];
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            // Names and text left, numbers right.
            if matches!(i, 0 | 5 | 6 | 7) {
                let _ = write!(line, "{cell:<w$}");
            } else {
                let _ = write!(line, "{cell:>w$}");
            }
        }
        lines.push(line);
    }
    fit(lines, width)
}

/// `850ms`, `12.3s`, `4m05s`, `2h13m`.
fn format_age(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = d.as_secs() / 60;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}
