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

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::ack::DropReason;
use crate::envelope::Envelope;

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

/// The error of [`Sender::send`]: the receiving stage is gone. The envelope
/// comes back.
pub struct SendError<T>(pub Envelope<T>);

impl<T> SendError<T> {
    /// The envelope that could not be sent.
    pub fn into_inner(self) -> Envelope<T> {
        self.0
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the receiving stage has stopped")
    }
}

impl<T> std::error::Error for SendError<T> {}

/// The error of [`Sender::try_send`]; the envelope comes back either way.
pub enum TrySendError<T> {
    /// The mailbox is full (and its policy is [`Overflow::Block`]).
    Full(Envelope<T>),
    /// The receiving stage is gone.
    Closed(Envelope<T>),
}

impl<T> TrySendError<T> {
    /// The envelope that was not sent.
    pub fn into_inner(self) -> Envelope<T> {
        match self {
            TrySendError::Full(e) | TrySendError::Closed(e) => e,
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("the mailbox is full"),
            TrySendError::Closed(_) => f.write_str("the receiving stage has stopped"),
        }
    }
}

impl<T> std::error::Error for TrySendError<T> {}

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

/// A place an envelope holds in its mailbox until the stage finishes it.
///
/// Internal and deliberately neither `Copy` nor `Clone`: it is given back
/// by moving it into a [`Release`], which [`Receiver::release`] consumes,
/// so a slot cannot be given back twice. Outside the crate a taken
/// envelope's place is a [`SlotGuard`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Slot {
    bytes: usize,
}

/// Slots to give back to a mailbox, summed (one lock for many).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Release {
    items: usize,
    bytes: usize,
}

impl Release {
    /// Adds one slot.
    pub(crate) fn add(&mut self, slot: Slot) {
        self.items += 1;
        self.bytes += slot.bytes;
    }

    /// Whether there is nothing to release.
    pub(crate) fn is_empty(&self) -> bool {
        self.items == 0
    }
}

/// The place a taken envelope holds in its mailbox: it still counts
/// against the capacity until its stage finishes the envelope. Dropping the
/// guard (or [`SlotGuard::release`]) gives the place back, exactly once.
///
/// Not `Copy` and not `Clone`, so a place cannot be given back twice:
///
/// ```compile_fail
/// fn twice<T>(slot: sluicegate_core::mailbox::SlotGuard<T>) {
///     slot.release();
///     slot.release(); // use of moved value
/// }
/// ```
#[must_use = "dropping the guard frees the place at once; keep it until the envelope is finished"]
pub struct SlotGuard<T> {
    shared: Arc<Shared<T>>,
    slot: Option<Slot>,
}

impl<T> SlotGuard<T> {
    /// Gives the place back (the same as dropping the guard).
    pub fn release(self) {
        drop(self);
    }
}

impl<T> Drop for SlotGuard<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let mut release = Release::default();
            release.add(slot);
            release_on(&self.shared, release);
        }
    }
}

impl<T> fmt::Debug for SlotGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotGuard")
            .field("stage", &self.shared.stats.stage)
            .finish()
    }
}

/// Room for one envelope in a mailbox, reserved by [`Sender::reserve`] or
/// [`Sender::try_reserve`]: [`Permit::send`] puts an envelope there
/// without waiting; dropping the permit gives the room back.
///
/// Under a drop policy ([`Overflow::DropNewest`], [`Overflow::DropOldest`])
/// a full mailbox reserves nothing (a send there never waits): the permit
/// then sends under the policy.
#[must_use = "a permit holds room in the mailbox until it sends or is dropped"]
pub struct Permit<T> {
    shared: Arc<Shared<T>>,
    /// Whether room was reserved (false: send under the drop policy).
    reserved: bool,
}

