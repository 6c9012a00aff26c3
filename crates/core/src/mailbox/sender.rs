//! The sending half of a mailbox.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::envelope::Envelope;

use super::errors::{Closed, SendError, TryReserveError, TrySendError};
use super::shared::{Shared, State};
use super::slot::{Permit, Release, Slot};
use super::{MailboxStats, Overflow};

/// The sending half of a mailbox. Clone it for fan-in.
pub struct Sender<T> {
    pub(super) shared: Arc<Shared<T>>,
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
    /// [`Overflow::Block`](super::Overflow::Block). With a drop policy it never waits.
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
    /// stop waiting without losing the envelope, use [`Sender::try_send`](super::Sender::try_send)
    /// with [`Sender::ready`](super::Sender::ready).
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
    /// [`Overflow::Block`](super::Overflow::Block); [`TrySendError::Closed`] when the stage is gone.
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
    /// Waits like [`Sender::send`](super::Sender::send) under [`Overflow::Block`](super::Overflow::Block); under a drop
    /// policy it never waits (see [`Permit`](super::Permit)).
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
    /// [`Overflow::Block`](super::Overflow::Block); [`TryReserveError::Closed`] when the stage is gone.
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
        self.shared.after_push(moved, dropped);
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
        self.shared.after_push(moved, dropped);
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
