//! The places envelopes hold in a mailbox: a taken envelope's slot until
//! its stage finishes it, and a permit's reserved room until it sends.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::envelope::Envelope;

use super::shared::{Shared, release_on};

/// A place an envelope holds in its mailbox until the stage finishes it.
///
/// Internal and deliberately neither `Copy` nor `Clone`: it is given back
/// by moving it into a [`Release`], which [`Receiver::release`](super::Receiver::release) consumes,
/// so a slot cannot be given back twice. Outside the crate a taken
/// envelope's place is a [`SlotGuard`](super::SlotGuard).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(super) bytes: usize,
}

/// Slots to give back to a mailbox, summed (one lock for many).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Release {
    pub(super) items: usize,
    pub(super) bytes: usize,
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
/// guard (or [`SlotGuard::release`](super::SlotGuard::release)) gives the place back, exactly once.
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
    pub(super) shared: Arc<Shared<T>>,
    pub(super) slot: Option<Slot>,
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

/// Room for one envelope in a mailbox, reserved by [`Sender::reserve`](super::Sender::reserve) or
/// [`Sender::try_reserve`](super::Sender::try_reserve): [`Permit::send`](super::Permit::send) puts an envelope there
/// without waiting; dropping the permit gives the room back.
///
/// Under a drop policy ([`Overflow::DropNewest`](super::Overflow::DropNewest), [`Overflow::DropOldest`](super::Overflow::DropOldest))
/// a full mailbox reserves nothing (a send there never waits): the permit
/// then sends under the policy.
#[must_use = "a permit holds room in the mailbox until it sends or is dropped"]
pub struct Permit<T> {
    pub(super) shared: Arc<Shared<T>>,
    /// Whether room was reserved (false: send under the drop policy).
    pub(super) reserved: bool,
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
