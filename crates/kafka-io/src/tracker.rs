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

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Where a record handed out stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
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
struct Entry {
    offset: i64,
    state: State,
    /// When it was handed out.
    since: Instant,
    /// For a record fanned out to several parts, once one reported: the
    /// fewest parts seen left, and whether one ended unfinished.
    parts: Option<(usize, bool)>,
}

/// Offsets in the window of one partition, in the order handed out.
#[derive(Debug, Default, Clone)]
struct Partition {
    /// Offsets strictly increasing; the front is never finished.
    window: VecDeque<Entry>,
    /// Entries of `window` in flight.
    in_flight: usize,
    /// One past the highest offset handed out, once any was.
    next: Option<i64>,
    /// The last offset committed (or known committed).
    committed: Option<i64>,
    /// The first offset whose record failed without being finished.
    failed: Option<i64>,
    /// Paused because the window reached its limit.
    window_paused: bool,
    /// Times the window paused this partition since it was assigned.
    window_pauses: u64,
}

impl Partition {
    /// The offset safe to commit now (first unfinished, else next).
    fn committable(&self) -> Option<i64> {
        match self.window.front() {
            Some(e) => Some(e.offset),
            None => self.next,
        }
    }

    fn pop_finished(&mut self) {
        while self
            .window
            .front()
            .is_some_and(|e| e.state == State::Finished)
        {
            self.window.pop_front();
        }
    }

    /// Moves the entry at `offset` from in flight to `to`.
    fn resolve(&mut self, offset: i64, to: State) -> Finish {
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

/// Where a partition stands, for metrics and status pages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionState {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset last committed (the next to consume after a restart).
    pub committed: Option<i64>,
    /// The offset that could be committed now: every record before it is
    /// finished (the finished frontier).
    pub committable: Option<i64>,
    /// Records handed out and not resolved yet.
    pub in_flight: usize,
    /// One past the highest offset handed out (the fetched frontier).
    pub next: Option<i64>,
    /// Records in the window: handed out from the first unfinished offset on.
    pub window: usize,
    /// The first record handed out and not finished (in flight, or ended
    /// without finishing): what holds the commits back.
    pub oldest_unfinished: Option<i64>,
    /// How long ago that record was handed out.
    #[serde(rename = "oldest_unfinished_age_s", serialize_with = "seconds")]
    pub oldest_unfinished_age: Option<Duration>,
    /// Whether the window limit paused the partition.
    pub window_paused: bool,
    /// Times the window limit paused the partition since it was assigned.
    pub window_pauses: u64,
}

fn seconds<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

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

    /// The size of a partition's window (0 when it is not tracked).
    pub fn window(&self, topic: &str, partition: i32) -> usize {
        self.partitions
            .get(&(topic.to_string(), partition))
            .map_or(0, |p| p.window.len())
    }

    /// Marks `topic`/`partition` paused by its window when the window holds
    /// `limit` records or more and it is not paused yet; returns whether it
    /// just did (the caller then pauses the partition's fetching).
    pub fn pause_if_full(&mut self, topic: &str, partition: i32, limit: usize) -> bool {
        let Some(p) = self.partitions.get_mut(&(topic.to_string(), partition)) else {
            return false;
        };
        if p.window_paused || p.window.len() < limit.max(1) {
            return false;
        }
        p.window_paused = true;
        p.window_pauses += 1;
        self.window_paused += 1;
        true
    }

    /// The partitions paused by their window whose window is now below three
    /// quarters of `limit`: marked resumed, and returned for the caller to
    /// resume their fetching.
    pub fn resumable(&mut self, limit: usize) -> Vec<(String, i32)> {
        if self.window_paused == 0 {
            return Vec::new();
        }
        let limit = limit.max(1);
        let mut out = Vec::new();
        for (key, p) in &mut self.partitions {
            if p.window_paused && p.window.len() * 4 < limit * 3 {
                p.window_paused = false;
                out.push(key.clone());
            }
        }
        self.window_paused -= out.len();
        out
    }

