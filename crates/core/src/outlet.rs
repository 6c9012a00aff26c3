//! Where a node's outputs go: one mailbox, several (broadcast), one of two
//! by predicate (route), or nowhere (the end of a stream: delivered).

use std::collections::VecDeque;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::envelope::Envelope;
use crate::error::{FailureKind, ItemError};
use crate::mailbox::{Permit, Release, Sender, Slot, TryReserveError, TrySendError};

/// A routing predicate.
pub(crate) type Pred<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

pub(crate) enum Outlet<T> {
    /// Into one stage's mailbox.
    Mailbox(Sender<T>),
    /// A copy to each; the acknowledgement is split.
    Broadcast {
        branches: Vec<Outlet<T>>,
        clone: fn(&T) -> T,
    },
    /// To `yes` when the predicate holds, else to `no`.
    Route {
        pred: Pred<T>,
        yes: Box<Outlet<T>>,
        no: Box<Outlet<T>>,
    },
    /// The end of a stream: reaching it means delivered.
    Terminal,
}

impl<T> Clone for Outlet<T> {
    fn clone(&self) -> Self {
        match self {
            Outlet::Mailbox(tx) => Outlet::Mailbox(tx.clone()),
            Outlet::Broadcast { branches, clone } => Outlet::Broadcast {
                branches: branches.clone(),
                clone: *clone,
            },
            Outlet::Route { pred, yes, no } => Outlet::Route {
                pred: pred.clone(),
                yes: yes.clone(),
                no: no.clone(),
            },
            Outlet::Terminal => Outlet::Terminal,
        }
    }
}

/// Why an envelope could not be handed on.
pub(crate) enum Refused<T> {
    /// The downstream stage is gone.
    Closed(Envelope<T>),
    /// Shutdown passed its deadline while waiting for room.
    Abandoned(Envelope<T>),
}

impl<T> Refused<T> {
    /// Resolves the envelope as failed, naming `stage` and why.
    pub(crate) fn fail(self, stage: &Arc<str>) {
        let (env, message) = match self {
            Refused::Closed(env) => (env, "the downstream stage has stopped"),
            Refused::Abandoned(env) => (
                env,
                "shutdown deadline passed while waiting for room downstream",
            ),
        };
        let (_, ack) = env.into_parts();
        ack.fail(ItemError::new(
            stage.clone(),
            FailureKind::Abandoned,
            message,
        ));
    }
}

/// Room reserved in every mailbox an envelope will reach: a copy's place in
/// each branch of a broadcast, the chosen (or, before the payload is known,
/// both) sides of a route. Sending never waits; dropping gives the room back.
pub(crate) enum OutletPermit<T> {
    Mailbox(Permit<T>),
    /// A broadcast branch whose stage is gone: the copy sent here fails.
    Closed,
    Broadcast {
        parts: Vec<OutletPermit<T>>,
        clone: fn(&T) -> T,
    },
    /// Both sides reserved; the predicate picks one at send time.
    Route {
        pred: Pred<T>,
        yes: Box<OutletPermit<T>>,
        no: Box<OutletPermit<T>>,
    },
    Terminal,
}

impl<T> OutletPermit<T> {
    /// Sends `env` into the reserved room (a broadcast splits its
    /// acknowledgement and sends a copy into each branch's room).
    pub(crate) fn send(self, env: Envelope<T>) {
        match self {
            OutletPermit::Mailbox(permit) => permit.send(env),
            OutletPermit::Terminal => env.into_parts().1.deliver(),
            OutletPermit::Closed => {
                let (_, ack) = env.into_parts();
                ack.fail(ItemError::new(
                    "broadcast",
                    FailureKind::Abandoned,
                    "the downstream stage has stopped",
                ));
            }
            OutletPermit::Route { pred, yes, no } => {
                if pred(env.payload()) {
                    yes.send(env);
                } else {
                    no.send(env);
                }
            }
            OutletPermit::Broadcast { parts, clone } => {
                let (payload, ack) = env.into_parts();
                let acks = ack.split(parts.len());
                let last = parts.len() - 1;
                let mut payload = Some(payload);
                for (i, (part, ack)) in parts.into_iter().zip(acks).enumerate() {
                    let copy = if i == last {
                        payload.take()
                    } else {
                        payload.as_ref().map(clone)
                    };
                    let copy = copy
                        .unwrap_or_else(|| unreachable!("payload moved before the last branch"));
                    part.send(Envelope::new(copy, ack));
                }
            }
        }
    }
}

/// Why a reservation could not be made now.
enum Stop<'a, T> {
    /// This mailbox has no room for an item of this weight.
    Full {
        tx: &'a Sender<T>,
        weight: usize,
    },
    Closed,
}

/// Why a reservation stopped waiting.
pub(crate) enum ReserveStop {
    Closed,
    Abandoned,
}

/// How a flush ended early.
pub(crate) enum FlushStop {
    Closed,
    Abandoned,
}

