//! What becomes of one input's result, before its acknowledgement is
//! settled, and the flush of the outputs it produced.

use std::collections::VecDeque;
use std::sync::atomic::Ordering as AtomicOrdering;

use crate::ack::{Ack, DropReason};
use crate::envelope::Envelope;
use crate::error::{
    BoxError, FailureKind, Fatal, GraphError, ItemError, Panicked, Transient, panic_message,
};
use crate::graph::DeadLetter;
use crate::mailbox::{Receiver, Release, Slot};
use crate::metrics::{Clock, Phase, StageMetrics};
use crate::outlet::{FlushStop, Outlet, abandon_pending};
use crate::stage::{Outputs, Stage};

use super::NodeCx;

/// The result of processing one input, before its acknowledgement is settled.
pub(super) enum Processed<O> {
    Ok(Outputs<O>),
    /// The stage's error, and whether it is fatal.
    Err(BoxError, bool),
    /// An error already attributed to this stage (one batch error shared by
    /// every item of the batch): settled as it is, not wrapped again.
    Failed(ItemError),
    Panic(String),
}

impl<O> Processed<O> {
    /// A stage's error: a [`Panicked`] is the item's own caught panic (a
    /// stage that processes several items in one call); otherwise fatal
    /// when the stage says so or it is a [`Fatal`], marked [`Transient`]
    /// when the stage says so.
    pub(super) fn from_error(boxed: BoxError, fatal: bool, transient: bool) -> Self {
        match boxed.downcast::<Panicked>() {
            Ok(panic) => Processed::Panic(panic.message().to_string()),
            Err(boxed) => {
                let fatal = fatal || boxed.is::<Fatal>();
                Processed::Err(mark_transient(boxed, transient), fatal)
            }
        }
    }
}

/// `error`, wrapped in [`Transient`] when `transient` (once).
pub(super) fn mark_transient(error: BoxError, transient: bool) -> BoxError {
    if transient && !error.is::<Transient>() {
        Box::new(Transient(error))
    } else {
        error
    }
}

pub(super) fn classify<S: Stage>(
    stage: &S,
    r: std::thread::Result<Result<Outputs<S::Out>, S::Error>>,
) -> Processed<S::Out> {
    match r {
        Ok(Ok(outs)) => Processed::Ok(outs),
        Ok(Err(e)) => {
            let fatal = stage.is_fatal(&e);
            let transient = stage.is_transient(&e);
            Processed::from_error(e.into(), fatal, transient)
        }
        Err(payload) => Processed::Panic(panic_message(payload.as_ref())),
    }
}

/// Per-node state shared by the stage drivers: settles acknowledgements,
/// counts, routes failures to the dead-letter route.
pub(super) struct Settle<'a, O> {
    cx: &'a NodeCx,
    pending: VecDeque<(Envelope<O>, Option<Slot>)>,
    release: Release,
    pub(super) fatal: Option<GraphError>,
    /// Outputs handed on since the driver last noted it in the metrics.
    sent: u64,
}

