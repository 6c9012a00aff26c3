//! The receiving half of a mailbox, owned by one stage.

use std::fmt;
use std::sync::Arc;

use crate::envelope::Envelope;

use super::MailboxStats;
use super::shared::{Shared, release_on, take};
use super::slot::{Release, Slot, SlotGuard};

/// The receiving half of a mailbox, owned by one stage.
pub struct Receiver<T> {
    pub(super) shared: Arc<Shared<T>>,
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
    /// Each envelope comes with the [`SlotGuard`](super::SlotGuard) of its place: taken items
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

    pub(super) fn guard(&self, slot: Slot) -> SlotGuard<T> {
        SlotGuard {
            shared: self.shared.clone(),
            slot: Some(slot),
        }
    }

    /// [`recv_many`](Receiver::recv_many) for the stage drivers: the slots
    /// come raw, to be given back in bulk with [`Receiver::release`](super::Receiver::release).
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
