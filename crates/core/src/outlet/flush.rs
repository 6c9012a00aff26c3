//! Handing on a node's pending outputs, each carrying its input's slot,
//! as room frees up downstream.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::envelope::Envelope;
use crate::error::{FailureKind, ItemError};
use crate::mailbox::{Release, Slot};

use super::{Outlet, Refused};

/// How a flush ended early.
pub(crate) enum FlushStop {
    Closed,
    Abandoned,
}

impl<T: Send + 'static> Outlet<T> {
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
