//! One partition's window: the records handed out from its first
//! unfinished offset on, and where each stands.

use std::collections::VecDeque;
use std::time::Instant;

use super::Finish;

/// Where a record handed out stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Handed out, no outcome yet.
    InFlight,
    /// Delivered, dropped on purpose or dead-lettered.
    Finished,
    /// Resolved without finishing (failed, abandoned, leaked): not in
    /// flight, and the commit stops here.
    Unfinished,
}

/// One record of a partition's window.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) offset: i64,
    pub(super) state: State,
    /// When it was handed out.
    pub(super) since: Instant,
    /// For a record fanned out to several parts, once one reported: the
    /// fewest parts seen left, and whether one ended unfinished.
    pub(super) parts: Option<(usize, bool)>,
}

/// Offsets in the window of one partition, in the order handed out.
#[derive(Debug, Default, Clone)]
pub(super) struct Partition {
    /// Offsets strictly increasing; the front is never finished.
    pub(super) window: VecDeque<Entry>,
    /// Entries of `window` in flight.
    pub(super) in_flight: usize,
    /// One past the highest offset handed out, once any was.
    pub(super) next: Option<i64>,
    /// The last offset committed (or known committed).
    pub(super) committed: Option<i64>,
    /// The first offset whose record failed without being finished.
    pub(super) failed: Option<i64>,
    /// Paused because the window reached its limit.
    pub(super) window_paused: bool,
    /// Times the window paused this partition since it was assigned.
    pub(super) window_pauses: u64,
}

impl Partition {
    /// The offset safe to commit now (first unfinished, else next).
    pub(super) fn committable(&self) -> Option<i64> {
        match self.window.front() {
            Some(e) => Some(e.offset),
            None => self.next,
        }
    }

    pub(super) fn pop_finished(&mut self) {
        while self
            .window
            .front()
            .is_some_and(|e| e.state == State::Finished)
        {
            self.window.pop_front();
        }
    }

    /// Moves the entry at `offset` from in flight to `to`.
    pub(super) fn resolve(&mut self, offset: i64, to: State) -> Finish {
        match self.window.binary_search_by_key(&offset, |e| e.offset) {
            Ok(i) if self.window[i].state == State::InFlight => {
                self.window[i].state = to;
                self.in_flight -= 1;
                self.pop_finished();
                Finish::Done
            }
            _ => Finish::Unknown,
        }
    }
}
