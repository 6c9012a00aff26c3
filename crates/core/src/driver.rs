//! The loops that run each node: sequential and concurrent stages, batch
//! stages and sources. Types are erased here: each node becomes one named
//! task returning `Result<(), GraphError>`.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;

use futures::FutureExt;
use futures::stream::{FuturesOrdered, FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::ack::{Ack, DropReason, Origin};
use crate::envelope::Envelope;
use crate::error::{
    BoxError, FailureKind, Fatal, GraphError, ItemError, Panicked, Transient, panic_message,
};
use crate::graph::{BatchConfig, DeadLetter, Order};
use crate::mailbox::{Receiver, Release, Slot};
use crate::metrics::{Clock, Phase, StageMetrics};
use crate::outlet::{FlushStop, Outlet, abandon_pending};
use crate::stage::{BatchStage, Outputs, Stage};

/// Computes a per-key ordering key; `None` means "no ordering constraint".
pub(crate) type KeyFn<T> = Arc<dyn Fn(&T, &Origin) -> Option<u64> + Send + Sync>;

/// Everything a node needs besides its stage, input and output.
pub(crate) struct NodeCx {
    pub(crate) name: Arc<str>,
    pub(crate) metrics: Arc<StageMetrics>,
    /// The dead-letter route (`None` for the dead-letter node itself).
    pub(crate) dlq: Option<Outlet<DeadLetter>>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) abandon: CancellationToken,
    /// Cancelled on a fatal error: starts the drain deadline.
    pub(crate) fatal: CancellationToken,
}

/// How awaiting one item's processing ended.
enum Step<R> {
    Done(R),
    /// Abandoned, or the downstream is gone.
    Stop,
}