impl<'a, O: Send + 'static> Settle<'a, O> {
    pub(super) fn new(cx: &'a NodeCx) -> Self {
        Settle {
            cx,
            pending: VecDeque::new(),
            release: Release::default(),
            fatal: None,
            sent: 0,
        }
    }

    /// Settles one input's result: outputs go to `pending` (the last one
    /// carries the input's slot), failures to the dead-letter route.
    pub(super) async fn settle(&mut self, processed: Processed<O>, ack: Ack, slot: Slot) {
        let m = &self.cx.metrics;
        match processed {
            Processed::Ok(outs) => match outs.len() {
                0 => {
                    m.filtered.fetch_add(1, AtomicOrdering::Relaxed);
                    ack.drop_with(DropReason::Filtered);
                    self.release.add(slot);
                }
                1 => {
                    if let Some(out) = outs.into_iter().next() {
                        self.pending
                            .push_back((Envelope::new(out, ack), Some(slot)));
                    }
                }
                n => {
                    let mut acks = ack.split(n);
                    let mut slot = Some(slot);
                    for (i, out) in outs.into_iter().enumerate() {
                        let part = acks
                            .pop()
                            .unwrap_or_else(|| unreachable!("split gave fewer parts"));
                        // The last output carries the input's slot.
                        let s = if i + 1 == n { slot.take() } else { None };
                        self.pending.push_back((Envelope::new(out, part), s));
                    }
                }
            },
            Processed::Err(err, fatal) => {
                let kind = if fatal {
                    FailureKind::Fatal
                } else {
                    FailureKind::Error
                };
                let error = ItemError::from_error(self.cx.name.clone(), kind, err);
                self.failed(error, ack, slot).await;
            }
            Processed::Failed(error) => self.failed(error, ack, slot).await,
            Processed::Panic(message) => {
                m.panics.fetch_add(1, AtomicOrdering::Relaxed);
                let error = ItemError::new(self.cx.name.clone(), FailureKind::Panic, message);
                self.fail(error, ack, slot).await;
            }
        }
    }

    /// Fails one item; a fatal error also stops the graph.
    async fn failed(&mut self, error: ItemError, ack: Ack, slot: Slot) {
        if error.kind() != FailureKind::Fatal {
            return self.fail(error, ack, slot).await;
        }
        self.cx.metrics.failed.fetch_add(1, AtomicOrdering::Relaxed);
        tracing::error!(stage = %self.cx.name, %error, "fatal error; shutting the graph down");
        ack.fail(error.clone());
        self.release.add(slot);
        if self.fatal.is_none() {
            self.fatal = Some(GraphError::Fatal {
                stage: self.cx.name.to_string(),
                source: Box::new(error),
            });
        }
        self.cx.fatal.cancel();
        self.cx.shutdown.cancel();
    }

    /// Fails one item: to the dead-letter route if there is one.
    async fn fail(&mut self, error: ItemError, ack: Ack, slot: Slot) {
        self.cx.metrics.failed.fetch_add(1, AtomicOrdering::Relaxed);
        tracing::debug!(stage = %self.cx.name, %error, "item failed");
        match &self.cx.dlq {
            Some(dlq) => {
                let env = Envelope::new(
                    DeadLetter {
                        error: error.clone(),
                    },
                    ack.into_dead_letter(error),
                );
                if let Err(refused) = dlq.send(env, &self.cx.abandon).await {
                    refused.fail(&self.cx.name);
                }
            }
            None => ack.fail(error),
        }
        self.release.add(slot);
    }

    /// Sends the pending outputs, releasing input slots as they leave, as
    /// blocked time: the clock must be in [`Phase::Blocked`]; it moves to
    /// `next` when the flush ends, and the outputs' leaving is noted at that
    /// moment. Returns false when the node must stop (the downstream is
    /// gone, or the graph is abandoned while waiting for room).
    pub(super) async fn flush<I: Send>(
        &mut self,
        outlet: &Outlet<O>,
        rx: &Receiver<I>,
        clock: &mut Clock,
        next: Phase,
    ) -> bool {
        let mut rx_release = |r: Release| rx.release(r);
        let alive = self.flush_pending(outlet, &mut rx_release).await;
        clock.lap(Phase::Blocked, next);
        if std::mem::take(&mut self.sent) > 0 {
            self.cx.metrics.note_out(clock.phase_start());
        }
        alive
    }

    /// [`flush`](Self::flush), and whether the node may go on: false also
    /// after a fatal error.
    pub(super) async fn flush_and_go_on<I: Send>(
        &mut self,
        outlet: &Outlet<O>,
        rx: &Receiver<I>,
        clock: &mut Clock,
        next: Phase,
    ) -> bool {
        self.flush(outlet, rx, clock, next).await && self.fatal.is_none()
    }

    async fn flush_pending(
        &mut self,
        outlet: &Outlet<O>,
        rx_release: &mut (dyn FnMut(Release) + Send),
    ) -> bool {
        let early = std::mem::take(&mut self.release);
        rx_release(early);
        if self.pending.is_empty() {
            return true;
        }
        let n = self.pending.len() as u64;
        let result = outlet
            .flush(&mut self.pending, rx_release, &self.cx.abandon)
            .await;
        let left = self.pending.len() as u64;
        StageMetrics::add(&self.cx.metrics.items_out, n - left);
        self.sent += n - left;
        match result {
            Ok(()) => true,
            Err(stop) => {
                let message = match stop {
                    FlushStop::Closed => "the downstream stage has stopped",
                    FlushStop::Abandoned => {
                        "shutdown deadline passed while waiting for room downstream"
                    }
                };
                let (release, n) = abandon_pending(&mut self.pending, &self.cx.name, message);
                StageMetrics::add(&self.cx.metrics.abandoned, n);
                rx_release(release);
                false
            }
        }
    }
}
