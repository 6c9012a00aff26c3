//! Latency histograms: fixed buckets, relaxed atomic counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::snapshot::HistogramSnapshot;

/// Upper bounds of the latency buckets, in microseconds (powers of four up to
/// about 4.5 minutes); the last bucket is unbounded.
pub(super) const BUCKETS_US: [u64; 14] = [
    1,
    4,
    16,
    64,
    256,
    1_024,
    4_096,
    16_384,
    65_536,
    262_144,
    1_048_576,
    4_194_304,
    16_777_216,
    268_435_456,
];

/// A fixed-bucket latency histogram of atomics.
#[derive(Debug, Default)]
pub struct Histogram {
    pub(super) counts: [AtomicU64; BUCKETS_US.len() + 1],
    pub(super) sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn record(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let idx = BUCKETS_US.partition_point(|&b| b < us);
        self.counts[idx].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Records `n` observations that took `total` together (each `total / n`).
    pub fn record_n(&self, total: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let each = total / u32::try_from(n).unwrap_or(u32::MAX);
        let us = each.as_micros() as u64;
        let idx = BUCKETS_US.partition_point(|&b| b < us);
        self.counts[idx].fetch_add(n, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(total.as_nanos() as u64, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds_us: BUCKETS_US.to_vec(),
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}
