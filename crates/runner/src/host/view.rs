//! The live terminal view: a compact table on stderr, redrawn in place every
//! second.
//!
//! ```text
//! reference  up 0:02:13  window 1.0s  bottleneck: store (busy 97%, blocked 0%)
//! stage      rec/s  mailbox                   busy  blocked  idle
//! kafka       1520  -                           4%      93%    3%
//! decode      1520  [##########]   1024/1024    2%      96%    2%
//! store       1519  [#####.....]    512/1024   97%       0%    3%  <- bottleneck
//!
//! kafka  commits 42  assignments 1  revocations 0  pauses: graph full 0, window 1
//! partition  fetched  finished  committed  lag  oldest unfinished  window     paused
//! orders/0     20000      7310       7310  12690  7310 (1m05s)      10000/10000  window
//! orders/1     19874     19870      19850     30  19870 (12ms)      4/10000    -
//! ```
//!
//! With the graph's Kafka sources ([`Frontier`]), a second table shows each
//! partition's commit frontier ([`render_frontier`]): how far it was
//! fetched, finished and committed, its lag, the oldest unfinished record
//! and how long ago it was handed out, the window against its limit, and
//! why it is paused.
//!
//! [`render`] draws one frame from snapshots (pure, so it is tested with
//! fixed snapshots); [`spawn`] redraws it on a timer until shutdown, and
//! stays quiet when stderr is not a terminal.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::Arc;
use std::time::Duration;

use sluicegate_core::Snapshot;
use sluicegate_core::{Bottleneck, Metrics};
use sluicegate_kafka_io::PartitionLag;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::host::frontier::{Counters, Frontier};
use crate::host::rate::{Period, StageFigures};

/// Cells in a mailbox bar.
const BAR: usize = 10;
/// Stage names are padded to at least this many characters.
const MIN_NAME: usize = 5;
/// Longer stage names are cut (with `…`) to this many characters, so a row
/// with the bottleneck marker fits 100 columns.
const MAX_NAME: usize = 20;
/// The width used when the terminal's cannot be read.
const DEFAULT_WIDTH: usize = 100;
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

/// The lines, each trimmed at the end, cut to `width` characters (no cut
/// when `width` is 0) and ended with `\n`.
fn fit(lines: Vec<String>, width: usize) -> String {
    let mut out = String::new();
    for line in lines {
        let line = line.trim_end();
        if width > 0 && line.chars().count() > width {
            out.extend(line.chars().take(width));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
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

/// The width to draw at: the terminal's, less one column (so a full line
/// never wraps), or [`DEFAULT_WIDTH`].
fn terminal_width() -> usize {
    terminal_size::terminal_size_of(std::io::stderr()).map_or(DEFAULT_WIDTH, |(w, _)| {
        usize::from(w.0).saturating_sub(1).max(20)
    })
}

/// Spawns the refresher: draws a frame on stderr every `every` (the first
/// at once, with rates since the start; then over the last period), moving
/// the cursor back up to redraw in place, until `shutdown` is cancelled;
/// then draws a last frame and ends, leaving it on screen. With a
/// `frontier`, each frame ends with its table ([`render_frontier`]).
///
/// Does nothing (the task ends at once) when stderr is not a terminal,
/// unless `force` is true. Log lines written to stderr meanwhile break the
/// redraw, so the caller routes logs elsewhere while the view runs.
///
/// # Panics
///
/// When called outside a Tokio runtime.
pub fn spawn(
    metrics: Arc<Metrics>,
    frontier: Option<Frontier>,
    every: Duration,
    force: bool,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let enabled = force || std::io::stderr().is_terminal();
    tokio::spawn(async move {
        if !enabled {
            return;
        }
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut before: Option<Snapshot> = None;
        loop {
            let last = tokio::select! {
                () = shutdown.cancelled() => true,
                _ = tick.tick() => false,
            };
            let now = metrics.snapshot();
            let width = terminal_width();
            let mut frame = render(&now, before.as_ref(), width);
            if let Some(f) = &frontier {
                frame.push('\n');
                frame.push_str(&render_frontier(&f.partitions(), &f.counters(), width));
            }
            draw(&frame);
            before = Some(now);
            if last {
                break;
            }
        }
    })
}

/// Lines of the frame on screen now (0 when a log line was written over
/// it). Held while writing, so frames and log lines never interleave.
static DRAWN: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

/// Writes `frame` over the previous one.
fn draw(frame: &str) {
    let mut drawn = DRAWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let previous = *drawn;
    let mut buf = String::with_capacity(frame.len() + 64);
    if previous > 0 {
        let _ = write!(buf, "\x1b[{previous}A\r");
    }
    let mut height = 0;
    for line in frame.lines() {
        buf.push_str(line);
        buf.push_str("\x1b[K\n");
        height += 1;
    }
    buf.push_str("\x1b[J");
    let mut err = std::io::stderr().lock();
    // A closed stderr is not worth failing the pipeline over.
    let _ = err.write_all(buf.as_bytes());
    let _ = err.flush();
    *drawn = height;
}

/// A `tracing_subscriber` writer for stderr that shares the screen with the
/// live view: before a log line it erases the frame, which the next refresh
/// draws again below the log. Use it whenever the live view may be on.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut drawn = DRAWN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut err = std::io::stderr().lock();
        if *drawn > 0 {
            write!(err, "\x1b[{}A\r\x1b[J", *drawn)?;
            *drawn = 0;
        }
        err.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
