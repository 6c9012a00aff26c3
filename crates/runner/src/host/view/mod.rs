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
//! With the graph's Kafka sources ([`Frontier`](crate::host::frontier::Frontier)), a second table shows each
//! partition's commit frontier ([`render_frontier`]): how far it was
//! fetched, finished and committed, its lag, the oldest unfinished record
//! and how long ago it was handed out, the window against its limit, and
//! why it is paused.
//!
//! [`render`] draws one frame from snapshots (pure, so it is tested with
//! fixed snapshots); [`spawn`] redraws it on a timer until shutdown, and
//! stays quiet when stderr is not a terminal.

mod frontier_table;
mod stages;
mod terminal;

pub use frontier_table::render_frontier;
pub use stages::render;
pub use terminal::{LogWriter, spawn};

/// The lines, each trimmed at the end, cut to `width` characters (no cut
/// when `width` is 0) and ended with `\n`.
pub(super) fn fit(lines: Vec<String>, width: usize) -> String {
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