/// The result of processing one input, before its acknowledgement is settled.
enum Processed<O> {
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
    fn from_error(boxed: BoxError, fatal: bool, transient: bool) -> Self {
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
fn mark_transient(error: BoxError, transient: bool) -> BoxError {
    if transient && !error.is::<Transient>() {
        Box::new(Transient(error))
    } else {
        error
    }
}

fn classify<S: Stage>(
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
struct Settle<'a, O> {
    cx: &'a NodeCx,
    pending: VecDeque<(Envelope<O>, Option<Slot>)>,
    release: Release,
    fatal: Option<GraphError>,
    /// Outputs handed on since the driver last noted it in the metrics.
    sent: u64,
}

impl<'a, O: Send + 'static> Settle<'a, O> {
    fn new(cx: &'a NodeCx) -> Self {
        Settle {
            cx,
            pending: VecDeque::new(),
            release: Release::default(),
            fatal: None,
            sent: 0,
        }
    }

    /// Notes in the metrics that outputs left at `at` (the time of the lap
    /// that closed the flush), if any did since the last note.
    fn note_sent(&mut self, at: std::time::Instant) {
        if std::mem::take(&mut self.sent) > 0 {
            self.cx.metrics.note_out(at);
        }
    }

    /// Settles one input's result: outputs go to `pending` (the last one
    /// carries the input's slot), failures to the dead-letter route.
    async fn settle(&mut self, processed: Processed<O>, ack: Ack, slot: Slot) {
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

    /// Sends pending outputs, releasing input slots as they leave.
    /// Returns false when the node must stop (downstream gone or abandoned).
    async fn flush(
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

/// Fails every envelope still in the mailbox (forced shutdown).
fn abandon_mailbox<T>(rx: &mut Receiver<T>, cx: &NodeCx) {
    let rest = rx.close_and_take();
    StageMetrics::add(&cx.metrics.abandoned, rest.len() as u64);
    for env in rest {
        let (_, ack) = env.into_parts();
        ack.fail(ItemError::new(
            cx.name.clone(),
            FailureKind::Abandoned,
            "shutdown deadline passed before this item was processed",
        ));
    }
}

fn abandon_ack(ack: Ack, cx: &NodeCx) {
    cx.metrics.abandoned.fetch_add(1, AtomicOrdering::Relaxed);
    ack.fail(ItemError::new(
        cx.name.clone(),
        FailureKind::Abandoned,
        "shutdown deadline passed while this item was being processed",
    ));
}

async fn run_stop<F, E>(cx: &NodeCx, stop: F) -> Result<(), GraphError>
where
    F: std::future::Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    match AssertUnwindSafe(stop).catch_unwind().await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(GraphError::Fatal {
            stage: cx.name.to_string(),
            source: e.into(),
        }),
        Err(p) => Err(GraphError::TaskPanicked {
            stage: cx.name.to_string(),
            message: panic_message(p.as_ref()),
        }),
    }
}

/// One item at a time, in order. Takes up to `prefetch` envelopes per lock.
pub(crate) async fn run_sequential<S: Stage>(
    stage: Arc<S>,
    mut rx: Receiver<S::In>,
    outlet: Outlet<S::Out>,
    cx: NodeCx,
    prefetch: usize,
) -> Result<(), GraphError> {
    let m = cx.metrics.clone();
    let mut batch = Vec::with_capacity(prefetch);
    let mut settle = Settle::new(&cx);
    let mut clock = Clock::start(m.clone(), Phase::Idle);
    'outer: loop {
        let got = tokio::select! {
            biased;
            got = rx.take_many(&mut batch, prefetch) => got,
            () = cx.abandon.cancelled() => {
                abandon_mailbox(&mut rx, &cx);
                break 'outer;
            }
        };
        clock.lap(Phase::Idle, Phase::Busy);
        if !got {
            break;
        }
        m.note_first_in(clock.phase_start());
        m.items_in
            .fetch_add(batch.len() as u64, AtomicOrdering::Relaxed);
        let mut items = batch.drain(..);
        // Items ready on their first poll (sync stages) share one clock read
        // per run: their time is split evenly in the latency histogram.
        let mut ready_run = 0u64;
        while let Some((env, slot)) = items.next() {
            let (payload, ack) = env.into_parts();
            let mut waited_since = None;
            let step = {
                // The call itself is inside the caught future: closure stages
                // do their work when called, not when polled.
                let origin = ack.origin();
                let mut fut = std::pin::pin!(
                    AssertUnwindSafe(async { stage.process(payload, origin).await }).catch_unwind()
                );
                match futures::poll!(fut.as_mut()) {
                    std::task::Poll::Ready(r) => {
                        ready_run += 1;
                        Step::Done(r)
                    }
                    std::task::Poll::Pending => {
                        // The item will wait: close the run of ready items,
                        // then hand on what is finished, so earlier items are
                        // not held back by this one.
                        let d = clock.lap(Phase::Busy, Phase::Blocked);
                        if ready_run > 0 {
                            m.latency.record_n(d, ready_run);
                            ready_run = 0;
                        }
                        waited_since = Some(clock.phase_start());
                        let alive = {
                            let rx_ref = &rx;
                            let mut rel = |r: Release| rx_ref.release(r);
                            settle.flush(&outlet, &mut rel).await
                        };
                        clock.lap(Phase::Blocked, Phase::Busy);
                        settle.note_sent(clock.phase_start());
                        if alive {
                            tokio::select! {
                                biased;
                                r = fut => Step::Done(r),
                                () = cx.abandon.cancelled() => Step::Stop,
                            }
                        } else {
                            Step::Stop
                        }
                    }
                }
            };
            let Step::Done(result) = step else {
                abandon_ack(ack, &cx);
                let mut release = Release::default();
                release.add(slot);
                for (env, slot) in items.by_ref() {
                    let (_, ack) = env.into_parts();
                    abandon_ack(ack, &cx);
                    release.add(slot);
                }
                rx.release(release);
                let mut rel = |r: Release| rx.release(r);
                settle.flush(&outlet, &mut rel).await;
                abandon_mailbox(&mut rx, &cx);
                break 'outer;
            };
            if let Some(started) = waited_since {
                // Busy time excludes the flush; latency is the item's wall time.
                clock.lap(Phase::Busy, Phase::Busy);
                m.latency
                    .record(clock.phase_start().saturating_duration_since(started));
            }
            let processed = classify(stage.as_ref(), result);
            settle.settle(processed, ack, slot).await;
        }
        drop(items);
        if ready_run > 0 {
            let d = clock.lap(Phase::Busy, Phase::Blocked);
            m.latency.record_n(d, ready_run);
        } else {
            // Settling so far was busy; the flush is blocked.
            clock.switch(Phase::Blocked);
        }
        let alive = {
            let rx_ref = &rx;
            let mut rel = |r: Release| rx_ref.release(r);
            settle.flush(&outlet, &mut rel).await
        };
        clock.lap(Phase::Blocked, Phase::Idle);
        settle.note_sent(clock.phase_start());
        if !alive || settle.fatal.is_some() {
            abandon_mailbox(&mut rx, &cx);
            break;
        }
    }
    finish(&cx, settle.fatal.take(), run_stop(&cx, stage.stop()).await)
}

fn finish(
    cx: &NodeCx,
    fatal: Option<GraphError>,
    stopped: Result<(), GraphError>,
) -> Result<(), GraphError> {
    if let Some(err) = fatal {
        return Err(err);
    }
    if cx.abandon.is_cancelled() && cx.metrics.abandoned.load(AtomicOrdering::Relaxed) > 0 {
        tracing::warn!(stage = %cx.name, "stage abandoned items at shutdown");
    }
    stopped
}

/// How a concurrent stage runs its items: how many at once, in what order,
/// and whether each on a task of its own.
pub(crate) struct Concurrency<T> {
    pub(crate) limit: usize,
    pub(crate) order: Order,
    pub(crate) key: Option<KeyFn<T>>,
    /// Each item on a task of its own (else polled on the stage's task).
    pub(crate) spawn: bool,
}

/// Several items at once, each on its own task (or all on the stage's
/// task), in the chosen order.
pub(crate) async fn run_concurrent<S: Stage>(
    stage: Arc<S>,
    mut rx: Receiver<S::In>,
    outlet: Outlet<S::Out>,
    cx: NodeCx,
    how: Concurrency<S::In>,
) -> Result<(), GraphError> {
    let Concurrency {
        limit: concurrency,
        order,
        key,
        spawn: spawn_each,
    } = how;
    type Joined<O, E> = (
        u64,
        Result<std::thread::Result<Result<Outputs<O>, E>>, tokio::task::JoinError>,
    );

    struct InFlight {
        started: std::time::Instant,
        ack: Ack,
        slot: Slot,
        key: Option<u64>,
        /// For an item on a task of its own.
        abort: Option<tokio::task::AbortHandle>,
    }

    let m = cx.metrics.clone();
    let mut settle = Settle::new(&cx);
    // Opened busy: the loop's first lap opens the wait.
    let mut clock = Clock::start(m.clone(), Phase::Busy);
    let mut unordered: FuturesUnordered<
        futures::future::BoxFuture<'static, Joined<S::Out, S::Error>>,
    > = FuturesUnordered::new();
    let mut ordered: FuturesOrdered<futures::future::BoxFuture<'static, Joined<S::Out, S::Error>>> =
        FuturesOrdered::new();
    let mut in_flight: HashMap<u64, InFlight> = HashMap::new();
    let mut busy_keys: HashMap<u64, VecDeque<(S::In, Ack, Slot)>> = HashMap::new();
    let mut parked = 0usize;
    let mut seq = 0u64;
    let mut closed = false;
    let mut buf = Vec::with_capacity(concurrency);
    let key =
        match order {
            Order::PerKey => Some(key.unwrap_or_else(|| {
                Arc::new(|_: &S::In, o: &Origin| o.key.as_ref().map(hash_bytes))
            })),
            _ => None,
        };

    let spawn = |seq: u64,
                 payload: S::In,
                 ack: Ack,
                 slot: Slot,
                 key: Option<u64>,
                 in_flight: &mut HashMap<u64, InFlight>,
                 unordered: &mut FuturesUnordered<_>,
                 ordered: &mut FuturesOrdered<_>| {
        let stage = stage.clone();
        let origin = ack.origin_ref();
        let work = async move {
            AssertUnwindSafe(async { stage.process(payload, origin.get()).await })
                .catch_unwind()
                .await
        };
        let (fut, abort): (
            futures::future::BoxFuture<'static, Joined<S::Out, S::Error>>,
            _,
        ) = if spawn_each {
            let handle = tokio::spawn(work);
            let abort = handle.abort_handle();
            (Box::pin(async move { (seq, handle.await) }), Some(abort))
        } else {
            (Box::pin(async move { (seq, Ok(work.await)) }), None)
        };
        in_flight.insert(
            seq,
            InFlight {
                started: crate::metrics::now(),
                ack,
                slot,
                key,
                abort,
            },
        );
        if order == Order::Preserve {
            ordered.push_back(fut);
        } else {
            unordered.push(fut);
        }
    };

    let mut abandoned = false;
    loop {
        let running = in_flight.len();
        let can_take = !closed && running < concurrency;
        if closed && running == 0 {
            break;
        }
        // Waiting with items in flight is busy in their share of the
        // concurrency (utilisation); with none, idle.
        let waiting = clock.lap_in_flight(Phase::Busy, running);
        enum Event<T> {
            Done(T),
            Received(bool),
            Abandon,
        }
        let event = tokio::select! {
            biased;
            () = cx.abandon.cancelled() => Event::Abandon,
            Some(done) = unordered.next(), if !unordered.is_empty() => Event::Done(done),
            Some(done) = ordered.next(), if !ordered.is_empty() => Event::Done(done),
            got = rx.take_many(&mut buf, concurrency - running), if can_take => Event::Received(got),
        };
        clock.lap(waiting, Phase::Busy);
        match event {
            Event::Abandon => {
                abandoned = true;
                break;
            }
            Event::Received(false) => closed = true,
            Event::Received(true) => {
                m.note_first_in(clock.phase_start());
                m.items_in
                    .fetch_add(buf.len() as u64, AtomicOrdering::Relaxed);
                for (env, slot) in buf.drain(..) {
                    let (payload, ack) = env.into_parts();
                    let k = key.as_ref().and_then(|f| f(&payload, ack.origin()));
                    if let Some(k) = k {
                        if let Some(queue) = busy_keys.get_mut(&k) {
                            queue.push_back((payload, ack, slot));
                            parked += 1;
                            continue;
                        }
                        busy_keys.insert(k, VecDeque::new());
                    }
                    seq += 1;
                    spawn(
                        seq,
                        payload,
                        ack,
                        slot,
                        k,
                        &mut in_flight,
                        &mut unordered,
                        &mut ordered,
                    );
                }
            }
            Event::Done((id, joined)) => {
                let Some(flight) = in_flight.remove(&id) else {
                    continue;
                };
                let result = match joined {
                    Ok(r) => r,
                    Err(e) if e.is_panic() => Err(e.into_panic()),
                    Err(_) => Err(Box::new("task cancelled") as Box<dyn std::any::Any + Send>),
                };
                // Latency here is from spawn to the completion being seen.
                m.latency.record(
                    clock
                        .phase_start()
                        .saturating_duration_since(flight.started),
                );
                let processed = classify(stage.as_ref(), result);
                settle.settle(processed, flight.ack, flight.slot).await;
                if let Some(k) = flight.key {
                    let next = busy_keys.get_mut(&k).and_then(VecDeque::pop_front);
                    match next {
                        Some((payload, ack, slot)) => {
                            parked -= 1;
                            seq += 1;
                            spawn(
                                seq,
                                payload,
                                ack,
                                slot,
                                Some(k),
                                &mut in_flight,
                                &mut unordered,
                                &mut ordered,
                            );
                        }
                        None => {
                            busy_keys.remove(&k);
                        }
                    }
                }
                // Settling so far was busy; the flush is blocked.
                clock.switch(Phase::Blocked);
                let alive = {
                    let rx_ref = &rx;
                    let mut rel = |r: Release| rx_ref.release(r);
                    settle.flush(&outlet, &mut rel).await
                };
                clock.lap(Phase::Blocked, Phase::Busy);
                settle.note_sent(clock.phase_start());
                if !alive || settle.fatal.is_some() {
                    abandoned = true;
                    break;
                }
            }
        }
    }
    if abandoned {
        let mut release = Release::default();
        for (_, flight) in in_flight.drain() {
            if let Some(abort) = flight.abort {
                abort.abort();
            }
            abandon_ack(flight.ack, &cx);
            release.add(flight.slot);
        }
        for (_, queue) in busy_keys.drain() {
            for (_, ack, slot) in queue {
                abandon_ack(ack, &cx);
                release.add(slot);
            }
        }
        rx.release(release);
        abandon_mailbox(&mut rx, &cx);
    }
    debug_assert!(
        abandoned || parked == 0,
        "parked items left at a clean stop"
    );
    let fatal = settle.fatal.take();
    finish(&cx, fatal, run_stop(&cx, stage.stop()).await)
}

fn hash_bytes(b: &bytes::Bytes) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(b.as_ref())
}

