//! The state a mailbox's two halves share, under one lock: the queue, the
//! items held by the stage, the rooms reserved, and the overflow policy.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::ack::DropReason;
use crate::envelope::Envelope;

use super::slot::{Release, Slot};
use super::{MailboxStats, Overflow, Weigher};

pub(super) struct State<T> {
    pub(super) queue: VecDeque<(Envelope<T>, Slot)>,
    /// Items taken by the stage and not yet released.
    pub(super) held: usize,
    /// Rooms reserved by permits and not yet used.
    pub(super) reserved: usize,
    /// Bytes queued plus bytes held.
    pub(super) bytes: usize,
    pub(super) senders: usize,
    pub(super) rx_alive: bool,
}

pub(super) struct Shared<T> {
    pub(super) state: Mutex<State<T>>,
    pub(super) not_empty: Notify,
    pub(super) not_full: Notify,
    pub(super) weigher: Option<Weigher<T>>,
    pub(super) stats: Arc<MailboxStats>,
}

impl<T> Shared<T> {
    pub(super) fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the queue inconsistent
        // (every mutation is a single push/pop), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn publish_depth(&self, st: &State<T>) {
        let depth = st.queue.len() + st.held;
        self.stats.depth.store(depth, Ordering::Relaxed);
        self.stats.bytes.store(st.bytes, Ordering::Relaxed);
        if depth > self.stats.peak_depth.load(Ordering::Relaxed) {
            self.stats.peak_depth.store(depth, Ordering::Relaxed);
        }
    }

    pub(super) fn fits(&self, st: &State<T>, weight: usize) -> bool {
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

    pub(super) fn weigh(&self, env: &Envelope<T>) -> usize {
        self.weigher.as_ref().map_or(0, |w| w(env.payload()))
    }

    /// Pushes under the lock following the overflow policy: `Ok(true)` if
    /// queued, `Ok(false)` if the policy dropped it, `Err` if it must wait.
    /// Envelopes to drop are put in `dropped` to be resolved after unlocking.
    pub(super) fn push_locked(
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

    /// After a push of several envelopes, outside the lock: counts the
    /// `moved` ones and wakes the stage once, resolves those the policy
    /// dropped.
    pub(super) fn after_push(&self, moved: u64, dropped: Vec<Envelope<T>>) {
        if moved > 0 {
            self.stats.accepted.fetch_add(moved, Ordering::Relaxed);
            self.not_empty.notify_one();
        }
        self.resolve_dropped(dropped);
    }

    pub(super) fn resolve_dropped(&self, dropped: Vec<Envelope<T>>) {
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

pub(super) fn release_on<T>(shared: &Shared<T>, release: Release) {
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

pub(super) fn take<T>(
    shared: &Shared<T>,
    out: &mut Vec<(Envelope<T>, Slot)>,
    max: usize,
) -> Option<bool> {
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
