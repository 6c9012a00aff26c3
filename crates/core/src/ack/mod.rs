//! Acknowledgements: every envelope's promise to tell its origin how it ended.
//!
//! An [`Ack`] resolves exactly once, as one [`Outcome`]. Fan-out
//! [splits](Ack::split) it into parts; the origin's [`AckReceiver`] hears
//! about the envelope only when every part has resolved, with the worst
//! outcome among them. A handle dropped without resolving is a bug: it is
//! counted ([`leaked_total`]), logged, reported to the origin as
//! [`Outcome::Failed`] with [`FailureKind::Leaked`](crate::FailureKind::Leaked), never as a success, and
//! under `debug_assertions` it panics.

mod counter;
mod handle;
#[cfg(all(test, not(loom)))]
mod tests;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::ItemError;

pub use counter::AckCounter;
pub use handle::{Ack, leaked_total};

/// Where an envelope came from: what a source knows about the record.
///
/// Every field is optional so that in-memory sources pay nothing for it.
/// `raw` keeps the record's original bytes, so a dead letter can carry the
/// input exactly as it arrived, whatever stage it failed in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The topic (or other named stream) the record was read from.
    pub topic: Option<Arc<str>>,
    /// The partition within the topic.
    pub partition: Option<i32>,
    /// The offset (or sequence number) within the partition.
    pub offset: Option<i64>,
    /// The record's key; per-key ordering uses it by default.
    pub key: Option<Bytes>,
    /// The record's timestamp in milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// The record's headers.
    pub headers: Vec<(String, Bytes)>,
    /// The record's original bytes, when the source keeps them.
    pub raw: Option<Bytes>,
}

impl Origin {
    /// An origin with only a partition and offset (handy for in-memory sources).
    pub fn at(partition: i32, offset: i64) -> Self {
        Origin {
            partition: Some(partition),
            offset: Some(offset),
            ..Origin::default()
        }
    }
}

/// Why an envelope was deliberately dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// A stage chose to emit nothing for it (a filter).
    Filtered,
    /// A mailbox with a drop policy was full.
    MailboxFull {
        /// The stage whose mailbox was full.
        stage: Arc<str>,
        /// Whether the newest or the oldest item was dropped.
        policy: crate::mailbox::Overflow,
    },
    /// Any other reason a stage gives.
    Other(Arc<str>),
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Filtered => f.write_str("filtered"),
            DropReason::MailboxFull { stage, policy } => {
                write!(f, "mailbox of `{stage}` full ({policy:?})")
            }
            DropReason::Other(reason) => f.write_str(reason),
        }
    }
}

/// How an envelope ended.
///
/// Ordered by severity: `Delivered < Dropped < DeadLettered < Failed`; a
/// split acknowledgement reports the worst of its parts.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Fully processed.
    Delivered,
    /// Deliberately dropped, for the given reason.
    Dropped(DropReason),
    /// Failed, and the dead-letter route took it: finished, nothing lost.
    DeadLettered(ItemError),
    /// Failed with nowhere to go: not finished. A source must not treat the
    /// record as done (a Kafka source does not commit past it).
    Failed(ItemError),
}

impl Outcome {
    fn severity(&self) -> u8 {
        match self {
            Outcome::Delivered => 0,
            Outcome::Dropped(_) => 1,
            Outcome::DeadLettered(_) => 2,
            Outcome::Failed(_) => 3,
        }
    }

    /// The worse of two outcomes (the first one wins a tie).
    pub fn worst(self, other: Outcome) -> Outcome {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// Whether the record is finished: everything but [`Outcome::Failed`].
    pub fn is_finished(&self) -> bool {
        !matches!(self, Outcome::Failed(_))
    }

    /// Whether this is [`Outcome::Delivered`].
    pub fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Delivered)
    }

    /// A short label: `delivered`, `dropped`, `dead_lettered` or `failed`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Dropped(_) => "dropped",
            Outcome::DeadLettered(_) => "dead_lettered",
            Outcome::Failed(_) => "failed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Delivered => f.write_str("delivered"),
            Outcome::Dropped(r) => write!(f, "dropped ({r})"),
            Outcome::DeadLettered(e) => write!(f, "dead-lettered ({e})"),
            Outcome::Failed(e) => write!(f, "failed ({e})"),
        }
    }
}

/// Receives the final outcome of each envelope a source created.
///
/// Called exactly once per envelope, on whatever thread resolved its last
/// part, so it must be quick and must not block: update a tracker, bump a
/// counter, or hand the completion to a task through a channel the source
/// owns and bounds.
pub trait AckReceiver: Send + Sync + 'static {
    /// The envelope from `origin` ended with `outcome`.
    fn on_ack(&self, origin: &Origin, outcome: Outcome);

    /// Whether this receiver wants [`AckReceiver::on_parts`] (default
    /// false, and then splitting and resolving parts cost nothing extra).
    fn wants_parts(&self) -> bool {
        false
    }

    /// Where a split envelope from `origin` stands before its last part
    /// resolves: `left` parts are not resolved yet, and `unfinished` says
    /// whether one that did ended without finishing (failed).
    ///
    /// Called (when [`AckReceiver::wants_parts`]) on [`Ack::split`] and each
    /// time a part resolves but not the last; [`AckReceiver::on_ack`] still
    /// comes once, at the end. Calls from parts resolving at the same moment
    /// on different threads may arrive in either order: `left` only ever
    /// falls, so keep the smallest seen.
    ///
    /// What it is for: a stage that commits consumed offsets itself (a
    /// transactional sink, a store writing offsets with its rows) counts a
    /// record in its own batch as finishing only once every *other* part
    /// of it has finished: `left` equals the parts it holds, and nothing
    /// ended unfinished.
    fn on_parts(&self, origin: &Origin, left: usize, unfinished: bool) {
        let _ = (origin, left, unfinished);
    }
}

impl<F> AckReceiver for F
where
    F: Fn(&Origin, Outcome) + Send + Sync + 'static,
{
    fn on_ack(&self, origin: &Origin, outcome: Outcome) {
        self(origin, outcome)
    }
}

/// An [`AckReceiver`] that ignores every outcome.
#[derive(Debug, Default, Clone, Copy)]
pub struct IgnoreAcks;

impl AckReceiver for IgnoreAcks {
    fn on_ack(&self, _origin: &Origin, _outcome: Outcome) {}
}
