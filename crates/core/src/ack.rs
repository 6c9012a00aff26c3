//! Acknowledgements: every envelope's promise to tell its origin how it ended.
//!
//! An [`Ack`] resolves exactly once, as one [`Outcome`]. Fan-out
//! [splits](Ack::split) it into parts; the origin's [`AckReceiver`] hears
//! about the envelope only when every part has resolved, with the worst
//! outcome among them. A handle dropped without resolving is a bug: it is
//! counted ([`leaked_total`]), logged, reported to the origin as
//! [`Outcome::Failed`] with [`FailureKind::Leaked`], never as a success, and
//! under `debug_assertions` it panics.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(loom)]
use loom::sync::{Arc as NodeArc, Mutex, atomic::AtomicBool};
#[cfg(not(loom))]
use std::sync::{Arc as NodeArc, Mutex, atomic::AtomicBool};

use bytes::Bytes;

use crate::error::{FailureKind, ItemError};

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

static LEAKED: AtomicU64 = AtomicU64::new(0);

/// How many acknowledgement handles this process dropped without resolving.
///
/// Non-zero means a bug: in a stage that kept an envelope, or in sluicegate.
pub fn leaked_total() -> u64 {
    LEAKED.load(Ordering::Relaxed)
}

struct AckNode {
    origin: Origin,
    /// Set once the handle has been split; only then is `parts` used. An
    /// unsplit handle resolves without taking the lock.
    split: AtomicBool,
    /// The parts not yet resolved and the worst outcome of those that have,
    /// under one lock: the part that brings the count to zero has seen
    /// every other part's outcome.
    parts: Mutex<Parts>,
    receiver: Arc<dyn AckReceiver>,
}

struct Parts {
    left: usize,
    worst: Option<Outcome>,
}

impl AckNode {
    fn new(origin: Origin, receiver: Arc<dyn AckReceiver>) -> Self {
        AckNode {
            origin,
            split: AtomicBool::new(false),
            parts: Mutex::new(Parts {
                left: 1,
                worst: None,
            }),
            receiver,
        }
    }

    fn parts(&self) -> impl std::ops::DerefMut<Target = Parts> + '_ {
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An acknowledgement handle: resolve it exactly once.
///
/// Created by a source with [`Ack::new`]; carried by an
/// [`Envelope`](crate::Envelope) through the graph; resolved by the runtime
/// when the envelope is delivered, dropped or failed. Stages never see it
/// unless they build envelopes themselves.
#[must_use = "an acknowledgement must be resolved; dropping it counts as a leak"]
pub struct Ack {
    node: Option<NodeArc<AckNode>>,
    /// Set when the envelope is on its way to the dead-letter route: a
    /// delivery then means "dead-lettered", anything else "failed".
    failure: Option<ItemError>,
}

impl Ack {
    /// A new handle for a record from `origin`; its outcome goes to `receiver`.
    pub fn new(origin: Origin, receiver: Arc<dyn AckReceiver>) -> Self {
        Ack {
            node: Some(NodeArc::new(AckNode::new(origin, receiver))),
            failure: None,
        }
    }

    /// A handle whose outcome nobody hears: for tests and fire-and-forget inputs.
    pub fn detached() -> Self {
        Ack::new(Origin::default(), Arc::new(IgnoreAcks))
    }

    /// Where the envelope came from.
    pub fn origin(&self) -> &Origin {
        // `node` is only `None` after resolving, which consumes the handle.
        match &self.node {
            Some(node) => &node.origin,
            None => unreachable_origin(),
        }
    }

    /// A cheap shared reference to the origin that outlives this handle.
    pub(crate) fn origin_ref(&self) -> OriginRef {
        OriginRef(self.node.clone())
    }