    /// Whether the window limit paused `topic`/`partition`.
    pub fn is_window_paused(&self, topic: &str, partition: i32) -> bool {
        self.partitions
            .get(&(topic.to_string(), partition))
            .is_some_and(|p| p.window_paused)
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commits_only_the_contiguous_prefix() {
        let mut t = OffsetTracker::new();
        for o in 10..15 {
            t.track("t", 0, o);
        }
        assert_eq!(t.to_commit(), vec![("t".into(), 0, 10)]);
        assert_eq!(t.finish("t", 0, 12), Finish::Done);
        assert_eq!(t.finish("t", 0, 11), Finish::Done);
        assert_eq!(t.to_commit(), vec![("t".into(), 0, 10)], "10 is unfinished");
        assert_eq!(t.finish("t", 0, 10), Finish::Done);
        assert_eq!(t.to_commit(), vec![("t".into(), 0, 13)]);
        t.committed("t", 0, 13);
        assert!(t.to_commit().is_empty());
        t.finish("t", 0, 13);
        t.finish("t", 0, 14);
        assert_eq!(t.to_commit(), vec![("t".into(), 0, 15)]);
        assert_eq!(t.finish("t", 0, 14), Finish::Unknown, "finished twice");
        assert_eq!(t.finish("t", 9, 1), Finish::Untracked);
    }

    #[test]
    fn gaps_are_not_waited_for() {
        let mut t = OffsetTracker::new();
        t.track("t", 0, 5);
        t.track("t", 0, 9);
        t.finish("t", 0, 9);
        assert_eq!(t.to_commit(), vec![("t".into(), 0, 5)]);
        t.finish("t", 0, 5);
        assert_eq!(t.to_commit(), vec![("t".into(), 0, 10)]);
    }

    #[test]
    fn offsets_handed_out_again_are_skipped() {
        let mut t = OffsetTracker::new();
        assert!(t.track("t", 0, 5));
        assert!(t.track("t", 0, 6));
        assert!(!t.track("t", 0, 6), "the same offset again");
        assert!(!t.track("t", 0, 3), "an offset below the last one");
        assert_eq!(t.in_flight(None), 2);
        assert!(t.track("t", 0, 8), "a gap ahead is fine");
        // Held records taken back may be read again.
        t.rewind("t", 0, 6);
        assert!(t.track("t", 0, 6));
        assert_eq!(t.states()[0].next, Some(7));
    }

    #[test]
    fn a_transaction_commits_as_if_its_records_were_finished() {
        let mut t = OffsetTracker::new();
        for o in 0..6 {
            t.track("t", 0, o);
        }
        t.track("t", 1, 0);
        t.finish("t", 0, 0);
        t.finish("t", 0, 3); // e.g. filtered: finished without the sink
        let batch = |offsets: &[i64]| {
            let mut m = BTreeMap::new();
            m.insert(
                ("t".to_string(), 0),
                offsets.iter().map(|o| (*o, 1)).collect(),
            );
            m
        };
        // 1 and 2 in the batch, 3 finished, 4 not: the commit stops at 4.
        assert_eq!(
            t.to_commit_with(&batch(&[1, 2])),
            vec![("t".into(), 0, 4), ("t".into(), 1, 0)]
        );
        // 1 missing: the commit cannot pass it, whatever the batch holds.
        assert_eq!(
            t.to_commit_with(&batch(&[2, 4, 5])),
            vec![("t".into(), 0, 1), ("t".into(), 1, 0)]
        );
        // Everything: one past the last.
        assert_eq!(
            t.to_commit_with(&batch(&[1, 2, 4, 5]))[0],
            ("t".into(), 0, 6)
        );
        // Nothing changed in the tracker itself.
        assert_eq!(t.states()[0].committable, Some(1));
        t.committed("t", 1, 0);
        assert_eq!(t.to_commit_with(&BTreeMap::new()), vec![("t".into(), 0, 1)]);
        assert!(t.owns("t", 1));
        assert!(!t.owns("t", 2));
    }

    /// A record fanned out to two branches is finishing with a batch only
    /// once its other part finished, and never when one ended unfinished.
    #[test]
    fn a_record_in_the_batch_counts_only_once_its_other_parts_finished() {
        let mut t = OffsetTracker::new();
        for o in 0..3 {
            t.track("t", 0, o);
        }
        let batch = |offsets: &[(i64, usize)]| {
            let mut m = BTreeMap::new();
            m.insert(("t".to_string(), 0), offsets.iter().copied().collect());
            m
        };
        let all = batch(&[(0, 1), (1, 1), (2, 1)]);
        // 1 was split in two, neither part resolved: the batch holds one.
        t.parts("t", 0, 1, 2, false);
        assert_eq!(t.to_commit_with(&all), vec![("t".into(), 0, 1)]);
        // Holding both parts (a flat_map into one batch) is enough.
        assert_eq!(
            t.to_commit_with(&batch(&[(0, 1), (1, 2), (2, 1)])),
            vec![("t".into(), 0, 3)]
        );
        // The other part finished: one left, the batch's own.
        t.parts("t", 0, 1, 1, false);
        assert_eq!(t.to_commit_with(&all), vec![("t".into(), 0, 3)]);
        // A late report of two left does not undo it.
        t.parts("t", 0, 1, 2, false);
        assert_eq!(t.to_commit_with(&all), vec![("t".into(), 0, 3)]);
        // 2's other part failed: the record will not finish.
        t.parts("t", 0, 2, 1, true);
        assert_eq!(t.to_commit_with(&all), vec![("t".into(), 0, 2)]);
        // A record that ended unfinished is never finishing.
        t.fail("t", 0, 0);
        assert_eq!(t.to_commit_with(&all), vec![("t".into(), 0, 0)]);
    }

    #[test]
    fn a_record_that_ends_unfinished_holds_the_commit_but_is_not_in_flight() {
        let mut t = OffsetTracker::new();
        for o in 0..5 {
            t.track("t", 0, o);
        }
        assert_eq!(t.finish("t", 0, 0), Finish::Done);
        assert_eq!(t.fail("t", 0, 3), Finish::Done);
        assert_eq!(t.give_up("t", 0, 1), Finish::Done);
        assert_eq!(t.in_flight(None), 2, "2 and 4 only");
        assert_eq!(t.first_failure(), Some(("t".into(), 0, 3)));
        for o in [2, 4] {
            t.finish("t", 0, o);
        }
        assert_eq!(t.in_flight(None), 0);
        assert_eq!(t.to_commit(), vec![("t".into(), 0, 1)], "stops at 1");
        assert_eq!(t.states()[0].oldest_unfinished, Some(1));
        assert_eq!(t.window("t", 0), 4, "1 to 4");
        // Resolved once: a later outcome for the same record changes nothing.
        assert_eq!(t.finish("t", 0, 1), Finish::Unknown);
        assert_eq!(t.fail("t", 0, 9), Finish::Unknown);
        assert_eq!(t.give_up("u", 0, 1), Finish::Untracked);
        assert_eq!(t.to_commit(), vec![("t".into(), 0, 1)]);
    }

    #[test]
    fn the_state_shows_the_frontier_and_the_age_of_what_holds_it() {
        let start = Instant::now();
        let mut t = OffsetTracker::new();
        for o in 10..15 {
            t.track_at("t", 2, o, start + Duration::from_secs(o as u64));
        }
        t.finish("t", 2, 10);
        t.finish("t", 2, 12);
        t.committed("t", 2, 11);
        let now = start + Duration::from_secs(30);
        assert_eq!(
            t.states_at(now),
            vec![PartitionState {
                topic: "t".into(),
                partition: 2,
                committed: Some(11),
                committable: Some(11),
                in_flight: 3,
                next: Some(15),
                window: 4,
                oldest_unfinished: Some(11),
                oldest_unfinished_age: Some(Duration::from_secs(19)),
                window_paused: false,
                window_pauses: 0,
            }]
        );
        t.finish("t", 2, 11);
        let s = &t.states_at(now)[0];
        assert_eq!((s.oldest_unfinished, s.window), (Some(13), 2));
        assert_eq!(s.oldest_unfinished_age, Some(Duration::from_secs(17)));
        t.finish("t", 2, 13);
        t.finish("t", 2, 14);
        let s = &t.states_at(now)[0];
        assert_eq!((s.oldest_unfinished, s.oldest_unfinished_age), (None, None));
        assert_eq!((s.committable, s.window), (Some(15), 0));
        let json = serde_json::to_value(&t.states_at(now)[0]).expect("json");
        assert_eq!(json["oldest_unfinished_age_s"], serde_json::Value::Null);
    }

    #[test]
    fn a_full_window_pauses_its_partition_until_it_is_below_three_quarters() {
        let mut t = OffsetTracker::new();
        t.assign(&[("t".into(), 0), ("t".into(), 1)]);
        for o in 0..7 {
            t.track("t", 0, o);
            assert!(!t.pause_if_full("t", 0, 8), "7 records, limit 8");
        }
        t.track("t", 0, 7);
        assert!(t.pause_if_full("t", 0, 8), "8 records: pause");
        assert!(!t.pause_if_full("t", 0, 8), "once");
        assert!(t.is_window_paused("t", 0));
        assert!(!t.is_window_paused("t", 1));
        // Behind offset 0, the others finish: the window stays 8.
        for o in 1..8 {
            t.finish("t", 0, o);
        }
        assert!(t.resumable(8).is_empty());
        t.finish("t", 0, 0);
        assert_eq!(t.resumable(8), vec![("t".to_string(), 0)]);
        assert!(t.resumable(8).is_empty(), "resumed once");
        let s = &t.states()[0];
        assert_eq!((s.window, s.window_paused, s.window_pauses), (0, false, 1));

        // Hysteresis: 6 of 8 is 75%, not below; 5 is.
        for o in 8..16 {
            t.track("t", 0, o);
        }
        assert!(t.pause_if_full("t", 0, 8));
        t.finish("t", 0, 8);
        t.finish("t", 0, 9);
        assert_eq!(t.window("t", 0), 6);
        assert!(t.resumable(8).is_empty(), "at 75%");
        t.finish("t", 0, 10);
        assert_eq!(t.resumable(8).len(), 1, "below 75%");
        assert_eq!(t.states()[0].window_pauses, 2);

        // A revoked partition forgets its pause; a new assignment starts afresh.
        for o in 16..24 {
            t.track("t", 0, o);
        }
        assert!(t.pause_if_full("t", 0, 8));
        t.remove(&[("t".into(), 0)]);
        assert!(t.resumable(8).is_empty());
        t.assign(&[("t".into(), 0)]);
        assert!(!t.is_window_paused("t", 0));
        assert_eq!(t.states()[0].window_pauses, 0);
    }

    proptest! {
        /// For any order of completions, the commit offset never passes an
        /// unfinished record, and once all are finished it is one past the last.
        #[test]
        fn never_commits_past_an_unfinished_offset(
            offsets in prop::collection::btree_set(0i64..500, 1..100),
            order in prop::collection::vec(any::<prop::sample::Index>(), 0..100),
        ) {
            let offsets: Vec<i64> = offsets.into_iter().collect();
            let mut t = OffsetTracker::new();
            for o in &offsets {
                t.track("t", 3, *o);
            }
            let mut unfinished: Vec<i64> = offsets.clone();
            for idx in order {
                if unfinished.is_empty() { break; }
                let o = unfinished.remove(idx.index(unfinished.len()));
                prop_assert_eq!(t.finish("t", 3, o), Finish::Done);
                let commit = t.states()[0].committable;
                let min_unfinished = unfinished.iter().min().copied();
                match min_unfinished {
                    Some(m) => prop_assert_eq!(commit, Some(m), "commit must stop at the first unfinished"),
                    None => prop_assert_eq!(commit, Some(offsets[offsets.len() - 1] + 1)),
                }
                if let Some(c) = commit {
                    t.committed("t", 3, c);
                    prop_assert!(t.to_commit().is_empty(), "nothing new to commit right after a commit");
                }
            }
            prop_assert_eq!(t.in_flight(None), unfinished.len());
        }

        /// A transaction's offsets stop at the first record that is neither
        /// finished nor in the transaction, and never pass one.
        #[test]
        fn transaction_offsets_never_pass_a_record_outside_the_commit(
            offsets in prop::collection::btree_set(0i64..300, 1..60),
            finished in prop::collection::vec(any::<bool>(), 60),
            in_batch in prop::collection::vec(any::<bool>(), 60),
        ) {
            let offsets: Vec<i64> = offsets.into_iter().collect();
            let mut t = OffsetTracker::new();
            let mut batch = BTreeMap::new();
            for (i, o) in offsets.iter().enumerate() {
                t.track("t", 1, *o);
                if in_batch[i] {
                    batch.insert(*o, 1);
                }
            }
            for (i, o) in offsets.iter().enumerate() {
                if finished[i] && !in_batch[i] {
                    t.finish("t", 1, *o);
                }
            }
            let expected = offsets
                .iter()
                .enumerate()
                .find(|(i, o)| !batch.contains_key(o) && !finished[*i])
                .map(|(_, o)| *o)
                .unwrap_or(offsets[offsets.len() - 1] + 1);
            let mut finishing = BTreeMap::new();
            finishing.insert(("t".to_string(), 1), batch);
            prop_assert_eq!(t.to_commit_with(&finishing), vec![("t".to_string(), 1, expected)]);
        }
    }
}
