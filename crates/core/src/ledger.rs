//! Committing a source's offsets somewhere else: what a stage that writes
//! consumed offsets together with its own work (a Kafka transaction, a
//! database transaction) asks of the source it read from.
//!
//! A source that tracks which records are finished (the Kafka source)
//! implements [`CommitLedger`]; the committing stage asks it, for the
//! records of the batch it is about to commit, how far each partition's
//! offset may go: past every record that is finished, or in the batch with
//! every other part of it finished (a record fanned out to several
//! branches finishes only when all of them have). The stage then commits
//! its work and those offsets in one transaction, and tells the ledger.

use std::time::Duration;

use crate::ack::Origin;

/// Offsets to commit: (topic, partition, the next offset to read).
pub type Offsets = Vec<(String, i32, i64)>;

/// A source's commit frontier, for a stage that commits its offsets.
pub trait CommitLedger: Send + Sync + 'static {
    /// The consumer group the offsets belong to.
    fn group(&self) -> String;

    /// For every partition this source owns whose offset can move past the
    /// last commit, the first offset that is neither finished nor one of
    /// `origins` (counted only once every other part of it finished).
    /// Origins without a topic, partition and offset are ignored. Nothing
    /// is marked finished: the records finish when their acknowledgements
    /// resolve, after the commit.
    fn offsets_with(&self, origins: &[&Origin]) -> Offsets;

    /// Notes offsets a commit wrote (for lag and status pages).
    fn committed(&self, offsets: &[(String, i32, i64)]);
}

/// The offsets to commit with `origins`, waiting up to `wait` while an
/// earlier record of one of their partitions, or another part of one of
/// them, is still unfinished elsewhere (on its way to the dead-letter
/// route, in another branch of a fan-out). Returns the offsets and the
/// partitions where they still stop short of `origins`, named for a log
/// line: committing those offsets is safe, but leaves the records past the
/// gap to be done again after a crash.
pub async fn offsets_for(
    ledger: &dyn CommitLedger,
    origins: &[&Origin],
    wait: Duration,
) -> (Offsets, Vec<String>) {
    let mut last: std::collections::BTreeMap<(&str, i32), i64> = Default::default();
    for o in origins {
        if let (Some(t), Some(p), Some(off)) = (&o.topic, o.partition, o.offset) {
            let e = last.entry((t, p)).or_insert(off);
            *e = (*e).max(off);
        }
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let offsets = ledger.offsets_with(origins);
        let short: Vec<String> = last
            .iter()
            .filter(|((t, p), max)| {
                !offsets
                    .iter()
                    .any(|(ot, op, o)| ot == t && op == p && o > *max)
            })
            .map(|((t, p), max)| format!("{t}/{p} (batch up to {max})"))
            .collect();
        if short.is_empty() || tokio::time::Instant::now() >= deadline {
            return (offsets, short);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