/// Gathers batches (first item, then until full or the deadline) and hands
/// them to a [`BatchStage`].
pub(crate) async fn run_batched<S: BatchStage>(
    stage: Arc<S>,
    mut rx: Receiver<S::In>,
    outlet: Outlet<S::Out>,
    cx: NodeCx,
    config: BatchConfig<S::In>,
) -> Result<(), GraphError> {
    let m = cx.metrics.clone();
    let mut settle = Settle::new(&cx);
    let mut clock = Clock::start(m.clone(), Phase::Idle);
    let mut buf: Vec<(Envelope<S::In>, Slot)> = Vec::with_capacity(config.max_items);
    let weigh = |env: &Envelope<S::In>| {
        config
            .max_bytes
            .as_ref()
            .map_or(0, |(_, w)| w(env.payload()))
    };
    let byte_limit = config.max_bytes.as_ref().map(|(max, _)| *max);
    let mut closed = false;
    while !closed {
        // Wait for the first item.
        let got = tokio::select! {
            biased;
            got = rx.take_many(&mut buf, if byte_limit.is_some() { 1 } else { config.max_items }) => got,
            () = cx.abandon.cancelled() => { abandon_mailbox(&mut rx, &cx); break; }
        };
        if !got {
            break;
        }
        // Then gather (still idle) until full, over the byte limit, or the deadline.
        let deadline = tokio::time::Instant::now() + config.max_wait;
        let mut bytes: usize = buf.iter().map(|(e, _)| weigh(e)).sum();
        let mut abandoned = false;
        while buf.len() < config.max_items && byte_limit.is_none_or(|max| bytes < max) {
            let take = if byte_limit.is_some() {
                1
            } else {
                config.max_items - buf.len()
            };
            let before = buf.len();
            let step = tokio::select! {
                biased;
                () = cx.abandon.cancelled() => { abandoned = true; break; }
                r = tokio::time::timeout_at(deadline, rx.take_many(&mut buf, take)) => r,
            };
            match step {
                Ok(true) => bytes += buf[before..].iter().map(|(e, _)| weigh(e)).sum::<usize>(),
                Ok(false) => {
                    closed = true;
                    break;
                }
                Err(_elapsed) => break,
            }
        }
        if abandoned {
            let mut release = Release::default();
            for (env, slot) in buf.drain(..) {
                abandon_ack(env.into_parts().1, &cx);
                release.add(slot);
            }
            rx.release(release);
            abandon_mailbox(&mut rx, &cx);
            break;
        }
        clock.lap(Phase::Idle, Phase::Busy);
        m.note_first_in(clock.phase_start());
        let n = buf.len();
        m.items_in.fetch_add(n as u64, AtomicOrdering::Relaxed);
        let mut payloads = Vec::with_capacity(n);
        let mut acks = Vec::with_capacity(n);
        let mut slots = Vec::with_capacity(n);
        for (env, slot) in buf.drain(..) {
            let (p, a) = env.into_parts();
            payloads.push(p);
            acks.push(a);
            slots.push(slot);
        }
        let result = {
            let origins: Vec<&Origin> = acks.iter().map(Ack::origin).collect();
            let fut = AssertUnwindSafe(async { stage.process_batch(payloads, &origins).await })
                .catch_unwind();
            tokio::select! {
                biased;
                r = fut => Some(r),
                () = cx.abandon.cancelled() => None,
            }
        };
        let Some(result) = result else {
            let mut release = Release::default();
            for (ack, slot) in acks.into_iter().zip(slots) {
                abandon_ack(ack, &cx);
                release.add(slot);
            }
            rx.release(release);
            abandon_mailbox(&mut rx, &cx);
            break;
        };
        // Settling and flushing count as blocked.
        m.latency.record(clock.lap(Phase::Busy, Phase::Blocked));
        let per_item: Vec<Processed<S::Out>> = match result {
            Err(p) => {
                let msg = panic_message(p.as_ref());
                (0..n).map(|_| Processed::Panic(msg.clone())).collect()
            }
            Ok(Err(e)) => {
                // One error for the whole batch: attributed once, shared by
                // every item (its source stays the stage's own error).
                let fatal = stage.is_fatal(&e);
                let transient = stage.is_transient(&e);
                let boxed = mark_transient(e.into(), transient);
                let kind = if fatal || boxed.is::<Fatal>() {
                    FailureKind::Fatal
                } else {
                    FailureKind::Error
                };
                let shared = ItemError::from_error(cx.name.clone(), kind, boxed);
                (0..n).map(|_| Processed::Failed(shared.clone())).collect()
            }
            Ok(Ok(results)) if results.len() != n => {
                let msg = format!(
                    "batch stage returned {} results for {} inputs",
                    results.len(),
                    n
                );
                let shared = ItemError::new(cx.name.clone(), FailureKind::Error, msg);
                (0..n).map(|_| Processed::Failed(shared.clone())).collect()
            }
            Ok(Ok(results)) => results
                .into_iter()
                .map(|r| match r {
                    Ok(outs) => Processed::Ok(outs),
                    Err(e) => {
                        let fatal = stage.is_fatal(&e);
                        let transient = stage.is_transient(&e);
                        Processed::from_error(e.into(), fatal, transient)
                    }
                })
                .collect(),
        };
        for ((processed, ack), slot) in per_item.into_iter().zip(acks).zip(slots) {
            settle.settle(processed, ack, slot).await;
        }
        let alive = {
            let rx_ref = &rx;
            let mut rel = |r: Release| rx_ref.release(r);
            settle.flush(&outlet, &mut rel).await
        };
        clock.lap(Phase::Blocked, Phase::Idle);
        settle.note_sent(clock.phase_start());
        if !alive || settle.fatal.is_some() {
            abandon_mailbox(&mut rx, &cx);
            break;
        }
    }
    let fatal = settle.fatal.take();
    finish(&cx, fatal, run_stop(&cx, stage.stop()).await)
}
