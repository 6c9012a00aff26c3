//! A source's handle on the graph: emitting envelopes (one, a batch, or
//! through a reserved permit), the blocked/busy/idle clock, shutdown.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::envelope::Envelope;
use crate::mailbox::{TryReserveError, TrySendError};
use crate::metrics::{Clock, Phase, StageMetrics};
use crate::outlet::{FlushStop, Outlet, Refused, ReserveStop};

use super::emit::{EmitError, EmitPermit, EmitStop};

/// Counts the time since it was made as blocked, when dropped (also when
/// the future holding it is cancelled).
struct Blocked<'a>(&'a mut Clock);

impl<'a> Blocked<'a> {
    fn start(clock: &'a mut Clock) -> Self {
        clock.lap(Phase::Busy, Phase::Blocked);
        Blocked(clock)
    }
}

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.lap(Phase::Blocked, Phase::Busy);
    }
}

/// A source's handle on the graph: emit envelopes, watch for shutdown.
pub struct SourceContext<T> {
    pub(crate) name: Arc<str>,
    pub(crate) outlet: Outlet<T>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) abandon: CancellationToken,
    pub(crate) metrics: Arc<StageMetrics>,
    /// Time not spent blocked (in `emit`) or idle (in `idle`) is busy.
    pub(crate) clock: Clock,
}

