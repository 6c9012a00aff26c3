//! The schema validator's counters.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The path rejections are counted under once a validator counts
/// [`max_counted_paths`](super::SchemaValidatorBuilder::max_counted_paths)
/// distinct (path, keyword) pairs already.
pub const OTHER_PATHS: &str = "(other)";

/// A snapshot of a [`SchemaValidator`](super::SchemaValidator)'s counters.
///
/// Each rejected record is counted once, under its first violation
/// ([`SchemaRejection::first`](super::SchemaRejection::first)), so
/// `passed + rejected == checked` and the counts per keyword add up to
/// `rejected`; so do the counts per path.
///
/// Paths are counted with array indices as `*` (`/items/*/price`), so a
/// long array does not make one counter per element; the reasons keep the
/// exact index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SchemaStats {
    /// Records checked.
    pub checked: u64,
    /// Records the schema accepted.
    pub passed: u64,
    /// Records rejected.
    pub rejected: u64,
    /// Rejections by keyword; keywords with none are left out.
    pub by_keyword: BTreeMap<String, u64>,
    /// Rejections by instance path (indices as `*`), then keyword; only
    /// non-zero counts.
    pub by_path: BTreeMap<String, BTreeMap<String, u64>>,
}

impl SchemaStats {
    /// Rejections whose first violation is of `keyword` (0 if none).
    pub fn keyword(&self, keyword: &str) -> u64 {
        self.by_keyword.get(keyword).copied().unwrap_or(0)
    }

    /// Rejections whose first violation is `keyword` at `path` (indices
    /// as `*`; 0 if none).
    pub fn at(&self, path: &str, keyword: &str) -> u64 {
        self.by_path
            .get(path)
            .and_then(|m| m.get(keyword))
            .copied()
            .unwrap_or(0)
    }
}

/// The live counters behind [`SchemaStats`].
#[derive(Debug)]
pub(crate) struct Counters {
    passed: AtomicU64,
    /// (path, keyword) → rejections. Touched only on a rejection.
    rejected: Mutex<BTreeMap<(String, String), u64>>,
    max_paths: usize,
}

impl Counters {
    pub(crate) fn new(max_paths: usize) -> Self {
        Counters {
            passed: AtomicU64::new(0),
            rejected: Mutex::new(BTreeMap::new()),
            max_paths,
        }
    }

    pub(crate) fn passed(&self) {
        self.passed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a rejection under `path` (indices as `*`) and `keyword`.
    pub(crate) fn rejected(&self, path: String, keyword: &str) {
        // A poisoned lock only means a panic elsewhere mid-update of a
        // counter map; the counts stay usable.
        let mut map = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = (path, keyword.to_string());
        if !map.contains_key(&key) && map.len() >= self.max_paths {
            key.0 = OTHER_PATHS.to_string();
        }
        *map.entry(key).or_insert(0) += 1;
    }

    pub(crate) fn snapshot(&self) -> SchemaStats {
        let map = self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut stats = SchemaStats {
            passed: self.passed.load(Ordering::Relaxed),
            ..SchemaStats::default()
        };
        for ((path, keyword), n) in map {
            *stats.by_keyword.entry(keyword.clone()).or_insert(0) += n;
            *stats
                .by_path
                .entry(path)
                .or_default()
                .entry(keyword)
                .or_insert(0) += n;
            stats.rejected += n;
        }
        // Derived, so a snapshot taken mid-update still adds up.
        stats.checked = stats.passed + stats.rejected;
        stats
    }
}
