//! Per-partition offset tracking: which offsets were handed out, which are
//! finished, and the offset that is safe to commit.
//!
//! Records finish in any order (stages run concurrently); the tracker
//! commits only the contiguous finished prefix: the commit offset is the
//! first unfinished offset handed out, or one past the last handed out when
//! all are finished. Offsets never handed out (compacted away, transaction
//! markers) are not waited for. Memory is bounded by the records in flight.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Offsets in flight for one partition, in the order handed out.
#[derive(Debug, Default, Clone)]
struct Partition {
    /// (offset, finished), offsets strictly increasing.
    window: VecDeque<(i64, bool)>,
    /// One past the highest offset handed out, once any was.
    next: Option<i64>,
    /// The last offset committed (or known committed).
    committed: Option<i64>,
    /// The first offset whose record failed without being finished.
    failed: Option<i64>,
}

impl Partition {
    /// The offset safe to commit now (first unfinished, else next).
    fn committable(&self) -> Option<i64> {
        match self.window.front() {
            Some((offset, _)) => Some(*offset),
            None => self.next,
        }
    }

    fn pop_finished(&mut self) {
        while let Some((_, true)) = self.window.front() {
            self.window.pop_front();
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
    /// The offset that could be committed now.
    pub committable: Option<i64>,
    /// Records handed out and not finished.
    pub in_flight: usize,
    /// One past the highest offset handed out.
    pub next: Option<i64>,
}

/// The offset tracker of one consumer. Not thread-safe by itself; the source
/// keeps it behind a lock.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: BTreeMap<(String, i32), Partition>,
}

/// What finishing an offset did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Marked finished.
    Done,
    /// The partition is not tracked (revoked since); ignored.
    Untracked,
    /// The offset was not handed out, or finished twice (a bug upstream).
    Unknown,
}

impl OffsetTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        OffsetTracker::default()
    }

    /// Records that `offset` of `topic`/`partition` is handed out. Returns
    /// false, tracking nothing, when the offset is at or below one already
    /// handed out on that partition (librdkafka fetched it again, e.g. after
    /// a position reset): that record is in flight or finished already, so
    /// the caller must not hand it out twice.
    pub fn track(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        let p = self
            .partitions
            .entry((topic.to_string(), partition))
            .or_default();
        if p.next.is_some_and(|n| offset < n) {
            return false;
        }
        p.window.push_back((offset, false));
        p.next = Some(offset + 1);
        true
    }

    /// Marks `offset` finished (delivered, dropped on purpose or dead-lettered).
    pub fn finish(&mut self, topic: &str, partition: i32, offset: i64) -> Finish {
        let Some(p) = self.partitions.get_mut(&(topic.to_string(), partition)) else {
            return Finish::Untracked;
        };
        match p.window.binary_search_by_key(&offset, |(o, _)| *o) {
            Ok(i) if !p.window[i].1 => {
                p.window[i].1 = true;
                p.pop_finished();
                Finish::Done
            }
            _ => Finish::Unknown,
        }
    }

    /// Records that `offset` failed without being finished: the partition's
    /// commit cannot pass it.
    pub fn fail(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&(topic.to_string(), partition)) {
            if p.failed.is_none_or(|f| offset < f) {
                p.failed = Some(offset);
            }
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
        finishing: &BTreeMap<(String, i32), BTreeSet<i64>>,
    ) -> Vec<(String, i32, i64)> {
        static NONE: BTreeSet<i64> = BTreeSet::new();
        self.partitions
            .iter()
            .filter_map(|(key, s)| {
                let extra = finishing.get(key).unwrap_or(&NONE);
                let c = s
                    .window
                    .iter()
                    .find(|(o, done)| !done && !extra.contains(o))
                    .map(|(o, _)| *o)
                    .or(s.next)?;
                (s.committed != Some(c)).then(|| (key.0.clone(), key.1, c))
            })
            .collect()
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
            while p.window.back().is_some_and(|(o, _)| *o >= from) {
                p.window.pop_back();
            }
            if p.next.is_some_and(|n| n > from) {
                p.next = Some(from);
            }
        }
    }

    /// Records handed out and not finished, for the given partitions (or all).
    pub fn in_flight(&self, parts: Option<&[(String, i32)]>) -> usize {
        self.partitions
            .iter()
            .filter(|(k, _)| parts.is_none_or(|ps| ps.iter().any(|(t, p)| &k.0 == t && k.1 == *p)))
            .map(|(_, s)| s.window.iter().filter(|(_, done)| !done).count())
            .sum()
    }

    /// Forgets partitions no longer owned.
    pub fn remove(&mut self, parts: &[(String, i32)]) {
        for key in parts {
            self.partitions.remove(key);
        }
    }

    /// Every tracked partition's state.
    pub fn states(&self) -> Vec<PartitionState> {
        self.partitions
            .iter()
            .map(|((t, p), s)| PartitionState {
                topic: t.clone(),
                partition: *p,
                committed: s.committed,
                committable: s.committable(),
                in_flight: s.window.iter().filter(|(_, d)| !d).count(),
                next: s.next,
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
            m.insert(("t".to_string(), 0), offsets.iter().copied().collect());
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
            let mut batch = BTreeSet::new();
            for (i, o) in offsets.iter().enumerate() {
                t.track("t", 1, *o);
                if in_batch[i] {
                    batch.insert(*o);
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
                .find(|(i, o)| !batch.contains(o) && !finished[*i])
                .map(|(_, o)| *o)
                .unwrap_or(offsets[offsets.len() - 1] + 1);
            let mut finishing = BTreeMap::new();
            finishing.insert(("t".to_string(), 1), batch);
            prop_assert_eq!(t.to_commit_with(&finishing), vec![("t".to_string(), 1, expected)]);
        }
    }
}