impl<T> Permit<T> {
    /// Puts `env` in the reserved room. Never waits.
    ///
    /// If the receiving stage stopped since the reservation, the envelope
    /// is resolved as failed ([`FailureKind::Abandoned`](crate::FailureKind::Abandoned)),
    /// as the envelopes left in its mailbox are.
    pub fn send(mut self, env: Envelope<T>) {
        let weight = self.shared.weigh(&env);
        let reserved = std::mem::replace(&mut self.reserved, false);
        let mut dropped = Vec::new();
        let refused = {
            let mut st = self.shared.lock();
            if reserved {
                st.reserved -= 1;
            }
            if !st.rx_alive {
                Some(env)
            } else {
                let queued = if reserved {
                    // The room was counted when reserved; the bytes only now.
                    st.bytes += weight;
                    st.queue.push_back((env, Slot { bytes: weight }));
                    true
                } else {
                    match self.shared.push_locked(&mut st, env, weight, &mut dropped) {
                        Ok(queued) => queued,
                        // Unreserved permits exist only under drop policies,
                        // which never refuse; count it as dropped if one did.
                        Err(env) => {
                            dropped.push(env);
                            false
                        }
                    }
                };
                self.shared.publish_depth(&st);
                if queued {
                    self.shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
        };
        match refused {
            Some(env) => {
                self.shared.not_full.notify_waiters();
                let (_, ack) = env.into_parts();
                ack.fail(crate::error::ItemError::new(
                    self.shared.stats.stage.clone(),
                    crate::error::FailureKind::Abandoned,
                    "the stage stopped before taking this item",
                ));
            }
            None => {
                self.shared.not_empty.notify_one();
                self.shared.resolve_dropped(dropped);
            }
        }
    }
}

impl<T> Drop for Permit<T> {
    fn drop(&mut self) {
        if self.reserved {
            self.shared.lock().reserved -= 1;
            self.shared.not_full.notify_waiters();
        }
    }
}

impl<T> fmt::Debug for Permit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("stage", &self.shared.stats.stage)
            .field("reserved", &self.reserved)
            .finish()
    }
}

/// The error of [`Sender::try_reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryReserveError {
    /// The mailbox is full (and its policy is [`Overflow::Block`]).
    #[error("the mailbox is full")]
    Full,
    /// The receiving stage is gone.
    #[error("the receiving stage has stopped")]
    Closed,
}

struct State<T> {
    queue: VecDeque<(Envelope<T>, Slot)>,
    /// Items taken by the stage and not yet released.
    held: usize,
    /// Rooms reserved by permits and not yet used.
    reserved: usize,
    /// Bytes queued plus bytes held.
    bytes: usize,
    senders: usize,
    rx_alive: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    not_empty: Notify,
    not_full: Notify,
    weigher: Option<Weigher<T>>,
    stats: Arc<MailboxStats>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the queue inconsistent
        // (every mutation is a single push/pop), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish_depth(&self, st: &State<T>) {
        let depth = st.queue.len() + st.held;
        self.stats.depth.store(depth, Ordering::Relaxed);
        self.stats.bytes.store(st.bytes, Ordering::Relaxed);
        if depth > self.stats.peak_depth.load(Ordering::Relaxed) {
            self.stats.peak_depth.store(depth, Ordering::Relaxed);
        }
    }

    fn fits(&self, st: &State<T>, weight: usize) -> bool {
        let used = st.queue.len() + st.held + st.reserved;
        if used >= self.stats.capacity {
            return false;
        }
        match self.stats.max_bytes {
            // An item bigger than the whole budget still goes through alone.
            Some(max) => used == 0 || st.bytes + weight <= max,
            None => true,
        }
    }

    fn weigh(&self, env: &Envelope<T>) -> usize {
        self.weigher.as_ref().map_or(0, |w| w(env.payload()))
    }

    /// Pushes under the lock following the overflow policy: `Ok(true)` if
    /// queued, `Ok(false)` if the policy dropped it, `Err` if it must wait.
    /// Envelopes to drop are put in `dropped` to be resolved after unlocking.
    fn push_locked(
        &self,
        st: &mut State<T>,
        env: Envelope<T>,
        weight: usize,
        dropped: &mut Vec<Envelope<T>>,
    ) -> Result<bool, Envelope<T>> {
        if self.fits(st, weight) {
            st.bytes += weight;
            st.queue.push_back((env, Slot { bytes: weight }));
            return Ok(true);
        }
        match self.stats.overflow {
            Overflow::Block => Err(env),
            Overflow::DropNewest => {
                dropped.push(env);
                Ok(false)
            }
            Overflow::DropOldest => {
                while !self.fits(st, weight) {
                    match st.queue.pop_front() {
                        Some((old, slot)) => {
                            st.bytes -= slot.bytes;
                            dropped.push(old);
                        }
                        None => {
                            dropped.push(env);
                            return Ok(false);
                        }
                    }
                }
                st.bytes += weight;
                st.queue.push_back((env, Slot { bytes: weight }));
                Ok(true)
            }
        }
    }

    fn resolve_dropped(&self, dropped: Vec<Envelope<T>>) {
        if dropped.is_empty() {
            return;
        }
        self.stats
            .dropped
            .fetch_add(dropped.len() as u64, Ordering::Relaxed);
        for env in dropped {
            let (_, ack) = env.into_parts();
            ack.drop_with(DropReason::MailboxFull {
                stage: self.stats.stage.clone(),
                policy: self.stats.overflow,
            });
        }
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

/// The sending half of a mailbox. Clone it for fan-in.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let last = {
            let mut st = self.shared.lock();
            st.senders -= 1;
            st.senders == 0
        };
        if last {
            self.shared.not_empty.notify_waiters();
            self.shared.not_empty.notify_one();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("stage", &self.shared.stats.stage)
            .finish()
    }
}

