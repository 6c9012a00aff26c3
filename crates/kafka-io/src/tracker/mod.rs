//! Per-partition offset tracking: which offsets were handed out, which are
//! finished, and the offset that is safe to commit.
//!
//! Records finish in any order (stages run concurrently); the tracker
//! commits only the contiguous finished prefix: the commit offset is the
//! first unfinished offset handed out, or one past the last handed out when
//! all are finished. Offsets never handed out (compacted away, transaction
//! markers) are not waited for.
//!
//! # The window
//!
//! A partition's window is what it handed out from its first unfinished
//! offset on: that record, and everything after it, finished or not. Its
//! memory is one entry per record in the window. The tracker bounds it with
//! a limit the source sets ([`OffsetTracker::pause_if_full`],
//! [`OffsetTracker::resumable`]): a partition whose window reaches the limit
//! is paused, and resumed once the window is below three quarters of it
//! (Confluent's Parallel Consumer pauses at 75% of its offset map).
//!
//! # Records that end without finishing
//!
//! A record can resolve without finishing: it failed with nowhere to go,
//! was abandoned, or its acknowledgement leaked. [`OffsetTracker::fail`] and
//! [`OffsetTracker::give_up`] record that: the record is no longer in
//! flight (nothing waits for it) but stays unfinished, so the commit never
//! passes it.

mod partition;
mod state;
mod window;

use std::collections::BTreeMap;
use std::time::Instant;

use partition::{Entry, Partition, State};
pub use state::PartitionState;

/// The offset tracker of one consumer. Not thread-safe by itself; the source
/// keeps it behind a lock.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: BTreeMap<(String, i32), Partition>,
    /// Partitions with `window_paused` set.
    window_paused: usize,
}

/// What finishing (or failing) an offset did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Marked finished (or failed).
    Done,
    /// The partition is not tracked (revoked since); ignored.
    Untracked,
    /// The offset was not handed out (taken back since), or was resolved
    /// before (a bug upstream).
    Unknown,
}