impl<T: Send + 'static> SourceContext<T> {
    /// Hands an envelope to the graph, waiting for room.
    ///
    /// # Backpressure
    ///
    /// Waits while the first mailbox is full (whatever the source does
    /// meanwhile, it takes no new work). A source that must keep doing
    /// something while it waits (a Kafka consumer must keep polling) uses
    /// [`SourceContext::reserve`] in a `select!`, or
    /// [`SourceContext::is_full`] and [`SourceContext::ready`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropping the future while it waits (a `select!`
    /// branch that loses) drops the envelope, whose acknowledgement then
    /// counts as leaked. In a `select!`, reserve room first with
    /// [`SourceContext::reserve`] and send into it.
    ///
    /// # Errors
    ///
    /// [`EmitError`] when the graph can no longer take the envelope. It
    /// holds the envelope: dropping it (a `?` does) resolves the envelope
    /// as failed (abandoned); [`EmitError::into_inner`] takes it back.
    pub async fn emit(&mut self, env: Envelope<T>) -> Result<(), EmitError<T>> {
        // Fast path: room in the mailbox, no clock reads.
        let env = match &self.outlet {
            Outlet::Mailbox(tx) => match tx.try_send(env) {
                Ok(()) => {
                    self.count_one();
                    return Ok(());
                }
                Err(TrySendError::Closed(e)) => {
                    return Err(EmitError::new(EmitStop::Closed, e, self));
                }
                Err(TrySendError::Full(e)) => e,
            },
            _ => env,
        };
        self.clock.lap(Phase::Busy, Phase::Blocked);
        let result = self.outlet.send(env, &self.abandon).await;
        self.clock.lap(Phase::Blocked, Phase::Busy);
        match result {
            Ok(()) => {
                self.count_one();
                Ok(())
            }
            Err(Refused::Closed(e)) => Err(EmitError::new(EmitStop::Closed, e, self)),
            Err(Refused::Abandoned(e)) => Err(EmitError::new(EmitStop::Abandoned, e, self)),
        }
    }

    /// Waits for room for one envelope in every mailbox it may reach and
    /// reserves it: the cancel-safe way to emit.
    ///
    /// ```
    /// use sluicegate_core::testing::AckLog;
    /// use sluicegate_core::{BoxError, Envelope, Source, SourceContext};
    ///
    /// /// Emits 0..n, stopping at once on shutdown even while it waits for room.
    /// struct Numbers {
    ///     n: i64,
    ///     acks: AckLog,
    /// }
    ///
    /// impl Source for Numbers {
    ///     type Out = i64;
    ///
    ///     async fn run(self, mut cx: SourceContext<i64>) -> Result<(), BoxError> {
    ///         let stop = cx.shutdown_token();
    ///         for offset in 0..self.n {
    ///             let permit = tokio::select! {
    ///                 permit = cx.reserve() => permit?,
    ///                 // Losing the race loses nothing: no envelope exists yet.
    ///                 () = stop.cancelled() => return Ok(()),
    ///             };
    ///             permit.send(Envelope::new(offset, self.acks.ack(offset)));
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the future holds no envelope, so in a `select!` that
    /// picks another branch nothing is lost, and a permit dropped unused
    /// gives its room back. Behind a route, before the payload is known,
    /// room is reserved on both sides.
    ///
    /// # Backpressure
    ///
    /// Waits while a mailbox the envelope may reach is full, like
    /// [`emit`](SourceContext::emit); the wait counts as blocked.
    ///
    /// # Errors
    ///
    /// [`EmitStop::Closed`] when the graph is gone, [`EmitStop::Abandoned`]
    /// when the shutdown deadline passed while waiting for room.
    pub async fn reserve(&mut self) -> Result<EmitPermit<T>, EmitStop> {
        let permit = match self.outlet.try_reserve(None) {
            Ok(permit) => permit,
            Err(TryReserveError::Closed) => return Err(EmitStop::Closed),
            Err(TryReserveError::Full) => {
                let _blocked = Blocked::start(&mut self.clock);
                self.outlet
                    .reserve(&self.abandon)
                    .await
                    .map_err(|stop| match stop {
                        ReserveStop::Closed => EmitStop::Closed,
                        ReserveStop::Abandoned => EmitStop::Abandoned,
                    })?
            }
        };
        Ok(EmitPermit {
            permit,
            metrics: self.metrics.clone(),
        })
    }

    fn count_one(&self) {
        self.count(1);
    }

    fn count(&self, n: u64) {
        if n > 0 {
            self.metrics.note_first_in_now();
            self.metrics.items_in.fetch_add(n, Ordering::Relaxed);
            self.metrics.items_out.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Hands a batch of envelopes to the graph, in order, waiting for room;
    /// moves as many per lock as fit (cheaper than one [`emit`](Self::emit)
    /// per envelope). On return `batch` is empty, unless the graph stopped
    /// taking input: then it holds the envelopes not taken, for the source
    /// to resolve.
    ///
    /// # Errors
    ///
    /// [`EmitStop::Closed`] when the graph is gone, [`EmitStop::Abandoned`]
    /// when the shutdown deadline passed while waiting for room.
    ///
    /// # Backpressure
    ///
    /// Waits while the first mailbox is full, like [`emit`](Self::emit).
    /// The source's counters are updated when the call returns.
    pub async fn emit_batch(&mut self, batch: &mut VecDeque<Envelope<T>>) -> Result<(), EmitStop> {
        let n = batch.len() as u64;
        // Not kept in `self`: a stored buffer of `T` would make the context
        // `Sync` only for `Sync` payloads.
        let mut pending: VecDeque<_> = batch.drain(..).map(|e| (e, None)).collect();
        self.clock.lap(Phase::Busy, Phase::Blocked);
        let result = self
            .outlet
            .flush(&mut pending, &mut |_| {}, &self.abandon)
            .await;
        self.clock.lap(Phase::Blocked, Phase::Busy);
        let left = pending.len() as u64;
        batch.extend(pending.into_iter().map(|(e, _)| e));
        self.count(n - left);
        result.map_err(|stop| match stop {
            FlushStop::Closed => EmitStop::Closed,
            FlushStop::Abandoned => EmitStop::Abandoned,
        })
    }

    /// Hands an envelope to the graph without waiting; usable from any
    /// thread (a consumer thread polling a client library, say).
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] when a downstream mailbox has no room (with
    /// [`Overflow::Block`](crate::Overflow::Block)), [`TrySendError::Closed`]
    /// when the graph is gone; the envelope comes back in both.
    pub fn try_emit(&mut self, env: Envelope<T>) -> Result<(), TrySendError<T>> {
        self.outlet.try_send(env)?;
        self.count_one();
        Ok(())
    }

    /// Hands as many envelopes from the front of `batch` to the graph as
    /// there is room for now, in order, without waiting; usable from any
    /// thread. Into one mailbox it moves them under one lock, with one
    /// wake-up of the stage (one [`try_emit`](Self::try_emit) each costs a
    /// lock and a wake-up per envelope). Returns how many it took; the rest
    /// stay in `batch`.
    ///
    /// # Errors
    ///
    /// [`EmitStop::Closed`] when the graph is gone; `batch` then holds
    /// every envelope not taken, for the source to resolve.
    pub fn try_emit_batch(&mut self, batch: &mut VecDeque<Envelope<T>>) -> Result<usize, EmitStop> {
        let before = batch.len();
        let result = match &self.outlet {
            Outlet::Mailbox(tx) => tx.try_push_front(batch).map(|_| ()),
            outlet => loop {
                let Some(env) = batch.pop_front() else {
                    break Ok(());
                };
                match outlet.try_send(env) {
                    Ok(()) => {}
                    Err(TrySendError::Full(env)) => {
                        batch.push_front(env);
                        break Ok(());
                    }
                    Err(TrySendError::Closed(env)) => {
                        batch.push_front(env);
                        break Err(crate::mailbox::Closed);
                    }
                }
            },
        };
        let taken = before - batch.len();
        self.count(taken as u64);
        result.map(|()| taken).map_err(|_| EmitStop::Closed)
    }

    /// Whether the shutdown deadline has passed: give up waiting for
    /// in-flight records and return.
    pub fn is_abandoned(&self) -> bool {
        self.abandon.is_cancelled()
    }

    /// Waits until the first mailbox has room for one more envelope.
    pub async fn ready(&self) {
        self.outlet.ready().await
    }

    /// Whether the first mailbox is full right now (time to pause input).
    pub fn is_full(&self) -> bool {
        self.outlet.is_full()
    }

    /// Whether shutdown has begun: stop taking new input and return.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Completes when shutdown begins.
    pub async fn shutdown_requested(&self) {
        self.shutdown.cancelled().await
    }

    /// The graph's shutdown token (cancel it to begin a graceful shutdown).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The source's name in the graph.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Awaits `fut` (waiting for input: a poll, a timer), counting its time
    /// as idle. A source's time is split three ways like a stage's: blocked in
    /// [`emit`](SourceContext::emit), idle in this, busy otherwise.
    pub async fn idle<F: Future>(&mut self, fut: F) -> F::Output {
        self.clock.lap(Phase::Busy, Phase::Idle);
        let out = fut.await;
        self.clock.lap(Phase::Idle, Phase::Busy);
        out
    }

    /// Runs `f`, a blocking wait for input (a client library's poll, on a
    /// source's own thread), counting its time as idle, like
    /// [`idle`](SourceContext::idle).
    pub fn idle_blocking<R>(&mut self, f: impl FnOnce() -> R) -> R {
        self.clock.lap(Phase::Busy, Phase::Idle);
        let out = f();
        self.clock.lap(Phase::Idle, Phase::Busy);
        out
    }

    /// Waits at most `max` for room in the first mailbox, counting the wait
    /// as blocked (the wait [`emit`](SourceContext::emit) does, for a source
    /// that emits with [`try_emit`](SourceContext::try_emit)). Returns
    /// whether there is room.
    pub async fn ready_within(&mut self, max: Duration) -> bool {
        self.clock.lap(Phase::Busy, Phase::Blocked);
        let room = tokio::time::timeout(max, self.outlet.ready()).await.is_ok();
        self.clock.lap(Phase::Blocked, Phase::Busy);
        room
    }
}
