//! Where a node's outputs go: one mailbox, several (broadcast), one of two
//! by predicate (route), or nowhere (the end of a stream: delivered).
//!
//! - [`permit`]: reserving room before sending ([`OutletPermit`]).
//! - [`flush`]: handing on a node's pending outputs as room frees up.

mod flush;
mod permit;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::envelope::Envelope;
use crate::error::{FailureKind, ItemError};
use crate::mailbox::{Sender, TryReserveError, TrySendError};

pub(crate) use flush::{FlushStop, abandon_pending};
use permit::Stop;
pub(crate) use permit::{OutletPermit, ReserveStop};

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