impl OffsetTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        OffsetTracker::default()
    }

    /// Records that `offset` of `topic`/`partition` is handed out now. Returns
    /// false, tracking nothing, when the offset is at or below one already
    /// handed out on that partition (librdkafka fetched it again, e.g. after
    /// a position reset): that record is in flight or finished already, so
    /// the caller must not hand it out twice.
    pub fn track(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        self.track_at(topic, partition, offset, Instant::now())
    }

    /// [`OffsetTracker::track`], handed out at `at`.
    pub fn track_at(&mut self, topic: &str, partition: i32, offset: i64, at: Instant) -> bool {
        let p = self
            .partitions
            .entry((topic.to_string(), partition))
            .or_default();
        if p.next.is_some_and(|n| offset < n) {
            return false;
        }
        p.window.push_back(Entry {
            offset,
            state: State::InFlight,
            since: at,
            parts: None,
        });
        p.in_flight += 1;
        p.next = Some(offset + 1);
        true
    }

    /// Marks `offset` finished (delivered, dropped on purpose or dead-lettered).
    pub fn finish(&mut self, topic: &str, partition: i32, offset: i64) -> Finish {
        match self.partitions.get_mut(&(topic.to_string(), partition)) {
            Some(p) => p.resolve(offset, State::Finished),
            None => Finish::Untracked,
        }
    }

    /// Records that `offset` failed without being finished: it is no longer
    /// in flight, the partition's commit cannot pass it, and it is reported
    /// by [`OffsetTracker::first_failure`].
    pub fn fail(&mut self, topic: &str, partition: i32, offset: i64) -> Finish {
        let Some(p) = self.partitions.get_mut(&(topic.to_string(), partition)) else {
            return Finish::Untracked;
        };
        let done = p.resolve(offset, State::Unfinished);
        if done == Finish::Done && p.failed.is_none_or(|f| offset < f) {
            p.failed = Some(offset);
        }
        done
    }

    /// Records that `offset` ended without finishing and without a failure
    /// to report (abandoned at a forced shutdown): it is no longer in
    /// flight, and the partition's commit cannot pass it.
    pub fn give_up(&mut self, topic: &str, partition: i32, offset: i64) -> Finish {
        match self.partitions.get_mut(&(topic.to_string(), partition)) {
            Some(p) => p.resolve(offset, State::Unfinished),
            None => Finish::Untracked,
        }
    }

    /// The first failed record, if any: (topic, partition, offset).
    pub fn first_failure(&self) -> Option<(String, i32, i64)> {
        self.partitions
            .iter()
            .find_map(|((t, p), s)| s.failed.map(|o| (t.clone(), *p, o)))
    }

    /// Offsets to commit: for each partition whose committable offset moved
    /// past the last commit. Call [`OffsetTracker::committed`] once the
    /// commit succeeded.
    pub fn to_commit(&self) -> Vec<(String, i32, i64)> {
        self.partitions
            .iter()
            .filter_map(|((t, p), s)| {
                let c = s.committable()?;
                (s.committed != Some(c)).then(|| (t.clone(), *p, c))
            })
            .collect()
    }

    /// Offsets to commit if the records at `finishing` were finished too:
    /// for each tracked partition, the first offset neither finished nor in
    /// `finishing` (one past the last handed out when there is none), where
    /// that moved past the last commit.
    ///
    /// This is what a transaction commits along with its outputs: the
    /// records it produced count as finished exactly when it commits.
    /// Entries of `finishing` for partitions not tracked are ignored.
    pub fn to_commit_with(
        &self,
        finishing: &BTreeMap<(String, i32), BTreeMap<i64, usize>>,
    ) -> Vec<(String, i32, i64)> {
        static NONE: BTreeMap<i64, usize> = BTreeMap::new();
        self.partitions
            .iter()
            .filter_map(|(key, s)| {
                let extra = finishing.get(key).unwrap_or(&NONE);
                let c = s
                    .window
                    .iter()
                    .find(|e| match e.state {
                        State::Finished => false,
                        State::Unfinished => true,
                        // In the batch, and every other part of it finished.
                        State::InFlight => !extra.get(&e.offset).is_some_and(|held| {
                            e.parts
                                .is_none_or(|(left, unfinished)| !unfinished && left <= *held)
                        }),
                    })
                    .map(|e| e.offset)
                    .or(s.next)?;
                (s.committed != Some(c)).then(|| (key.0.clone(), key.1, c))
            })
            .collect()
    }

    /// Notes where a record fanned out to several parts stands (see
    /// [`AckReceiver::on_parts`](sluicegate_core::AckReceiver::on_parts)):
    /// `left` parts unresolved, and whether one ended unfinished. Reports
    /// racing from several threads keep the fewest parts left.
    pub fn parts(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        left: usize,
        unfinished: bool,
    ) {
        let Some(p) = self.partitions.get_mut(&(topic.to_string(), partition)) else {
            return;
        };
        if let Ok(i) = p.window.binary_search_by_key(&offset, |e| e.offset) {
            let e = &mut p.window[i];
            e.parts = Some(match e.parts {
                Some((l, u)) => (l.min(left), u || unfinished),
                None => (left, unfinished),
            });
        }
    }

    /// Whether `topic`/`partition` is tracked (owned by this consumer).
    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        self.partitions
            .contains_key(&(topic.to_string(), partition))
    }

    /// Offsets to commit for the given partitions only (on revoke).
    pub fn to_commit_for(&self, parts: &[(String, i32)]) -> Vec<(String, i32, i64)> {
        self.to_commit()
            .into_iter()
            .filter(|(t, p, _)| parts.iter().any(|(pt, pp)| pt == t && pp == p))
            .collect()
    }

    /// Notes a successful commit.
    pub fn committed(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&(topic.to_string(), partition)) {
            if p.committed.is_none_or(|c| offset > c) {
                p.committed = Some(offset);
            }
        }
    }

    /// Takes back offsets `from` and above of a partition: they were never
    /// handed to the graph (held while it was full), so they will be read
    /// again. The commit can then go up to `from`, and no further.
    pub fn rewind(&mut self, topic: &str, partition: i32, from: i64) {
        if let Some(p) = self.partitions.get_mut(&(topic.to_string(), partition)) {
            while p.window.back().is_some_and(|e| e.offset >= from) {
                if let Some(e) = p.window.pop_back() {
                    if e.state == State::InFlight {
                        p.in_flight -= 1;
                    }
                }
            }
            if p.next.is_some_and(|n| n > from) {
                p.next = Some(from);
            }
        }
    }

    /// Records handed out and not resolved, for the given partitions (or all).
    pub fn in_flight(&self, parts: Option<&[(String, i32)]>) -> usize {
        self.partitions
            .iter()
            .filter(|(k, _)| parts.is_none_or(|ps| ps.iter().any(|(t, p)| &k.0 == t && k.1 == *p)))
            .map(|(_, s)| s.in_flight)
            .sum()
    }

    /// Starts tracking newly assigned partitions (nothing handed out yet), so
    /// they are owned and listed before their first record.
    pub fn assign(&mut self, parts: &[(String, i32)]) {
        for key in parts {
            self.partitions.entry(key.clone()).or_default();
        }
    }

    /// Forgets partitions no longer owned (their window pause with them).
    pub fn remove(&mut self, parts: &[(String, i32)]) {
        for key in parts {
            if let Some(p) = self.partitions.remove(key) {
                if p.window_paused {
                    self.window_paused -= 1;
                }
            }
        }
    }

    /// Every tracked partition's state.
    pub fn states(&self) -> Vec<PartitionState> {
        self.states_at(Instant::now())
    }

    /// Every tracked partition's state, with ages as of `now`.
    pub fn states_at(&self, now: Instant) -> Vec<PartitionState> {
        self.partitions
            .iter()
            .map(|((t, p), s)| {
                let oldest = s.window.front();
                PartitionState {
                    topic: t.clone(),
                    partition: *p,
                    committed: s.committed,
                    committable: s.committable(),
                    in_flight: s.in_flight,
                    next: s.next,
                    window: s.window.len(),
                    oldest_unfinished: oldest.map(|e| e.offset),
                    oldest_unfinished_age: oldest.map(|e| now.saturating_duration_since(e.since)),
                    window_paused: s.window_paused,
                    window_pauses: s.window_pauses,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
