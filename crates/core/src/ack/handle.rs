//! The acknowledgement handle: resolving once, splitting for fan-out, and
//! the shared node the parts of one envelope resolve into.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(loom)]
use loom::sync::{Arc as NodeArc, Mutex, atomic::AtomicBool};
#[cfg(not(loom))]
use std::sync::{Arc as NodeArc, Mutex, atomic::AtomicBool};

use crate::error::{FailureKind, ItemError};

use super::{AckReceiver, DropReason, IgnoreAcks, Origin, Outcome};

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
