//! The typed streams a builder hands out, and their combinators.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{BoxError, GraphError};
use crate::mailbox::Receiver;
use crate::metrics::{NodeKind, StageMetrics};
use crate::outlet::{Outlet, Pred};
use crate::stage::{BatchStage, Stage};

use super::builder::{
    BuilderState, SharedState, add_stage_mailbox, check_concurrency, push_batch_node,
    push_stage_node,
};
use super::spec::{BatchSpec, StageSpec};

/// A typed stream of envelopes not yet connected to its consumer.
///
/// Every stream must end in a stage or sink;
/// [`GraphBuilder::build`](crate::graph::GraphBuilder::build) fails on a
/// dangling one.
#[must_use = "a stream must be connected to a stage or sink"]
pub struct Stream<T> {
    pub(super) state: SharedState,
    pub(super) port: u64,
    pub(super) from: Vec<String>,
    pub(super) connect: Connect<T>,
}

/// Connects a stream's producer to its consumer once the consumer exists.
pub(super) type Connect<T> = Box<dyn FnOnce(&mut BuilderState, Outlet<T>) + Send>;

impl<T: Send + 'static> Stream<T> {
    pub(super) fn connect_to(self, st: &mut BuilderState, outlet: Outlet<T>) {
        st.open.remove(&self.port);
        (self.connect)(st, outlet);
    }

    /// Shorthand for `.via(StageSpec::new(name, map(f)))`: a stage with the
    /// defaults (a mailbox of [`DEFAULT_CAPACITY`](crate::graph::DEFAULT_CAPACITY), one item at a time).
    /// For a capacity, a concurrency or an overflow policy, use
    /// [`via`](Self::via) with a [`StageSpec`].
    ///
    /// ```
    /// use sluicegate_core::{AckCounter, Graph, sources};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let outcomes = AckCounter::new();
    /// let mut g = Graph::builder("prices");
    /// g.source("ingest", sources::from_iter(["1", "2", "x"]).acks(outcomes.clone()))
    ///     .try_map("parse", |s: &str| s.parse::<u64>())
    ///     .filter("non-zero", |n: &u64| *n > 0)
    ///     .map("price", |n: u64| n * 100)
    ///     .sink("print", |cents: u64| async move {
    ///         println!("{cents}");
    ///         Ok::<_, std::convert::Infallible>(())
    ///     });
    /// g.build()?.start().await?.wait().await;
    /// assert_eq!((outcomes.delivered(), outcomes.failed()), (2, 1));
    /// # Ok(()) }
    /// ```
    pub fn map<O, F>(self, name: impl Into<String>, f: F) -> Stream<O>
    where
        O: Send + 'static,
        F: Fn(T) -> O + Send + Sync + 'static,
    {
        self.via(StageSpec::new(name, crate::stage::map(f)))
    }

    /// Shorthand for `.via(StageSpec::new(name, filter(f)))` (see
    /// [`map`](Self::map)): items for which `f` is false resolve as dropped.
    pub fn filter<F>(self, name: impl Into<String>, f: F) -> Stream<T>
    where
        F: Fn(&T) -> bool + Send + Sync + 'static,
    {
        self.via(StageSpec::new(name, crate::stage::filter(f)))
    }

    /// Shorthand for `.via(StageSpec::new(name, try_map(f)))` (see
    /// [`map`](Self::map)): an `Err` fails that item (to the dead-letter
    /// route, if the graph has one).
    pub fn try_map<O, E, F>(self, name: impl Into<String>, f: F) -> Stream<O>
    where
        O: Send + 'static,
        E: Into<BoxError> + Send + 'static,
        F: Fn(T) -> Result<O, E> + Send + Sync + 'static,
    {
        self.via(StageSpec::new(name, crate::stage::try_map(f)))
    }

    /// Shorthand for `.via(StageSpec::new(name, then(f)))` (see
    /// [`map`](Self::map)): an async step, one item at a time.
    pub fn then<O, E, Fut, F>(self, name: impl Into<String>, f: F) -> Stream<O>
    where
        O: Send + 'static,
        E: Into<BoxError> + Send + 'static,
        Fut: Future<Output = Result<O, E>> + Send,
        F: Fn(T) -> Fut + Send + Sync + 'static,
    {
        self.via(StageSpec::new(name, crate::stage::then(f)))
    }

    /// Shorthand for `.to(StageSpec::new(name, sink(f)))` (see
    /// [`map`](Self::map)): ends the stream; an item is delivered once `f`
    /// returns `Ok`.
    pub fn sink<E, Fut, F>(self, name: impl Into<String>, f: F)
    where
        E: Into<BoxError> + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send,
        F: Fn(T) -> Fut + Send + Sync + 'static,
    {
        self.to(StageSpec::new(name, crate::stage::sink(f)))
    }

    /// Sends this stream through a stage; returns the stage's output.
    pub fn via<S>(self, spec: StageSpec<S>) -> Stream<S::Out>
    where
        S: Stage<In = T>,
    {
        let state = self.state.clone();
        let mut st = state.lock();
        let name = spec.name.clone();
        let rx = self.stage_mailbox(&mut st, &spec, NodeKind::Stage);
        out_of(
            &state,
            &mut st,
            name,
            Box::new(move |st: &mut BuilderState, outlet: Outlet<S::Out>| {
                if let Some((rx, metrics)) = rx {
                    push_stage_node(st, spec, rx, outlet, metrics, true);
                }
            }),
        )
    }

    /// Ends this stream in a sink: a stage whose successful processing
    /// delivers the envelope.
    pub fn to<S>(self, spec: StageSpec<S>)
    where
        S: Stage<In = T, Out = ()>,
    {
        let state = self.state.clone();
        let mut st = state.lock();
        let rx = self.stage_mailbox(&mut st, &spec, NodeKind::Sink);
        if let Some((rx, metrics)) = rx {
            push_stage_node(&mut st, spec, rx, Outlet::Terminal, metrics, true);
        }
    }

    /// Sends this stream through a batch stage; returns its output.
    pub fn via_batch<S>(self, spec: BatchSpec<S>) -> Stream<S::Out>
    where
        S: BatchStage<In = T>,
    {
        let state = self.state.clone();
        let mut st = state.lock();
        let name = spec.name.clone();
        let rx = self.batch_mailbox(&mut st, &spec, NodeKind::Stage);
        out_of(
            &state,
            &mut st,
            name,
            Box::new(move |st: &mut BuilderState, outlet: Outlet<S::Out>| {
                if let Some((rx, metrics)) = rx {
                    push_batch_node(st, spec, rx, outlet, metrics);
                }
            }),
        )
    }

    /// Ends this stream in a batch sink.
    pub fn to_batch<S>(self, spec: BatchSpec<S>)
    where
        S: BatchStage<In = T, Out = ()>,
    {
        let state = self.state.clone();
        let mut st = state.lock();
        let rx = self.batch_mailbox(&mut st, &spec, NodeKind::Sink);
        if let Some((rx, metrics)) = rx {
            push_batch_node(&mut st, spec, rx, Outlet::Terminal, metrics);
        }
    }

    /// Adds the mailbox of the stage `spec` describes and connects this
    /// stream to it.
    fn stage_mailbox<S: Stage<In = T>>(
        self,
        st: &mut BuilderState,
        spec: &StageSpec<S>,
        kind: NodeKind,
    ) -> Option<(Receiver<T>, Arc<StageMetrics>)> {
        check_concurrency(st, &spec.name, spec.concurrency, spec.mailbox.capacity);
        let (rx, outlet) = add_stage_mailbox(
            st,
            &spec.name,
            &spec.mailbox,
            kind,
            spec.concurrency,
            self.from.clone(),
        );
        self.connect_to(st, outlet);
        rx
    }

    /// The same for a batch stage, whose mailbox must hold a whole batch.
    pub(super) fn batch_mailbox<S: BatchStage<In = T>>(
        self,
        st: &mut BuilderState,
        spec: &BatchSpec<S>,
        kind: NodeKind,
    ) -> Option<(Receiver<T>, Arc<StageMetrics>)> {
        if spec.mailbox.capacity < spec.batch.max_items {
            st.errors.push(GraphError::InvalidConfig {
                stage: spec.name.clone(),
                message: format!(
                    "mailbox capacity {} is below the batch size {}; a batch in progress counts against the capacity",
                    spec.mailbox.capacity, spec.batch.max_items
                ),
            });
        }
        let (rx, outlet) =
            add_stage_mailbox(st, &spec.name, &spec.mailbox, kind, 1, self.from.clone());
        self.connect_to(st, outlet);
        rx
    }

    /// Copies every envelope to `N` streams (its acknowledgement is split:
    /// the origin hears once all copies are done, with the worst outcome).
    ///
    /// ```
    /// use sluicegate_core::testing::{AckLog, CollectSink, VecSource};
    /// use sluicegate_core::{Graph, StageSpec, map};
    ///
    /// let mut g = Graph::builder("fan-out");
    /// let numbers = VecSource::new(vec![1u64, 2, 3], AckLog::new());
    /// let [audit, main] = g.source("numbers", numbers).broadcast();
    /// audit.to(StageSpec::new("audit", CollectSink::new()));
    /// main.via(StageSpec::new("double", map(|n: u64| n * 2)))
    ///     .to(StageSpec::new("out", CollectSink::new()));
    /// g.build().expect("a valid graph");
    /// ```
    ///
    /// The number of branches is part of the type, so there is no "fewer
    /// branches than expected" case to handle, and none at all is refused
    /// when the program is compiled:
    ///
    /// ```compile_fail
    /// use sluicegate_core::testing::{AckLog, VecSource};
    /// use sluicegate_core::Graph;
    ///
    /// let mut g = Graph::builder("nowhere");
    /// let [] = g.source("numbers", VecSource::new(vec![1u64], AckLog::new())).broadcast::<0>();
    /// ```
    ///
    /// # Backpressure
    ///
    /// The slowest branch sets the pace: a copy waits for room in each branch.
    pub fn broadcast<const N: usize>(self) -> [Stream<T>; N]
    where
        T: Clone,
    {
        const { assert!(N > 0, "broadcast needs at least one branch") };
        let state = self.state.clone();
        let from = self.from.clone();
        let join = Join::new(N, self);
        let mut st = state.lock();
        let ports: [u64; N] = std::array::from_fn(|_| st.port(&from.join("+")));
        drop(st);
        std::array::from_fn(|i| {
            let join = join.clone();
            Stream {
                state: state.clone(),
                port: ports[i],
                from: from.clone(),
                connect: Box::new(move |st: &mut BuilderState, outlet: Outlet<T>| {
                    if let Some((branches, up)) = Join::fill(&join, i, outlet) {
                        up.connect_to(
                            st,
                            Outlet::Broadcast {
                                branches,
                                clone: T::clone,
                            },
                        );
                    }
                }),
            }
        })
    }

    /// Splits the stream: envelopes for which `pred` holds go to the first
    /// stream, the rest to the second.
    pub fn route(
        self,
        pred: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> (Stream<T>, Stream<T>) {
        let pred: Pred<T> = Arc::new(pred);
        let state = self.state.clone();
        let from = self.from.clone();
        let join = Join::new(2, self);
        let mut st = state.lock();
        let ports = [st.port(&from.join("+")), st.port(&from.join("+"))];
        drop(st);
        let make = |i: usize, port: u64| {
            let join = join.clone();
            let pred = pred.clone();
            Stream {
                state: state.clone(),
                port,
                from: from.clone(),
                connect: Box::new(move |st: &mut BuilderState, outlet: Outlet<T>| {
                    if let Some((branches, up)) = Join::fill(&join, i, outlet) {
                        let [yes, no]: [Outlet<T>; 2] =
                            branches.try_into().unwrap_or_else(|_| unreachable!());
                        up.connect_to(
                            st,
                            Outlet::Route {
                                pred,
                                yes: Box::new(yes),
                                no: Box::new(no),
                            },
                        );
                    }
                }),
            }
        };
        (make(0, ports[0]), make(1, ports[1]))
    }

    /// Merges streams of the same type into one (fan-in).
    pub fn merge(streams: Vec<Stream<T>>) -> Stream<T> {
        assert!(
            !streams.is_empty(),
            "Stream::merge needs at least one stream"
        );
        let state = streams[0].state.clone();
        let from: Vec<String> = streams.iter().flat_map(|s| s.from.clone()).collect();
        let port = state.lock().port(&from.join("+"));
        Stream {
            state,
            port,
            from,
            connect: Box::new(move |st: &mut BuilderState, outlet: Outlet<T>| {
                for s in streams {
                    s.connect_to(st, outlet.clone());
                }
            }),
        }
    }
}