impl<T> Sender<T> {
    /// Sends an envelope, waiting for room if the policy is
    /// [`Overflow::Block`]. With a drop policy it never waits.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the envelope when the receiving stage is gone.
    ///
    /// # Backpressure
    ///
    /// This is where backpressure bites: the caller waits until the stage
    /// finishes an item. Not cancel-safe: dropping the future while it waits
    /// drops the envelope, whose acknowledgement then counts as leaked. To
    /// stop waiting without losing the envelope, use [`Sender::try_send`]
    /// with [`Sender::ready`].
    pub async fn send(&self, env: Envelope<T>) -> Result<(), SendError<T>> {
        let mut env = env;
        loop {
            match self.try_send(env) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(e)) => return Err(SendError(e)),
                Err(TrySendError::Full(e)) => env = e,
            }
            let weight = self.shared.weigh(&env);
            let notified = self.shared.not_full.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                // Re-check after registering, so a release in between is not missed.
                let st = self.shared.lock();
                if !st.rx_alive || self.shared.fits(&st, weight) {
                    continue;
                }
            }
            notified.await;
        }
    }

    /// Sends without waiting.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] when the mailbox is full under
    /// [`Overflow::Block`]; [`TrySendError::Closed`] when the stage is gone.
    /// The envelope comes back in both.
    pub fn try_send(&self, env: Envelope<T>) -> Result<(), TrySendError<T>> {
        let weight = self.shared.weigh(&env);
        let mut dropped = Vec::new();
        let result = {
            let mut st = self.shared.lock();
            if !st.rx_alive {
                return Err(TrySendError::Closed(env));
            }
            let r = self.shared.push_locked(&mut st, env, weight, &mut dropped);
            if r.is_ok() {
                self.shared.publish_depth(&st);
            }
            r
        };
        match result {
            Ok(queued) => {
                if queued {
                    self.shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
                    self.shared.not_empty.notify_one();
                }
                self.shared.resolve_dropped(dropped);
                Ok(())
            }
            Err(env) => Err(TrySendError::Full(env)),
        }
    }

    /// Waits for room for one envelope and reserves it.
    ///
    /// Cancel-safe: dropping the future while it waits loses nothing (it
    /// holds no envelope), and a permit dropped unused gives its room back.
    /// With a byte budget the permit reserves the place only; the envelope's
    /// bytes count from the send, so a budget can be exceeded by the
    /// envelopes sent through permits that were outstanding at once.
    ///
    /// # Errors
    ///
    /// [`Closed`] when the receiving stage is gone.
    ///
    /// # Backpressure
    ///
    /// Waits like [`Sender::send`] under [`Overflow::Block`]; under a drop
    /// policy it never waits (see [`Permit`]).
    pub async fn reserve(&self) -> Result<Permit<T>, Closed> {
        self.reserve_for(0).await
    }

    /// Waits for room for an item of `weight` and reserves it.
    pub(crate) async fn reserve_for(&self, weight: usize) -> Result<Permit<T>, Closed> {
        loop {
            match self.try_reserve_for(weight) {
                Ok(permit) => return Ok(permit),
                Err(TryReserveError::Closed) => return Err(Closed),
                Err(TryReserveError::Full) => {}
            }
            self.wait_room(weight).await;
        }
    }

    /// Reserves room for one envelope without waiting.
    ///
    /// # Errors
    ///
    /// [`TryReserveError::Full`] when the mailbox is full under
    /// [`Overflow::Block`]; [`TryReserveError::Closed`] when the stage is gone.
    pub fn try_reserve(&self) -> Result<Permit<T>, TryReserveError> {
        self.try_reserve_for(0)
    }

    /// Reserves room for an item of `weight` without waiting.
    pub(crate) fn try_reserve_for(&self, weight: usize) -> Result<Permit<T>, TryReserveError> {
        let mut st = self.shared.lock();
        if !st.rx_alive {
            return Err(TryReserveError::Closed);
        }
        let reserved = if self.shared.fits(&st, weight) {
            st.reserved += 1;
            true
        } else if self.shared.stats.overflow == Overflow::Block {
            return Err(TryReserveError::Full);
        } else {
            false
        };
        Ok(Permit {
            shared: self.shared.clone(),
            reserved,
        })
    }

    /// Moves as many envelopes from the front of `items` as fit (or as the
    /// policy accepts), under one lock. Returns the slots that came with the
    /// moved envelopes, for the caller to release upstream.
    pub(crate) fn push_some(
        &self,
        items: &mut VecDeque<(Envelope<T>, Option<Slot>)>,
    ) -> Result<Release, Closed> {
        let mut dropped = Vec::new();
        let mut moved = 0u64;
        let mut release = Release::default();
        {
            let mut st = self.shared.lock();
            if !st.rx_alive {
                return Err(Closed);
            }
            while let Some((env, slot)) = items.pop_front() {
                let weight = self.shared.weigh(&env);
                match self.shared.push_locked(&mut st, env, weight, &mut dropped) {
                    Ok(queued) => {
                        moved += u64::from(queued);
                        if let Some(slot) = slot {
                            release.add(slot);
                        }
                    }
                    Err(env) => {
                        items.push_front((env, slot));
                        break;
                    }
                }
            }
            self.shared.publish_depth(&st);
        }
        if moved > 0 {
            self.shared
                .stats
                .accepted
                .fetch_add(moved, Ordering::Relaxed);
            self.shared.not_empty.notify_one();
        }
        self.shared.resolve_dropped(dropped);
        Ok(release)
    }

    /// Moves as many envelopes from the front of `items` as fit (or as the
    /// policy accepts), under one lock, with one wake-up of the stage.
    /// Returns how many it moved.
    pub(crate) fn try_push_front(
        &self,
        items: &mut VecDeque<Envelope<T>>,
    ) -> Result<usize, Closed> {
        let mut dropped = Vec::new();
        let mut moved = 0u64;
        let before = items.len();
        {
            let mut st = self.shared.lock();
            if !st.rx_alive {
                return Err(Closed);
            }
            while let Some(env) = items.pop_front() {
                let weight = self.shared.weigh(&env);
                match self.shared.push_locked(&mut st, env, weight, &mut dropped) {
                    Ok(queued) => moved += u64::from(queued),
                    Err(env) => {
                        items.push_front(env);
                        break;
                    }
                }
            }
            if items.len() < before {
                self.shared.publish_depth(&st);
            }
        }
        if moved > 0 {
            self.shared
                .stats
                .accepted
                .fetch_add(moved, Ordering::Relaxed);
            self.shared.not_empty.notify_one();
        }
        self.shared.resolve_dropped(dropped);
        Ok(before - items.len())
    }

    /// The weight of `env` under this mailbox's byte budget (0 without one).
    pub(crate) fn weight_of(&self, env: &Envelope<T>) -> usize {
        self.shared.weigh(env)
    }

    /// The weight of a payload under this mailbox's byte budget.
    pub(crate) fn weight_of_payload(&self, payload: &T) -> usize {
        self.shared.weigher.as_ref().map_or(0, |w| w(payload))
    }

    /// Waits until an item of `weight` would fit (or the stage is gone).
    pub(crate) async fn wait_room(&self, weight: usize) {
        self.wait_until(|shared, st| shared.fits(st, weight)).await
    }

    /// Waits until at least one more item fits.
    pub async fn ready(&self) {
        self.wait_until(|shared, st| shared.fits(st, 0)).await
    }

    async fn wait_until(&self, cond: impl Fn(&Shared<T>, &State<T>) -> bool) {
        loop {
            let notified = self.shared.not_full.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = self.shared.lock();
                if !st.rx_alive || cond(&self.shared, &st) {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Whether a send would have to wait (or drop) right now.
    pub fn is_full(&self) -> bool {
        let st = self.shared.lock();
        st.rx_alive && !self.shared.fits(&st, 0)
    }

    /// Whether the receiving stage is gone.
    pub fn is_closed(&self) -> bool {
        !self.shared.lock().rx_alive
    }

    /// The mailbox's live counters.
    pub fn stats(&self) -> &Arc<MailboxStats> {
        &self.shared.stats
    }
}

/// The receiving stage is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the receiving stage has stopped")]
pub struct Closed;

/// The receiving half of a mailbox, owned by one stage.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("stage", &self.shared.stats.stage)
            .finish()
    }
}

