//! Reserving room in an outlet before there is an envelope to send: the
//! permit holds a place in every mailbox the envelope could go to.

use tokio_util::sync::CancellationToken;

use crate::envelope::Envelope;
use crate::error::{FailureKind, ItemError};
use crate::mailbox::{Permit, Sender, TryReserveError};

use super::{Outlet, Pred};

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
pub(super) enum Stop<'a, T> {
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

impl<T: Send + 'static> Outlet<T> {
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
    pub(super) fn try_reserve_in<'a>(
        &'a self,
        payload: Option<&T>,
    ) -> Result<OutletPermit<T>, Stop<'a, T>> {
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
}
