//! The live counters of a store stage.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(doc)]
use super::StoreStage;

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) batches: AtomicU64,
    pub(super) commits: AtomicU64,
    pub(super) inserted: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) rows_failed: AtomicU64,
    pub(super) batches_failed: AtomicU64,
    pub(super) retries: AtomicU64,
}

/// Live counters of a [`StoreStage`]; clones share them.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub(super) inner: Arc<Counters>,
}

impl StoreStats {
    pub(super) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Batches received.
    pub fn batches(&self) -> u64 {
        self.inner.batches.load(Ordering::Relaxed)
    }

    /// Transactions committed.
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// Rows inserted.
    pub fn inserted(&self) -> u64 {
        self.inner.inserted.load(Ordering::Relaxed)
    }

    /// Rows whose key was already stored (replays), so nothing was written.
    pub fn duplicates(&self) -> u64 {
        self.inner.duplicates.load(Ordering::Relaxed)
    }

    /// Rows that failed (rejected, unencodable, without a key, or in a
    /// failed batch).
    pub fn rows_failed(&self) -> u64 {
        self.inner.rows_failed.load(Ordering::Relaxed)
    }

    /// Batches that failed as a whole (after retries, or a permanent error).
    pub fn batches_failed(&self) -> u64 {
        self.inner.batches_failed.load(Ordering::Relaxed)
    }

    /// Retries after transient errors.
    pub fn retries(&self) -> u64 {
        self.inner.retries.load(Ordering::Relaxed)
    }
}