impl<T> Receiver<T> {
    /// Takes up to `max` envelopes into `out`, waiting for at least one.
    /// Returns `false` when every sender is gone and the mailbox is empty.
    ///
    /// Each envelope comes with the [`SlotGuard`] of its place: taken items
    /// still count against the capacity until their guards are dropped.
    pub async fn recv_many(
        &mut self,
        out: &mut Vec<(Envelope<T>, SlotGuard<T>)>,
        max: usize,
    ) -> bool {
        let mut raw = Vec::new();
        let got = self.take_many(&mut raw, max).await;
        out.extend(raw.into_iter().map(|(env, slot)| (env, self.guard(slot))));
        got
    }

    /// Takes up to `max` envelopes without waiting: `Some(true)` if it took
    /// any, `Some(false)` if the mailbox is closed and empty, `None` if empty.
    pub fn try_recv_many(
        &mut self,
        out: &mut Vec<(Envelope<T>, SlotGuard<T>)>,
        max: usize,
    ) -> Option<bool> {
        let mut raw = Vec::new();
        let got = take(&self.shared, &mut raw, max);
        out.extend(raw.into_iter().map(|(env, slot)| (env, self.guard(slot))));
        got
    }

    /// Takes one envelope, waiting for it; `None` once closed and drained.
    pub async fn recv(&mut self) -> Option<(Envelope<T>, SlotGuard<T>)> {
        let mut out = Vec::with_capacity(1);
        if self.take_many(&mut out, 1).await {
            out.pop().map(|(env, slot)| (env, self.guard(slot)))
        } else {
            None
        }
    }

