//! Drawing on the terminal: the refresher ([`spawn`]) that redraws a
//! frame in place, and the log writer ([`LogWriter`]) that shares the
//! screen with it.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::Arc;
use std::time::Duration;

use sluicegate_core::{Metrics, Snapshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{render, render_frontier};
use crate::host::frontier::Frontier;

/// The width used when the terminal's cannot be read.
const DEFAULT_WIDTH: usize = 100;
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