    /// Splits the handle into `n` parts (for fan-out). The origin hears once,
    /// after all parts resolve, with the worst outcome.
    ///
    /// # Panics
    ///
    /// Panics if `n` is zero: resolve the handle instead.
    pub fn split(mut self, n: usize) -> Vec<Ack> {
        assert!(n > 0, "Ack::split(0): resolve the acknowledgement instead");
        let node = self.node.take().unwrap_or_else(unreachable_node);
        let failure = self.failure.take();
        if n > 1 {
            // This handle is unresolved, so `left` is at least 1 here and no
            // other part can bring it to zero meanwhile. Whoever receives a
            // part receives it through something that synchronises (a
            // channel, a spawn), so the flag needs no stronger ordering.
            let (left, unfinished) = {
                let mut parts = node.parts();
                parts.left += n - 1;
                (
                    parts.left,
                    parts.worst.as_ref().is_some_and(|w| !w.is_finished()),
                )
            };
            node.split.store(true, Ordering::Relaxed);
            // Before any part exists elsewhere, so no part's report can
            // come before this one.
            if node.receiver.wants_parts() {
                node.receiver.on_parts(&node.origin, left, unfinished);
            }
        }
        (0..n)
            .map(|_| Ack {
                node: Some(node.clone()),
                failure: failure.clone(),
            })
            .collect()
    }

    /// Marks the envelope as failed with `error` and bound for the dead-letter
    /// route: delivering it there resolves the origin as
    /// [`Outcome::DeadLettered`]; any other resolution as [`Outcome::Failed`].
    pub(crate) fn into_dead_letter(mut self, error: ItemError) -> Ack {
        self.failure = Some(error);
        self
    }

    /// Resolves the handle with `outcome`.
    pub fn resolve(mut self, outcome: Outcome) {
        self.settle(outcome);
    }

    /// Resolves as [`Outcome::Delivered`].
    pub fn deliver(self) {
        self.resolve(Outcome::Delivered)
    }

    /// Resolves as [`Outcome::Dropped`].
    pub fn drop_with(self, reason: DropReason) {
        self.resolve(Outcome::Dropped(reason))
    }

    /// Resolves as [`Outcome::Failed`].
    pub fn fail(self, error: ItemError) {
        self.resolve(Outcome::Failed(error))
    }

    fn settle(&mut self, outcome: Outcome) {
        let Some(node) = self.node.take() else { return };
        let outcome = match self.failure.take() {
            None => outcome,
            Some(error) => match outcome {
                Outcome::Delivered => Outcome::DeadLettered(error),
                _ => Outcome::Failed(error),
            },
        };
        if !node.split.load(Ordering::Relaxed) {
            node.receiver.on_ack(&node.origin, outcome);
            return;
        }
        // Merge and count down in one step under the lock: a part that
        // counted down without merging could let the last part report
        // without this part's outcome (a failure reported as delivered).
        let last = {
            let mut parts = node.parts();
            let merged = match parts.worst.take() {
                Some(w) => w.worst(outcome),
                None => outcome,
            };
            parts.left -= 1;
            if parts.left == 0 {
                Ok(merged)
            } else {
                let left = (parts.left, !merged.is_finished());
                parts.worst = Some(merged);
                Err(left)
            }
        };
        match last {
            Ok(outcome) => node.receiver.on_ack(&node.origin, outcome),
            Err((left, unfinished)) => {
                if node.receiver.wants_parts() {
                    node.receiver.on_parts(&node.origin, left, unfinished);
                }
            }
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if self.node.is_none() {
            return;
        }
        LEAKED.fetch_add(1, Ordering::Relaxed);
        let origin = self.origin().clone();
        tracing::error!(
            ?origin,
            "acknowledgement dropped without being resolved; reporting it as failed"
        );
        self.settle(Outcome::Failed(ItemError::new(
            "unknown",
            FailureKind::Leaked,
            "acknowledgement dropped without being resolved",
        )));
        #[cfg(debug_assertions)]
        if !std::thread::panicking() {
            panic!(
                "sluicegate: an acknowledgement was dropped without being resolved (origin {origin:?})"
            );
        }
    }
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ack")
            .field("origin", &self.node.as_ref().map(|n| &n.origin))
            .field("dead_letter", &self.failure.is_some())
            .finish()
    }
}

/// A shared reference to an envelope's origin (kept by the runtime while a
/// spawned task processes the payload).
#[derive(Clone)]
pub(crate) struct OriginRef(Option<NodeArc<AckNode>>);

impl OriginRef {
    pub(crate) fn get(&self) -> &Origin {
        match &self.0 {
            Some(node) => &node.origin,
            None => unreachable_origin(),
        }
    }
}

fn unreachable_origin() -> &'static Origin {
    static EMPTY: std::sync::OnceLock<Origin> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Origin::default)
}