    fn guard(&self, slot: Slot) -> SlotGuard<T> {
        SlotGuard {
            shared: self.shared.clone(),
            slot: Some(slot),
        }
    }

    /// [`recv_many`](Receiver::recv_many) for the stage drivers: the slots
    /// come raw, to be given back in bulk with [`Receiver::release`].
    pub(crate) async fn take_many(
        &mut self,
        out: &mut Vec<(Envelope<T>, Slot)>,
        max: usize,
    ) -> bool {
        loop {
            let notified = self.shared.not_empty.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match take(&self.shared, out, max) {
                Some(true) => return true,
                Some(false) => return false,
                None => notified.await,
            }
        }
    }

    /// Gives slots back: their envelopes are finished, senders may refill.
    pub(crate) fn release(&self, release: Release) {
        release_on(&self.shared, release);
    }

    /// Whether every sender is gone (items may still be queued).
    pub fn senders_gone(&self) -> bool {
        self.shared.lock().senders == 0
    }

    /// Refuses further sends and returns the queued envelopes (for
    /// abandoning them on a forced shutdown).
    pub fn close_and_take(&mut self) -> Vec<Envelope<T>> {
        let items: Vec<_> = {
            let mut st = self.shared.lock();
            st.rx_alive = false;
            let n = st.queue.len();
            st.held += n;
            st.queue.drain(..).map(|(e, _)| e).collect()
        };
        self.shared.not_full.notify_waiters();
        items
    }

    /// The mailbox's live counters.
    pub fn stats(&self) -> &Arc<MailboxStats> {
        &self.shared.stats
    }
}

fn release_on<T>(shared: &Shared<T>, release: Release) {
    if release.is_empty() {
        return;
    }
    {
        let mut st = shared.lock();
        st.held -= release.items;
        st.bytes -= release.bytes;
        shared.publish_depth(&st);
    }
    shared.not_full.notify_waiters();
}

fn take<T>(shared: &Shared<T>, out: &mut Vec<(Envelope<T>, Slot)>, max: usize) -> Option<bool> {
    let more_left;
    {
        let mut st = shared.lock();
        if st.queue.is_empty() {
            return if st.senders == 0 { Some(false) } else { None };
        }
        let n = max.max(1).min(st.queue.len());
        out.extend(st.queue.drain(..n));
        st.held += n;
        more_left = !st.queue.is_empty();
    }
    if more_left {
        // Keep a wake-up pending for the rest.
        shared.not_empty.notify_one();
    }
    Some(true)
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let leftover = self.close_and_take();
        for env in leftover {
            let (_, ack) = env.into_parts();
            ack.fail(crate::error::ItemError::new(
                self.shared.stats.stage.clone(),
                crate::error::FailureKind::Abandoned,
                "the stage stopped before taking this item",
            ));
        }
    }
}
