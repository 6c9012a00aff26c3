//! The counters of a transactional sink.

use std::sync::atomic::AtomicU64;

#[cfg(doc)]
use super::KafkaTxnSink;
#[cfg(doc)]
use crate::ExactlyOnce;

/// Counters of one [`KafkaTxnSink`].
#[derive(Debug, Default, serde::Serialize)]
pub struct TxnStats {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Transactions aborted (each batch is tried again in a new one, up to
    /// [`KafkaTxnSink::max_attempts`]).
    pub aborts: AtomicU64,
    /// Records committed.
    pub records: AtomicU64,
    /// Records the broker had acknowledged in transactions that were then
    /// aborted: `read_committed` readers never see them.
    pub aborted_records: AtomicU64,
    /// Transactions aborted because the source's assignment changed between
    /// their start and their commit (see [`ExactlyOnce`]); included in
    /// `aborts`, not counted against [`KafkaTxnSink::max_attempts`].
    pub reassigned: AtomicU64,
    /// Records not produced because their partition was revoked before
    /// their transaction began (the partition's new owner reads them again
    /// from the last committed transaction).
    pub revoked: AtomicU64,
    /// Transactions whose offsets stopped short of their own records,
    /// because an earlier record of the partition was still unfinished
    /// after [`KafkaTxnSink::gap_wait`] (see "Ordering" on [`KafkaTxnSink`]).
    pub gaps: AtomicU64,
    /// Times the producer queue was full (backpressure, not an error).
    pub queue_full: AtomicU64,
    /// Transactions that carried offsets only: records that finished
    /// without a batch of this sink to commit them with (dead-lettered,
    /// filtered, held up in another branch) while no batch came, and at
    /// stop.
    pub offset_only_commits: AtomicU64,
}
