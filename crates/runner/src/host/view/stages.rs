//! The stages' table of the live view: [`render`].

use std::fmt::Write as _;

use sluicegate_core::{Bottleneck, Snapshot};

use super::fit;
use crate::host::rate::{Period, StageFigures};

/// Cells in a mailbox bar.
const BAR: usize = 10;
/// Stage names are padded to at least this many characters.
const MIN_NAME: usize = 5;
/// Longer stage names are cut (with `…`) to this many characters, so a row
/// with the bottleneck marker fits 100 columns.
const MAX_NAME: usize = 20;
/// What marks the bottleneck's row.
const MARKER: &str = "  <- bottleneck";

/// Renders one frame: a title line (graph, uptime, the period measured, the
/// bottleneck), a header, and one row per node, in the snapshot's order:
/// name, records taken in per second (created, for a source), the mailbox as
/// a bar with depth/capacity (`-` for a source, which has none), the busy /
/// blocked / idle split (`-` when none of the node's time was accounted in
/// the period), and a marker on the bottleneck ([`Snapshot::bottleneck`]).
///
/// Rates and the split cover the period since `before`, or the whole run
/// without it (or when `before` is not older than `now`). Every line ends
/// with `\n` and is cut to `width` characters (no cut when `width` is 0).
/// The bar shows every cell filled only when the mailbox is full: a partly
/// filled mailbox shows at least one cell and at most nine.
pub fn render(now: &Snapshot, before: Option<&Snapshot>, width: usize) -> String {
    let period = Period::between(now, before);
    let bottleneck = period.bottleneck();
    let name_w = now
        .stages
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(MIN_NAME, MAX_NAME);

    let mut lines = Vec::with_capacity(now.stages.len() + 2);
    lines.push(title(&period, bottleneck.as_ref()));
    lines.push(format!(
        "{:<name_w$}  {:>8}  {:<24}  {:>4}  {:>7}  {:>4}",
        "stage", "rec/s", "mailbox", "busy", "blocked", "idle"
    ));
    for f in period.stages() {
        lines.push(row(now, &f, name_w, bottleneck.as_ref()));
    }
    fit(lines, width)
}

fn title(period: &Period<'_>, bottleneck: Option<&Bottleneck>) -> String {
    let now = period.now();
    let up = now.uptime_ns / 1_000_000_000;
    let mut t = format!(
        "{}  up {}:{:02}:{:02}  ",
        now.graph,
        up / 3600,
        up / 60 % 60,
        up % 60
    );
    if period.is_windowed() {
        let _ = write!(t, "window {:.1}s  ", period.seconds());
    } else {
        t.push_str("since start  ");
    }
    match bottleneck {
        Some(b) => {
            let _ = write!(
                t,
                "bottleneck: {} (busy {}, blocked {})",
                b.stage,
                percent(b.busy),
                percent(b.blocked)
            );
        }
        None => t.push_str("bottleneck: none"),
    }
    t
}

fn row(
    now: &Snapshot,
    f: &StageFigures<'_>,
    name_w: usize,
    bottleneck: Option<&Bottleneck>,
) -> String {
    let rate = f.rate.map_or_else(|| "-".to_string(), format_rate);
    let mailbox = match now.mailbox(f.name()) {
        Some(m) => format!(
            "{} {:>11}",
            bar(m.depth, m.capacity),
            format!("{}/{}", m.depth, m.capacity)
        ),
        None => "-".to_string(),
    };
    let [busy, blocked, idle] = if f.has_split() {
        [percent(f.busy), percent(f.blocked), percent(f.idle)]
    } else {
        ["-".to_string(), "-".to_string(), "-".to_string()]
    };
    let marker = if bottleneck.is_some_and(|b| b.stage == f.name()) {
        MARKER
    } else {
        ""
    };
    format!(
        "{:<name_w$}  {rate:>8}  {mailbox:<24}  {busy:>4}  {blocked:>7}  {idle:>4}{marker}",
        cut(f.name(), name_w)
    )
}

/// `[#####.....]`: all cells only when full; at least one when not empty.
fn bar(depth: usize, capacity: usize) -> String {
    let filled = if depth >= capacity {
        BAR
    } else if depth == 0 {
        0
    } else {
        (depth * BAR).div_ceil(capacity).min(BAR - 1)
    };
    format!("[{}{}]", "#".repeat(filled), ".".repeat(BAR - filled))
}

fn percent(f: f64) -> String {
    format!("{:.0}%", f * 100.0)
}

/// `0.5`, `42`, `9876`, `12.3k`, `4.56M`.
fn format_rate(r: f64) -> String {
    if r < 10.0 {
        format!("{r:.1}")
    } else if r < 10_000.0 {
        format!("{r:.0}")
    } else if r < 1_000_000.0 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{:.2}M", r / 1e6)
    }
}

fn cut(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}
