//! Several items at once, each on a task of its own or all polled on the
//! stage's task, in input order, completion order or per key.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, FuturesUnordered, StreamExt};

use crate::ack::{Ack, Origin};
use crate::error::GraphError;
use crate::graph::Order;
use crate::mailbox::{Receiver, Slot};
use crate::metrics::{Clock, Phase};
use crate::outlet::Outlet;
use crate::stage::{Outputs, Stage};

use super::settle::{Settle, classify};
use super::{KeyFn, NodeCx, abandon_mailbox, abandon_taken, finish, run_stop};

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
    let m = cx.metrics.clone();
    let mut settle = Settle::new(&cx);
    // Opened busy: the loop's first lap opens the wait.
    let mut clock = Clock::start(m.clone(), Phase::Busy);
    let mut flights = Flights::new(stage.clone(), order, spawn_each);
    let mut busy_keys: HashMap<u64, VecDeque<(S::In, Ack, Slot)>> = HashMap::new();
    let mut parked = 0usize;
    let mut closed = false;
    let mut buf = Vec::with_capacity(concurrency);
    let key =
        match order {
            Order::PerKey => Some(key.unwrap_or_else(|| {
                Arc::new(|_: &S::In, o: &Origin| o.key.as_ref().map(hash_bytes))
            })),
            _ => None,
        };

    let mut abandoned = false;
    // Registered once: a `cancelled()` made afresh on every lap would join
    // and leave the token's waiter list (a lock each) per event.
    let abandon = cx.abandon.cancelled();
    tokio::pin!(abandon);
    loop {
        let running = flights.len();
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
            () = &mut abandon => Event::Abandon,
            Some(done) = flights.next_done(), if running > 0 => Event::Done(done),
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
                    flights.start(payload, ack, slot, k, clock.phase_start());
                }
            }
            Event::Done((id, joined)) => {
                let Some(flight) = flights.finished(id) else {
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
                            flights.start(payload, ack, slot, Some(k), clock.phase_start());
                        }
                        None => {
                            busy_keys.remove(&k);
                        }
                    }
                }
                // Settling so far was busy; the flush is blocked.
                clock.switch(Phase::Blocked);
                if !settle
                    .flush_and_go_on(&outlet, &rx, &mut clock, Phase::Busy)
                    .await
                {
                    abandoned = true;
                    break;
                }
            }
        }
    }
    if abandoned {
        let flights = flights.abort_all();
        let parked = busy_keys
            .drain()
            .flat_map(|(_, queue)| queue.into_iter().map(|(_, ack, slot)| (ack, slot)));
        abandon_taken(&rx, &cx, flights.chain(parked));
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

/// One item's processing, as the loop awaits it: its place in the
/// [`Flights`]' bookkeeping and how it ended (a task's join error when it ran on a task of its own).
type Joined<O, E> = (
    usize,
    Result<std::thread::Result<Result<Outputs<O>, E>>, tokio::task::JoinError>,
);
type Work<S> = BoxFuture<'static, Joined<<S as Stage>::Out, <S as Stage>::Error>>;

struct InFlight {
    started: std::time::Instant,
    ack: Ack,
    slot: Slot,
    key: Option<u64>,
    /// For an item on a task of its own.
    abort: Option<tokio::task::AbortHandle>,
}

/// The items being processed, each on a task of its own or polled on the
/// stage's task, completed in input order or as they finish.
struct Flights<S: Stage> {
    stage: Arc<S>,
    order: Order,
    spawn_each: bool,
    /// Each item's bookkeeping, at the place its future completes with
    /// (a slab: a place is reused once its item finished, so a record costs
    /// no hashing and, past the first laps, no allocation).
    in_flight: Vec<Option<InFlight>>,
    /// The free places of `in_flight`.
    free: Vec<usize>,
    len: usize,
    unordered: FuturesUnordered<Work<S>>,
    ordered: FuturesOrdered<Work<S>>,
}

impl<S: Stage> Flights<S> {
    fn new(stage: Arc<S>, order: Order, spawn_each: bool) -> Self {
        Flights {
            stage,
            order,
            spawn_each,
            in_flight: Vec::new(),
            free: Vec::new(),
            len: 0,
            unordered: FuturesUnordered::new(),
            ordered: FuturesOrdered::new(),
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Starts processing one item, taken at `now`.
    fn start(
        &mut self,
        payload: S::In,
        ack: Ack,
        slot: Slot,
        key: Option<u64>,
        now: std::time::Instant,
    ) {
        let seq = self.free.pop().unwrap_or_else(|| {
            self.in_flight.push(None);
            self.in_flight.len() - 1
        });
        let stage = self.stage.clone();
        let origin = ack.origin_ref();
        let work = async move {
            AssertUnwindSafe(async { stage.process(payload, origin.get()).await })
                .catch_unwind()
                .await
        };
        let (fut, abort): (Work<S>, _) = if self.spawn_each {
            let handle = tokio::spawn(work);
            let abort = handle.abort_handle();
            (Box::pin(async move { (seq, handle.await) }), Some(abort))
        } else {
            (Box::pin(async move { (seq, Ok(work.await)) }), None)
        };
        let flight = InFlight {
            started: now,
            ack,
            slot,
            key,
            abort,
        };
        self.in_flight[seq] = Some(flight);
        self.len += 1;
        if self.order == Order::Preserve {
            self.ordered.push_back(fut);
        } else {
            self.unordered.push(fut);
        }
    }

    /// The next item to complete (in input order when the order is
    /// preserved); `None` when nothing is in flight.
    async fn next_done(&mut self) -> Option<Joined<S::Out, S::Error>> {
        if self.order == Order::Preserve {
            self.ordered.next().await
        } else {
            self.unordered.next().await
        }
    }

    /// Takes a completed item's bookkeeping.
    fn finished(&mut self, seq: usize) -> Option<InFlight> {
        let flight = self.in_flight.get_mut(seq)?.take()?;
        self.free.push(seq);
        self.len -= 1;
        Some(flight)
    }

    /// Stops every item still in flight (aborting those on tasks of their
    /// own) and hands back their acknowledgements and slots.
    fn abort_all(&mut self) -> impl Iterator<Item = (Ack, Slot)> + '_ {
        self.len = 0;
        self.free.clear();
        self.in_flight.drain(..).flatten().map(|flight| {
            if let Some(abort) = flight.abort {
                abort.abort();
            }
            (flight.ack, flight.slot)
        })
    }
}