fn unreachable_node() -> NodeArc<AckNode> {
    // Only reachable after a resolve, which consumes the handle.
    NodeArc::new(AckNode::new(Origin::default(), Arc::new(IgnoreAcks)))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn recorder() -> (Arc<Mutex<Vec<Outcome>>>, Arc<dyn AckReceiver>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        let rx: Arc<dyn AckReceiver> =
            Arc::new(move |_: &Origin, o: Outcome| l.lock().expect("lock").push(o));
        (log, rx)
    }

    #[test]
    fn resolves_once() {
        let (log, rx) = recorder();
        Ack::new(Origin::at(0, 1), rx).deliver();
        let log = log.lock().expect("lock");
        assert_eq!(log.len(), 1);
        assert!(log[0].is_delivered());
    }

    #[test]
    fn split_reports_worst_after_all_parts() {
        let (log, rx) = recorder();
        let mut parts = Ack::new(Origin::at(0, 1), rx).split(3);
        parts.pop().expect("part").deliver();
        parts.pop().expect("part").drop_with(DropReason::Filtered);
        assert!(
            log.lock().expect("lock").is_empty(),
            "origin told before all parts resolved"
        );
        parts.pop().expect("part").deliver();
        let log = log.lock().expect("lock");
        assert_eq!(log.len(), 1);
        assert!(matches!(log[0], Outcome::Dropped(DropReason::Filtered)));
    }

    #[test]
    fn dead_letter_delivery_is_dead_lettered() {
        let (log, rx) = recorder();
        let err = ItemError::new("s", FailureKind::Error, "bad");
        Ack::new(Origin::default(), rx)
            .into_dead_letter(err)
            .deliver();
        assert!(matches!(
            log.lock().expect("lock")[0],
            Outcome::DeadLettered(_)
        ));
    }

    #[test]
    fn leak_is_reported_as_failed() {
        let (log, rx) = recorder();
        let ack = Ack::new(Origin::default(), rx);
        let before = leaked_total();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(ack)));
        assert_eq!(result.is_err(), cfg!(debug_assertions));
        assert_eq!(leaked_total(), before + 1);
        let log = log.lock().expect("lock");
        match &log[0] {
            Outcome::Failed(e) => assert_eq!(e.kind(), FailureKind::Leaked),
            other => panic!("leak reported as {other:?}"),
        }
    }

    /// Records every `on_parts` report.
    #[derive(Default)]
    struct Parts(Mutex<Vec<(usize, bool)>>, Mutex<Vec<Outcome>>);

    impl AckReceiver for Parts {
        fn on_ack(&self, _: &Origin, outcome: Outcome) {
            self.1.lock().expect("lock").push(outcome);
        }
        fn wants_parts(&self) -> bool {
            true
        }
        fn on_parts(&self, _: &Origin, left: usize, unfinished: bool) {
            self.0.lock().expect("lock").push((left, unfinished));
        }
    }

    #[test]
    fn a_receiver_that_wants_parts_hears_each_but_the_last() {
        let rx = Arc::new(Parts::default());
        let mut parts = Ack::new(Origin::at(0, 1), rx.clone()).split(3);
        let err = ItemError::new("s", FailureKind::Error, "bad");
        parts.pop().expect("part").deliver();
        // A part split again: four parts left.
        let mut more = parts.pop().expect("part").split(3);
        more.pop().expect("part").fail(err);
        for p in more.into_iter().chain(parts) {
            p.deliver();
        }
        assert_eq!(
            *rx.0.lock().expect("lock"),
            [
                (3, false),
                (2, false),
                (4, false),
                (3, true),
                (2, true),
                (1, true)
            ]
        );
        let acks = rx.1.lock().expect("lock");
        assert_eq!(acks.len(), 1);
        assert!(matches!(acks[0], Outcome::Failed(_)));
    }

    #[test]
    fn a_receiver_that_does_not_want_parts_hears_none() {
        let (log, rx) = recorder();
        let parts = Ack::new(Origin::at(0, 1), rx).split(2);
        for p in parts {
            p.deliver();
        }
        assert_eq!(log.lock().expect("lock").len(), 1);
    }
}
