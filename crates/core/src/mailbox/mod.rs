//! Bounded mailboxes: the only queues on the data path.
//!
//! A mailbox holds the envelopes waiting for one stage. Its capacity counts
//! both the envelopes waiting and the envelopes its stage has taken but not
//! finished, so the number of items a stage can have inside it is exactly its
//! capacity: backpressure is exact and memory is bounded by
//! `capacity × item size` (and by the optional byte budget).
//!
//! # Backpressure
//!
//! When a mailbox is full, its [`Overflow`] policy decides:
//! [`Overflow::Block`] makes the sender wait (the default, and the one that
//! loses nothing); [`Overflow::DropNewest`] and [`Overflow::DropOldest`] shed
//! load and resolve the dropped envelope's acknowledgement as
//! [`Outcome::Dropped`](crate::Outcome::Dropped), counted in the metrics.
//! [`Sender::try_send`] never waits and hands the envelope back when full.
//! [`Sender::reserve`] waits for room without giving up an envelope: the
//! [`Permit`] it returns holds one place until it sends (or is dropped), so
//! a send that may be cancelled (inside `select!`) loses nothing.
//!
//! # Slots
//!
//! A taken envelope keeps its place until its stage finishes it: a
//! [`SlotGuard`] holds it, and gives it back when dropped, exactly once.
//!
//! # A note on choosing a bound
//!
//! A bound trades latency and memory for smoothing. Start at about twice the
//! stage's concurrency (or its batch size, which a capacity must hold), raise
//! it only to absorb bursts you have measured, and watch the depth in the
//! metrics: a mailbox that sits full points at the stage after it.

mod errors;
mod receiver;
mod sender;
mod shared;
mod slot;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

pub use errors::{Closed, SendError, TryReserveError, TrySendError};
pub use receiver::Receiver;
pub use sender::Sender;
pub use slot::{Permit, SlotGuard};
pub(crate) use slot::{Release, Slot};

use shared::{Shared, State};

/// What a full mailbox does with a new envelope.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// The sender waits for room. Nothing is lost; the slowness travels upstream.
    #[default]
    Block,
    /// The new envelope is dropped (its acknowledgement resolves as dropped).
    DropNewest,
    /// The oldest waiting envelope is dropped to make room for the new one.
    /// Envelopes the stage is already working on are never dropped; when none
    /// is waiting, the new envelope is dropped instead.
    DropOldest,
}

/// Measures an item's size in bytes, for byte budgets and byte-bounded batches.
pub type Weigher<T> = Arc<dyn Fn(&T) -> usize + Send + Sync>;

/// Live counters of one mailbox, shared with the metrics registry.
#[derive(Debug)]
pub struct MailboxStats {
    pub(crate) stage: Arc<str>,
    pub(crate) capacity: usize,
    pub(crate) max_bytes: Option<usize>,
    pub(crate) overflow: Overflow,
    pub(crate) depth: AtomicUsize,
    pub(crate) peak_depth: AtomicUsize,
    pub(crate) bytes: AtomicUsize,
    pub(crate) dropped: AtomicU64,
    pub(crate) accepted: AtomicU64,
}

impl MailboxStats {
    /// Items waiting plus items the stage is working on.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// The capacity in items.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Envelopes dropped by the overflow policy.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Creates a mailbox for the stage named `stage`.
///
/// `capacity` counts items waiting plus items the stage is working on;
/// `max_bytes`, when set with a `weigher`, also bounds their total size.
///
/// # Panics
///
/// Panics if `capacity` is zero.
pub fn mailbox<T>(
    stage: impl Into<Arc<str>>,
    capacity: usize,
    overflow: Overflow,
    byte_budget: Option<(usize, Weigher<T>)>,
) -> (Sender<T>, Receiver<T>) {
    assert!(capacity > 0, "a mailbox needs a capacity of at least 1");
    let (max_bytes, weigher) = match byte_budget {
        Some((max, w)) => (Some(max), Some(w)),
        None => (None, None),
    };
    let stats = Arc::new(MailboxStats {
        stage: stage.into(),
        capacity,
        max_bytes,
        overflow,
        depth: AtomicUsize::new(0),
        peak_depth: AtomicUsize::new(0),
        bytes: AtomicUsize::new(0),
        dropped: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
    });
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::with_capacity(capacity.min(4096)),
            held: 0,
            reserved: 0,
            bytes: 0,
            senders: 1,
            rx_alive: true,
        }),
        not_empty: Notify::new(),
        not_full: Notify::new(),
        weigher,
        stats,
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}
