//! [`Counters`]: the counters of a process's Kafka sources, summed.

use std::sync::atomic::Ordering;

use sluicegate_kafka_io::SourceStats;

/// The counters of a process's Kafka sources, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Records handed to the graph.
    pub records: u64,
    /// Offset commits that succeeded.
    pub commits: u64,
    /// Offset commits that failed.
    pub commit_failures: u64,
    /// Partition assignments received.
    pub assignments: u64,
    /// Revocations handled.
    pub revocations: u64,
    /// Pauses of every partition because the graph was full.
    pub graph_full_pauses: u64,
    /// Pauses of one partition because its window reached the limit.
    pub window_pauses: u64,
}

impl Counters {
    /// One source's counters.
    pub fn of(stats: &SourceStats) -> Counters {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            records: get(&stats.records),
            commits: get(&stats.commits),
            commit_failures: get(&stats.commit_failures),
            assignments: get(&stats.assignments),
            revocations: get(&stats.revocations),
            graph_full_pauses: get(&stats.pauses),
            window_pauses: get(&stats.window_pauses),
        }
    }

    pub(super) fn add(&mut self, o: Counters) {
        self.records += o.records;
        self.commits += o.commits;
        self.commit_failures += o.commit_failures;
        self.assignments += o.assignments;
        self.revocations += o.revocations;
        self.graph_full_pauses += o.graph_full_pauses;
        self.window_pauses += o.window_pauses;
    }
}
