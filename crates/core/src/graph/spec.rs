//! Graph spec types: stages, batches, their mailboxes and settings.

use std::sync::Arc;
use std::time::Duration;

use crate::ack::Origin;
use crate::driver::KeyFn;
use crate::error::ItemError;
use crate::mailbox::{Overflow, Weigher};
use crate::stage::{BatchStage, Stage};

/// The default mailbox capacity: small enough to keep memory and latency
/// low, big enough to let neighbouring stages overlap.
pub const DEFAULT_CAPACITY: usize = 128;

/// How long a graph drains after a fatal error before what is left is
/// abandoned, unless [`GraphBuilder::drain_deadline`](crate::graph::GraphBuilder::drain_deadline) says otherwise.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// How many envelopes a sequential stage takes from its mailbox per lock.
pub(super) const PREFETCH: usize = 64;

/// The order a concurrent stage emits in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Outputs leave as they finish (fastest).
    #[default]
    Unordered,
    /// Outputs leave in input order (a slow item holds back those behind it).
    Preserve,
    /// Items with the same key are processed one at a time, in input order;
    /// different keys run in parallel. The key is the origin's key unless
    /// [`StageSpec::key_by`] says otherwise; items without a key are not
    /// ordered among themselves.
    PerKey,
}

/// How a batch stage gathers its batches: wait for the first item, then
/// gather until `max_items`, `max_bytes` or `max_wait` after the first.
///
/// A quiet stream still flushes (after `max_wait`); a busy one fills batches.
pub struct BatchConfig<T> {
    pub(crate) max_items: usize,
    pub(crate) max_bytes: Option<(usize, Weigher<T>)>,
    pub(crate) max_wait: Duration,
}

impl<T> BatchConfig<T> {
    /// Batches of at most `max_items`, flushed at most `max_wait` after their
    /// first item arrived.
    pub fn new(max_items: usize, max_wait: Duration) -> Self {
        BatchConfig {
            max_items: max_items.max(1),
            max_bytes: None,
            max_wait,
        }
    }

    /// Also closes a batch once its items weigh `max_bytes` (as measured by `weigher`).
    pub fn max_bytes(
        mut self,
        max_bytes: usize,
        weigher: impl Fn(&T) -> usize + Send + Sync + 'static,
    ) -> Self {
        self.max_bytes = Some((max_bytes, Arc::new(weigher)));
        self
    }
}

/// A failed item on its way to the dead-letter route. The origin (with the
/// record's original bytes, when the source kept them) comes with it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Why it failed, and where.
    pub error: ItemError,
}

pub(super) struct MailboxSpec<T> {
    pub(super) capacity: usize,
    pub(super) overflow: Overflow,
    pub(super) byte_budget: Option<(usize, Weigher<T>)>,
}

/// A stage with its name and settings, ready to connect with [`Stream::via`](crate::graph::Stream::via)
/// or [`Stream::to`](crate::graph::Stream::to).
pub struct StageSpec<S: Stage> {
    pub(super) name: String,
    pub(super) stage: S,
    pub(super) mailbox: MailboxSpec<S::In>,
    pub(super) concurrency: usize,
    pub(super) order: Order,
    pub(super) key: Option<KeyFn<S::In>>,
    pub(super) spawn_items: bool,
}

impl<S: Stage> StageSpec<S> {
    /// `stage` under `name` (unique in the graph), with a mailbox of
    /// [`DEFAULT_CAPACITY`], [`Overflow::Block`], one item at a time, or
    /// as many as the stage's [`concurrency_hint`](Stage::concurrency_hint)
    /// says (a [`blocking`](crate::blocking) stage's `max_in_flight`, the
    /// mailbox then at least that large).
    pub fn new(name: impl Into<String>, stage: S) -> Self {
        let concurrency = stage.concurrency_hint().unwrap_or(1).max(1);
        StageSpec {
            name: name.into(),
            stage,
            mailbox: MailboxSpec {
                capacity: DEFAULT_CAPACITY.max(concurrency),
                overflow: Overflow::Block,
                byte_budget: None,
            },
            concurrency,
            order: Order::Unordered,
            key: None,
            spawn_items: true,
        }
    }

    /// The mailbox capacity in items: items waiting plus items in progress.
    ///
    /// # Backpressure
    ///
    /// Must be at least the concurrency (checked at build). See the
    /// [mailbox module](crate::mailbox) on choosing a bound.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.mailbox.capacity = capacity;
        self
    }

    /// What happens when the mailbox is full (default [`Overflow::Block`]).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.mailbox.overflow = overflow;
        self
    }

    /// Also bounds the mailbox by the total size of its items.
    pub fn max_bytes(
        mut self,
        max_bytes: usize,
        weigher: impl Fn(&S::In) -> usize + Send + Sync + 'static,
    ) -> Self {
        self.mailbox.byte_budget = Some((max_bytes, Arc::new(weigher)));
        self
    }

    /// How many items the stage processes at once (its max in flight). With
    /// more than one, each item runs on its own task, so sync work runs in
    /// parallel across cores.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Whether, with a concurrency above one, each item runs on a task of
    /// its own (the default: the synchronous parts of several items then
    /// run in parallel across cores). With `false` the items' futures are
    /// polled on the stage's own task: no task per item (an allocation, a
    /// schedule and a wake-up each), for a stage that mostly awaits, such
    /// as a sink awaiting each record's acknowledgement from a broker; the
    /// synchronous parts then run one at a time. A panic still fails only
    /// its item.
    pub fn spawn_items(mut self, spawn: bool) -> Self {
        self.spawn_items = spawn;
        self
    }

    /// The order outputs leave in when the concurrency is above one.
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// The key for [`Order::PerKey`] (implies it); `None` means unordered.
    pub fn key_by(
        mut self,
        key: impl Fn(&S::In, &Origin) -> Option<u64> + Send + Sync + 'static,
    ) -> Self {
        self.key = Some(Arc::new(key));
        self.order = Order::PerKey;
        self
    }
}

/// A batch stage with its name and settings. See [`BatchConfig`].
pub struct BatchSpec<S: BatchStage> {
    pub(super) name: String,
    pub(super) stage: S,
    pub(super) mailbox: MailboxSpec<S::In>,
    pub(super) batch: BatchConfig<S::In>,
}

impl<S: BatchStage> BatchSpec<S> {
    /// `stage` under `name`, batching as `batch` says; the mailbox holds two
    /// batches by default (one in progress, one gathering).
    pub fn new(name: impl Into<String>, stage: S, batch: BatchConfig<S::In>) -> Self {
        BatchSpec {
            name: name.into(),
            stage,
            mailbox: MailboxSpec {
                capacity: batch.max_items.saturating_mul(2),
                overflow: Overflow::Block,
                byte_budget: None,
            },
            batch,
        }
    }

    /// The mailbox capacity; at least the batch size (checked at build).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.mailbox.capacity = capacity;
        self
    }

    /// What happens when the mailbox is full (default [`Overflow::Block`]).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.mailbox.overflow = overflow;
        self
    }
}
