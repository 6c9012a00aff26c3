//! Counting outcomes in constant memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{AckReceiver, Origin, Outcome};

/// An [`AckReceiver`] counting outcomes in constant memory: how many
/// records were delivered, dropped, dead-lettered or failed (the testing
/// kit's `AckLog` keeps one entry per record instead).
#[derive(Debug, Clone, Default)]
pub struct AckCounter {
    inner: Arc<[AtomicU64; 4]>,
}

impl AckCounter {
    /// All counts at zero.
    pub fn new() -> Self {
        AckCounter::default()
    }

    fn get(&self, i: usize) -> u64 {
        self.inner[i].load(Ordering::Relaxed)
    }

    /// Resolved as delivered.
    pub fn delivered(&self) -> u64 {
        self.get(0)
    }

    /// Resolved as dropped.
    pub fn dropped(&self) -> u64 {
        self.get(1)
    }

    /// Resolved as dead-lettered.
    pub fn dead_lettered(&self) -> u64 {
        self.get(2)
    }

    /// Resolved as failed.
    pub fn failed(&self) -> u64 {
        self.get(3)
    }

    /// Resolved in any way.
    pub fn resolved(&self) -> u64 {
        (0..4).map(|i| self.get(i)).sum()
    }
}

impl AckReceiver for AckCounter {
    fn on_ack(&self, _origin: &Origin, outcome: Outcome) {
        let i = match outcome {
            Outcome::Delivered => 0,
            Outcome::Dropped(_) => 1,
            Outcome::DeadLettered(_) => 2,
            Outcome::Failed(_) => 3,
        };
        self.inner[i].fetch_add(1, Ordering::Relaxed);
    }
}