/// The stream out of the node `name`, connected to its consumer by
/// `connect` once that exists.
fn out_of<O>(
    state: &SharedState,
    st: &mut BuilderState,
    name: String,
    connect: Connect<O>,
) -> Stream<O> {
    Stream {
        state: state.clone(),
        port: st.port(&name),
        from: vec![name],
        connect,
    }
}

/// Where a fan-out waits for its branches: each branch's consumer leaves its
/// outlet here as it is connected, and the last one connects the upstream.
struct Join<T> {
    slots: Vec<Option<Outlet<T>>>,
    upstream: Option<Stream<T>>,
}

impl<T: Send + 'static> Join<T> {
    fn new(branches: usize, upstream: Stream<T>) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            slots: (0..branches).map(|_| None).collect(),
            upstream: Some(upstream),
        }))
    }

    /// Leaves branch `i`'s outlet; once every branch has one, returns the
    /// outlets in branch order with the upstream to connect to them.
    fn fill(
        join: &Mutex<Self>,
        i: usize,
        outlet: Outlet<T>,
    ) -> Option<(Vec<Outlet<T>>, Stream<T>)> {
        let mut join = join.lock().unwrap_or_else(PoisonError::into_inner);
        join.slots[i] = Some(outlet);
        if !join.slots.iter().all(Option::is_some) {
            return None;
        }
        let up = join.upstream.take()?;
        Some((join.slots.drain(..).flatten().collect(), up))
    }
}
