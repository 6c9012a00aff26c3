//! Per-partition offset tracking: which offsets were handed out, which are
//! finished, and the offset that is safe to commit.
//!
//! Records finish in any order (stages run concurrently); the tracker
//! commits only the contiguous finished prefix: the commit offset is the
//! first unfinished offset handed out, or one past the last handed out when
//! all are finished. Offsets never handed out (compacted away, transaction
//! markers) are not waited for. Memory is bounded by the records in flight.

use std::collections::{BTreeMap, VecDeque};

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

    /// Records that `offset` of `topic`/`partition` was handed out.
    ///
    /// # Panics
    ///
    /// In debug builds, if offsets of a partition are not handed out in
    /// increasing order (Kafka delivers them in order within a partition).
    pub fn track(&mut self, topic: &str, partition: i32, offset: i64) {
        let p = self
            .partitions
            .entry((topic.to_string(), partition))
            .or_default();
        debug_assert!(
            p.next.is_none_or(|n| offset >= n),
            "offsets out of order on {topic}/{partition}: {offset} after {:?}",
            p.next
        );
        p.window.push_back((offset, false));
        p.next = Some(offset + 1);
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
    }
}
