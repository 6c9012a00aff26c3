//! A log of every acknowledgement, by offset, with exactly-once assertions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::ack::{Ack, AckReceiver, Origin, Outcome};

use super::lock;

/// Records every acknowledgement a source receives, keyed by offset, and
/// counts how many times each offset resolved: an acknowledgement resolves
/// exactly once, so a second resolution is a bug that [`AckLog::outcome`]
/// and [`AckLog::assert_each_once`] report instead of hiding it.
#[derive(Clone, Default)]
pub struct AckLog {
    inner: Arc<AckLogInner>,
}

#[derive(Default)]
struct AckLogInner {
    /// Every outcome of each offset, in the order they arrived.
    outcomes: Mutex<BTreeMap<i64, Vec<Outcome>>>,
    changed: Notify,
}

impl std::fmt::Debug for AckLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckLog")
            .field("resolved", &self.resolved())
            .field("resolved_twice", &self.resolved_more_than_once())
            .finish()
    }
}

impl AckReceiver for AckLog {
    fn on_ack(&self, origin: &Origin, outcome: Outcome) {
        lock(&self.inner.outcomes)
            .entry(origin.offset.unwrap_or(-1))
            .or_default()
            .push(outcome);
        self.inner.changed.notify_waiters();
    }
}

impl AckLog {
    /// An empty log.
    pub fn new() -> Self {
        AckLog::default()
    }

    /// A new acknowledgement reporting to this log for `offset`.
    pub fn ack(&self, offset: i64) -> Ack {
        Ack::new(Origin::at(0, offset), Arc::new(self.clone()))
    }

    /// Every outcome, by offset (more than one per offset is a bug).
    pub fn outcomes(&self) -> BTreeMap<i64, Vec<Outcome>> {
        lock(&self.inner.outcomes).clone()
    }

    /// The outcome of `offset`, if resolved.
    ///
    /// # Panics
    ///
    /// If `offset` resolved more than once, naming every outcome it got.
    pub fn outcome(&self, offset: i64) -> Option<Outcome> {
        let all = lock(&self.inner.outcomes);
        match all.get(&offset).map(Vec::as_slice) {
            None | Some([]) => None,
            Some([one]) => Some(one.clone()),
            Some(many) => panic!(
                "offset {offset} resolved {} times: {}",
                many.len(),
                describe(many)
            ),
        }
    }

    /// How many times `offset` resolved (exactly one is right).
    pub fn times(&self, offset: i64) -> usize {
        lock(&self.inner.outcomes).get(&offset).map_or(0, Vec::len)
    }

    /// Offsets that resolved more than once (a bug), in order.
    pub fn resolved_more_than_once(&self) -> Vec<i64> {
        lock(&self.inner.outcomes)
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(k, _)| *k)
            .collect()
    }

    /// How many acknowledgements resolved (counting duplicates).
    pub fn resolved(&self) -> usize {
        lock(&self.inner.outcomes).values().map(Vec::len).sum()
    }

    fn count(&self, pred: impl Fn(&Outcome) -> bool) -> usize {
        lock(&self.inner.outcomes)
            .values()
            .flatten()
            .filter(|o| pred(o))
            .count()
    }

    /// How many resolved as delivered.
    pub fn delivered(&self) -> usize {
        self.count(Outcome::is_delivered)
    }

    /// How many resolved as dropped.
    pub fn dropped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Dropped(_)))
    }

    /// How many resolved as dead-lettered.
    pub fn dead_lettered(&self) -> usize {
        self.count(|o| matches!(o, Outcome::DeadLettered(_)))
    }

    /// How many resolved as failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    /// Offsets whose outcome matches `pred`, in order.
    pub fn offsets_where(&self, pred: impl Fn(&Outcome) -> bool) -> Vec<i64> {
        lock(&self.inner.outcomes)
            .iter()
            .filter(|(_, v)| v.iter().any(&pred))
            .map(|(k, _)| *k)
            .collect()
    }

    /// Waits until at least `n` acknowledgements resolved.
    pub async fn wait_for(&self, n: usize) {
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.resolved() >= n {
                return;
            }
            notified.await;
        }
    }

    /// Asserts that offsets `0..n` each resolved exactly once, and nothing else did.
    ///
    /// # Panics
    ///
    /// Naming the first offset resolved zero or several times.
    pub fn assert_each_once(&self, n: i64) {
        let all = self.outcomes();
        for offset in 0..n {
            match all.get(&offset).map(Vec::as_slice) {
                Some([_]) => {}
                Some(many @ [_, _, ..]) => panic!(
                    "offset {offset} resolved {} times: {}",
                    many.len(),
                    describe(many)
                ),
                None | Some([]) => panic!(
                    "offset {offset} never resolved ({} of {n} resolved)",
                    all.len()
                ),
            }
        }
        if let Some(extra) = all.keys().find(|k| **k < 0 || **k >= n) {
            panic!("unexpected offset {extra} resolved");
        }
    }
}

fn describe(outcomes: &[Outcome]) -> String {
    outcomes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", then ")
}
