//! Where a node's outputs go: one mailbox, several (broadcast), one of two
//! by predicate (route), or nowhere (the end of a stream: delivered).

use std::collections::VecDeque;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::envelope::Envelope;
use crate::error::{FailureKind, ItemError};
use crate::mailbox::{Release, Sender, Slot, TrySendError};

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
            Outlet::Broadcast { branches, clone } => {
                let (payload, ack) = env.into_parts();
                let acks = ack.split(branches.len());
                let last = branches.len() - 1;
                let mut payload = Some(payload);
                for (i, (branch, ack)) in branches.iter().zip(acks).enumerate() {
                    let copy = if i == last {
                        payload
                            .take()
                            .unwrap_or_else(|| unreachable!("payload moved before the last branch"))
                    } else {
                        match &payload {
                            Some(p) => clone(p),
                            None => unreachable!("payload moved before the last branch"),
                        }
                    };
                    // A refused part fails only that part; the split
                    // acknowledgement then reports the failure to the origin.
                    if let Err(refused) =
                        Box::pin(branch.send(Envelope::new(copy, ack), abandon)).await
                    {
                        refused.fail(&Arc::from("broadcast"));
                    }
                }
                Ok(())
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

    /// Hands one envelope on without waiting. A broadcast checks that every
    /// branch has room first; a copy refused by a race with another sender
    /// fails that copy (and so the origin hears a failure).
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
            Outlet::Broadcast { branches, clone } => {
                if self.is_full() {
                    return Err(TrySendError::Full(env));
                }
                let (payload, ack) = env.into_parts();
                let acks = ack.split(branches.len());
                for (branch, ack) in branches.iter().zip(acks) {
                    if let Err(refused) = branch.try_send(Envelope::new(clone(&payload), ack)) {
                        let (_, ack) = refused.into_inner().into_parts();
                        ack.fail(ItemError::new(
                            "broadcast",
                            FailureKind::Abandoned,
                            "a branch filled up between the check and the send",
                        ));
                    }
                }
                Ok(())
            }
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