impl<T: Send + 'static> Outlet<T> {
    /// Hands one envelope on, waiting for room (until `abandon`).
    pub(crate) async fn send(
        &self,
        env: Envelope<T>,
        abandon: &CancellationToken,
    ) -> Result<(), Refused<T>> {
        match self {
            Outlet::Terminal => {
                let (_, ack) = env.into_parts();
                ack.deliver();
                Ok(())
            }
            Outlet::Mailbox(tx) => {
                let mut env = env;
                loop {
                    match tx.try_send(env) {
                        Ok(()) => return Ok(()),
                        Err(crate::mailbox::TrySendError::Closed(e)) => {
                            return Err(Refused::Closed(e));
                        }
                        Err(crate::mailbox::TrySendError::Full(e)) => env = e,
                    }
                    let weight = tx.weight_of(&env);
                    tokio::select! {
                        biased;
                        () = tx.wait_room(weight) => {}
                        () = abandon.cancelled() => return Err(Refused::Abandoned(env)),
                    }
                }
            }
            Outlet::Route { pred, yes, no } => {
                if pred(env.payload()) {
                    Box::pin(yes.send(env, abandon)).await
                } else {
                    Box::pin(no.send(env, abandon)).await
                }
            }
            Outlet::Broadcast { .. } => {
                // Room in every branch first, then the copies: a branch that
                // fills meanwhile makes this wait, never fails a copy. No room
                // is held while waiting, so senders reserving the same
                // branches in different orders cannot deadlock.
                loop {
                    let (tx, weight) = match self.try_reserve_in(Some(env.payload())) {
                        Ok(permit) => {
                            permit.send(env);
                            return Ok(());
                        }
                        Err(Stop::Closed) => return Err(Refused::Closed(env)),
                        Err(Stop::Full { tx, weight }) => (tx, weight),
                    };
                    tokio::select! {
                        biased;
                        () = tx.wait_room(weight) => {}
                        () = abandon.cancelled() => return Err(Refused::Abandoned(env)),
                    }
                }
            }
        }
    }

    /// Reserves room for one envelope, whatever its payload, in every
    /// mailbox it may reach, waiting for room until `abandon`. Holds no
    /// room while it waits.
    pub(crate) async fn reserve(
        &self,
        abandon: &CancellationToken,
    ) -> Result<OutletPermit<T>, ReserveStop> {
        loop {
            let (tx, weight) = match self.try_reserve_in(None) {
                Ok(permit) => return Ok(permit),
                Err(Stop::Closed) => return Err(ReserveStop::Closed),
                Err(Stop::Full { tx, weight }) => (tx, weight),
            };
            tokio::select! {
                biased;
                () = tx.wait_room(weight) => {}
                () = abandon.cancelled() => return Err(ReserveStop::Abandoned),
            }
        }
    }

    /// Reserves room in every mailbox the envelope will reach, all or
    /// nothing, without waiting (for `payload` when known, else in every
    /// mailbox any payload may reach). A broadcast branch whose stage is
    /// gone gets a permit that fails its copy (the origin then hears a
    /// failure); only a stream whose every way on is gone is `Closed`.
    pub(crate) fn try_reserve(
        &self,
        payload: Option<&T>,
    ) -> Result<OutletPermit<T>, TryReserveError> {
        self.try_reserve_in(payload).map_err(|stop| match stop {
            Stop::Full { .. } => TryReserveError::Full,
            Stop::Closed => TryReserveError::Closed,
        })
    }

    /// [`try_reserve`](Outlet::try_reserve), naming the full mailbox.
    fn try_reserve_in<'a>(&'a self, payload: Option<&T>) -> Result<OutletPermit<T>, Stop<'a, T>> {
        match self {
            Outlet::Terminal => Ok(OutletPermit::Terminal),
            Outlet::Mailbox(tx) => {
                let weight = payload.map_or(0, |p| tx.weight_of_payload(p));
                match tx.try_reserve_for(weight) {
                    Ok(permit) => Ok(OutletPermit::Mailbox(permit)),
                    Err(TryReserveError::Full) => Err(Stop::Full { tx, weight }),
                    Err(TryReserveError::Closed) => Err(Stop::Closed),
                }
            }
            Outlet::Route { pred, yes, no } => match payload {
                Some(p) if pred(p) => yes.try_reserve_in(payload),
                Some(_) => no.try_reserve_in(payload),
                None => {
                    let yes = yes.try_reserve_in(None);
                    let no = no.try_reserve_in(None);
                    match (yes, no) {
                        (Err(full @ Stop::Full { .. }), _) | (_, Err(full @ Stop::Full { .. })) => {
                            Err(full)
                        }
                        (Err(Stop::Closed), Err(Stop::Closed)) => Err(Stop::Closed),
                        (yes, no) => Ok(OutletPermit::Route {
                            pred: pred.clone(),
                            yes: Box::new(yes.unwrap_or(OutletPermit::Closed)),
                            no: Box::new(no.unwrap_or(OutletPermit::Closed)),
                        }),
                    }
                }
            },
            Outlet::Broadcast { branches, clone } => {
                let mut parts = Vec::with_capacity(branches.len());
                for branch in branches {
                    match branch.try_reserve_in(payload) {
                        Ok(permit) => parts.push(permit),
                        Err(Stop::Closed) => parts.push(OutletPermit::Closed),
                        // Dropping `parts` gives back what was reserved.
                        Err(full @ Stop::Full { .. }) => return Err(full),
                    }
                }
                Ok(OutletPermit::Broadcast {
                    parts,
                    clone: *clone,
                })
            }
        }
    }

    /// Sends everything in `pending`, in order, giving back each input's
    /// slot as its last output leaves. Stops early (leaving the rest in
    /// `pending`) if the downstream is gone or on `abandon`.
    pub(crate) async fn flush(
        &self,
        pending: &mut VecDeque<(Envelope<T>, Option<Slot>)>,
        on_release: &mut (dyn FnMut(Release) + Send),
        abandon: &CancellationToken,
    ) -> Result<(), FlushStop> {
        match self {
            Outlet::Mailbox(tx) => loop {
                let release = tx.push_some(pending).map_err(|_| FlushStop::Closed)?;
                on_release(release);
                let Some((next, _)) = pending.front() else {
                    return Ok(());
                };
                let weight = tx.weight_of(next);
                tokio::select! {
                    biased;
                    () = tx.wait_room(weight) => {}
                    () = abandon.cancelled() => return Err(FlushStop::Abandoned),
                }
            },
            Outlet::Terminal => {
                let mut release = Release::default();
                for (env, slot) in pending.drain(..) {
                    let (_, ack) = env.into_parts();
                    ack.deliver();
                    if let Some(slot) = slot {
                        release.add(slot);
                    }
                }
                on_release(release);
                Ok(())
            }
            _ => {
                while let Some((env, slot)) = pending.pop_front() {
                    match self.send(env, abandon).await {
                        Ok(()) => {
                            if let Some(slot) = slot {
                                let mut r = Release::default();
                                r.add(slot);
                                on_release(r);
                            }
                        }
                        Err(Refused::Closed(env)) => {
                            pending.push_front((env, slot));
                            return Err(FlushStop::Closed);
                        }
                        Err(Refused::Abandoned(env)) => {
                            pending.push_front((env, slot));
                            return Err(FlushStop::Abandoned);
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Hands one envelope on without waiting. A broadcast reserves room in
    /// every branch first and sends only when all have it, so a branch
    /// filled by another sender hands the envelope back instead of failing
    /// a copy.
    pub(crate) fn try_send(&self, env: Envelope<T>) -> Result<(), TrySendError<T>> {
        match self {
            Outlet::Terminal => {
                env.into_parts().1.deliver();
                Ok(())
            }
            Outlet::Mailbox(tx) => tx.try_send(env),
            Outlet::Route { pred, yes, no } => {
                if pred(env.payload()) {
                    yes.try_send(env)
                } else {
                    no.try_send(env)
                }
            }
            Outlet::Broadcast { .. } => match self.try_reserve(Some(env.payload())) {
                Ok(permit) => {
                    permit.send(env);
                    Ok(())
                }
                Err(TryReserveError::Full) => Err(TrySendError::Full(env)),
                Err(TryReserveError::Closed) => Err(TrySendError::Closed(env)),
            },
        }
    }

    /// Waits until every downstream mailbox has room for one more item.
    pub(crate) async fn ready(&self) {
        match self {
            Outlet::Mailbox(tx) => tx.ready().await,
            Outlet::Terminal => {}
            Outlet::Route { yes, no, .. } => {
                Box::pin(yes.ready()).await;
                Box::pin(no.ready()).await;
            }
            Outlet::Broadcast { branches, .. } => {
                for b in branches {
                    Box::pin(b.ready()).await;
                }
            }
        }
    }

    /// Whether some downstream mailbox is full.
    pub(crate) fn is_full(&self) -> bool {
        match self {
            Outlet::Mailbox(tx) => tx.is_full(),
            Outlet::Terminal => false,
            Outlet::Route { yes, no, .. } => yes.is_full() || no.is_full(),
            Outlet::Broadcast { branches, .. } => branches.iter().any(Outlet::is_full),
        }
    }
}

/// Resolves every pending envelope as abandoned and collects their slots.
pub(crate) fn abandon_pending<T>(
    pending: &mut VecDeque<(Envelope<T>, Option<Slot>)>,
    stage: &Arc<str>,
    message: &str,
) -> (Release, u64) {
    let mut release = Release::default();
    let mut n = 0;
    for (env, slot) in pending.drain(..) {
        let (_, ack) = env.into_parts();
        ack.fail(ItemError::new(
            stage.clone(),
            FailureKind::Abandoned,
            message,
        ));
        n += 1;
        if let Some(slot) = slot {
            release.add(slot);
        }
    }
    (release, n)
}
