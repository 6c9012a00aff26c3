//! Building a graph in code and running it.
//!
//! A [`GraphBuilder`] hands out typed [`Stream`]s: a source's output, a
//! stage's output. Connecting a stream to a stage ([`Stream::via`]) or a sink
//! ([`Stream::to`]) creates the stage's bounded mailbox; fan-out
//! ([`Stream::broadcast`], [`Stream::route`]) and fan-in ([`Stream::merge`])
//! reshape the flow. Payload types must match at every connection, or the
//! code does not compile. [`GraphBuilder::build`] checks that every stream
//! ends somewhere; [`Graph::start`] runs the start hooks and spawns one task
//! per node.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use sluicegate_core::{map, Graph, StageSpec};
//! use sluicegate_core::testing::{AckLog, CollectSink, VecSource};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let acks = AckLog::new();
//! let sink = CollectSink::new();
//! let mut g = Graph::builder("doubler");
//! g.source("numbers", VecSource::new((1..=5).collect(), acks.clone()))
//!     .via(StageSpec::new("double", map(|x: u64| x * 2)).capacity(8))
//!     .to(StageSpec::new("collect", sink.clone()));
//! let report = g.build()?.start().await?.wait().await;
//! assert!(report.is_clean());
//! assert_eq!(sink.items(), vec![2, 4, 6, 8, 10]);
//! assert_eq!(acks.delivered(), 5);
//! # Ok(())
//! # }
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ack::Origin;
use crate::driver::{self, KeyFn, NodeCx};
use crate::error::{BoxError, GraphError, ItemError, panic_message};
use crate::mailbox::{Overflow, Receiver, Weigher, mailbox};
use crate::metrics::{Metrics, NodeKind, Snapshot, StageMetrics};
use crate::outlet::{Outlet, Pred};
use crate::source::{Source, SourceContext};
use crate::stage::{BatchStage, Stage};

/// The default mailbox capacity: small enough to keep memory and latency
/// low, big enough to let neighbouring stages overlap.
pub const DEFAULT_CAPACITY: usize = 128;

/// How long a graph drains after a fatal error before what is left is
/// abandoned, unless [`GraphBuilder::drain_deadline`] says otherwise.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// How many envelopes a sequential stage takes from its mailbox per lock.
const PREFETCH: usize = 64;

/// The order a concurrent stage emits in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Outputs leave as they finish (fastest).
    #[default]
    Unordered,
    /// Outputs leave in input order (a slow item holds back those behind it).
    Preserve,
    /// Items with the same key are processed one at a time, in input order;
    /// different keys run in parallel. The key is the origin's key unless
    /// [`StageSpec::key_by`] says otherwise; items without a key are not
    /// ordered among themselves.
    PerKey,
}

/// How a batch stage gathers its batches: wait for the first item, then
/// gather until `max_items`, `max_bytes` or `max_wait` after the first.
///
/// A quiet stream still flushes (after `max_wait`); a busy one fills batches.
pub struct BatchConfig<T> {
    pub(crate) max_items: usize,
    pub(crate) max_bytes: Option<(usize, Weigher<T>)>,
    pub(crate) max_wait: Duration,
}

impl<T> BatchConfig<T> {
    /// Batches of at most `max_items`, flushed at most `max_wait` after their
    /// first item arrived.
    pub fn new(max_items: usize, max_wait: Duration) -> Self {
        BatchConfig {
            max_items: max_items.max(1),
            max_bytes: None,
            max_wait,
        }
    }

    /// Also closes a batch once its items weigh `max_bytes` (as measured by `weigher`).
    pub fn max_bytes(
        mut self,
        max_bytes: usize,
        weigher: impl Fn(&T) -> usize + Send + Sync + 'static,
    ) -> Self {
        self.max_bytes = Some((max_bytes, Arc::new(weigher)));
        self
    }
}

/// A failed item on its way to the dead-letter route. The origin (with the
/// record's original bytes, when the source kept them) comes with it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Why it failed, and where.
    pub error: ItemError,
}

struct MailboxSpec<T> {
    capacity: usize,
    overflow: Overflow,
    byte_budget: Option<(usize, Weigher<T>)>,
}

/// A stage with its name and settings, ready to connect with [`Stream::via`]
/// or [`Stream::to`].
pub struct StageSpec<S: Stage> {
    name: String,
    stage: S,
    mailbox: MailboxSpec<S::In>,
    concurrency: usize,
    order: Order,
    key: Option<KeyFn<S::In>>,
    spawn_items: bool,
}

impl<S: Stage> StageSpec<S> {
    /// `stage` under `name` (unique in the graph), with a mailbox of
    /// [`DEFAULT_CAPACITY`], [`Overflow::Block`], one item at a time, or
    /// as many as the stage's [`concurrency_hint`](Stage::concurrency_hint)
    /// says (a [`blocking`](crate::blocking) stage's `max_in_flight`, the
    /// mailbox then at least that large).
    pub fn new(name: impl Into<String>, stage: S) -> Self {
        let concurrency = stage.concurrency_hint().unwrap_or(1).max(1);
        StageSpec {
            name: name.into(),
            stage,
            mailbox: MailboxSpec {
                capacity: DEFAULT_CAPACITY.max(concurrency),
                overflow: Overflow::Block,
                byte_budget: None,
            },
            concurrency,
            order: Order::Unordered,
            key: None,
            spawn_items: true,
        }
    }

    /// The mailbox capacity in items: items waiting plus items in progress.
    ///
    /// # Backpressure
    ///
    /// Must be at least the concurrency (checked at build). See the
    /// [mailbox module](crate::mailbox) on choosing a bound.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.mailbox.capacity = capacity;
        self
    }

    /// What happens when the mailbox is full (default [`Overflow::Block`]).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.mailbox.overflow = overflow;
        self
    }

    /// Also bounds the mailbox by the total size of its items.
    pub fn max_bytes(
        mut self,
        max_bytes: usize,
        weigher: impl Fn(&S::In) -> usize + Send + Sync + 'static,
    ) -> Self {
        self.mailbox.byte_budget = Some((max_bytes, Arc::new(weigher)));
        self
    }

    /// How many items the stage processes at once (its max in flight). With
    /// more than one, each item runs on its own task, so sync work runs in
    /// parallel across cores.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Whether, with a concurrency above one, each item runs on a task of
    /// its own (the default: the synchronous parts of several items then
    /// run in parallel across cores). With `false` the items' futures are
    /// polled on the stage's own task: no task per item (an allocation, a
    /// schedule and a wake-up each), for a stage that mostly awaits, such
    /// as a sink awaiting each record's acknowledgement from a broker; the
    /// synchronous parts then run one at a time. A panic still fails only
    /// its item.
    pub fn spawn_items(mut self, spawn: bool) -> Self {
        self.spawn_items = spawn;
        self
    }

    /// The order outputs leave in when the concurrency is above one.
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// The key for [`Order::PerKey`] (implies it); `None` means unordered.
    pub fn key_by(
        mut self,
        key: impl Fn(&S::In, &Origin) -> Option<u64> + Send + Sync + 'static,
    ) -> Self {
        self.key = Some(Arc::new(key));
        self.order = Order::PerKey;
        self
    }
}

/// A batch stage with its name and settings. See [`BatchConfig`].
pub struct BatchSpec<S: BatchStage> {
    name: String,
    stage: S,
    mailbox: MailboxSpec<S::In>,
    batch: BatchConfig<S::In>,
}

impl<S: BatchStage> BatchSpec<S> {
    /// `stage` under `name`, batching as `batch` says; the mailbox holds two
    /// batches by default (one in progress, one gathering).
    pub fn new(name: impl Into<String>, stage: S, batch: BatchConfig<S::In>) -> Self {
        BatchSpec {
            name: name.into(),
            stage,
            mailbox: MailboxSpec {
                capacity: batch.max_items.saturating_mul(2),
                overflow: Overflow::Block,
                byte_budget: None,
            },
            batch,
        }
    }

    /// The mailbox capacity; at least the batch size (checked at build).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.mailbox.capacity = capacity;
        self
    }

    /// What happens when the mailbox is full (default [`Overflow::Block`]).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.mailbox.overflow = overflow;
        self
    }
}

/// Runs a node once the graph starts.
type RunFn = Box<dyn FnOnce(NodeEnv) -> BoxFuture<'static, Result<(), GraphError>> + Send>;
/// A node's start hook.
type StartFn = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), BoxError>> + Send>;

/// What a node gets when the graph starts.
struct NodeEnv {
    dlq: Option<Outlet<DeadLetter>>,
    shutdown: CancellationToken,
    abandon: CancellationToken,
    fatal: CancellationToken,
}

struct NodeSpec {
    name: Arc<str>,
    start: Option<StartFn>,
    run: RunFn,
}

struct BuilderState {
    name: String,
    metrics: Arc<Metrics>,
    nodes: Vec<NodeSpec>,
    names: HashSet<String>,
    /// Streams not yet connected: port id to the node that produces them.
    open: BTreeMap<u64, String>,
    next_port: u64,
    dlq: Option<Outlet<DeadLetter>>,
    errors: Vec<GraphError>,
    drain_deadline: Duration,
}

impl BuilderState {
    fn port(&mut self, from: &str) -> u64 {
        self.next_port += 1;
        self.open.insert(self.next_port, from.to_string());
        self.next_port
    }

    fn claim_name(&mut self, name: &str) {
        if !self.names.insert(name.to_string()) {
            self.errors.push(GraphError::DuplicateName {
                name: name.to_string(),
            });
        }
    }
}

/// Builds a graph. Not `Send`: build on one task, then [`Graph`] is `Send`.
pub struct GraphBuilder {
    state: Rc<RefCell<BuilderState>>,
}

/// A typed stream of envelopes not yet connected to its consumer.
///
/// Every stream must end in a stage or sink; [`GraphBuilder::build`] fails
/// on a dangling one.
#[must_use = "a stream must be connected to a stage or sink"]
pub struct Stream<T> {
    state: Rc<RefCell<BuilderState>>,
    port: u64,
    from: Vec<String>,
    connect: Connect<T>,
}

/// Connects a stream's producer to its consumer once the consumer exists.
type Connect<T> = Box<dyn FnOnce(&mut BuilderState, Outlet<T>)>;

/// A built graph, ready to start.
pub struct Graph {
    name: String,
    metrics: Arc<Metrics>,
    nodes: Vec<NodeSpec>,
    dlq: Option<Outlet<DeadLetter>>,
    drain_deadline: Duration,
}

impl Graph {
    /// Starts building a graph called `name`.
    pub fn builder(name: impl Into<String>) -> GraphBuilder {
        let name = name.into();
        GraphBuilder {
            state: Rc::new(RefCell::new(BuilderState {
                metrics: Arc::new(Metrics::new(&name)),
                name,
                nodes: Vec::new(),
                names: HashSet::new(),
                open: BTreeMap::new(),
                next_port: 0,
                dlq: None,
                errors: Vec::new(),
                drain_deadline: DEFAULT_DRAIN_DEADLINE,
            })),
        }
    }

    /// The graph's metrics (live before and after start).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Runs every start hook, in the order the nodes were connected, then
    /// spawns one task per node on the current Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`GraphError::StartFailed`] naming the first stage whose start hook
    /// failed; nothing is spawned then.
    pub async fn start(mut self) -> Result<RunningGraph, GraphError> {
        for node in &mut self.nodes {
            if let Some(start) = node.start.take() {
                start().await.map_err(|source| GraphError::StartFailed {
                    stage: node.name.to_string(),
                    source,
                })?;
            }
        }
        self.metrics.mark_started();
        let shutdown = CancellationToken::new();
        let abandon = CancellationToken::new();
        let fatal = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut names = Vec::new();
        for node in self.nodes {
            let env = NodeEnv {
                dlq: self.dlq.clone(),
                shutdown: shutdown.clone(),
                abandon: abandon.clone(),
                fatal: fatal.clone(),
            };
            let name = node.name.clone();
            let fut = (node.run)(env);
            let span = tracing::info_span!("node", graph = %self.name, node = %name);
            let n = name.clone();
            let id = tasks
                .spawn(tracing::Instrument::instrument(
                    async move {
                        match AssertUnwindSafe(fut).catch_unwind().await {
                            Ok(r) => r,
                            Err(p) => Err(GraphError::TaskPanicked {
                                stage: n.to_string(),
                                message: panic_message(p.as_ref()),
                            }),
                        }
                    },
                    span,
                ))
                .id();
            names.push((id, name));
        }
        // Drop the builder's handle on the dead-letter mailbox so it closes
        // once every node that can fail items has stopped.
        drop(self.dlq);
        Ok(RunningGraph {
            name: self.name,
            metrics: self.metrics,
            shutdown,
            abandon,
            fatal,
            drain_deadline: self.drain_deadline,
            tasks,
            names,
            started: tokio::time::Instant::now(),
        })
    }
}

use std::panic::AssertUnwindSafe;

impl GraphBuilder {
    /// The graph's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.borrow().metrics.clone()
    }

    /// Adds a source; returns its output stream.
    pub fn source<S: Source>(&mut self, name: impl Into<String>, source: S) -> Stream<S::Out> {
        let name = name.into();
        let mut st = self.state.borrow_mut();
        st.claim_name(&name);
        let metrics = Arc::new(StageMetrics::new(name.as_str().into(), NodeKind::Source, 1));
        st.metrics.register_stage(metrics.clone());
        let port = st.port(&name);
        let node_name: Arc<str> = name.as_str().into();
        Stream {
            state: self.state.clone(),
            port,
            from: vec![name],
            connect: Box::new(move |st: &mut BuilderState, outlet: Outlet<S::Out>| {
                let run_name = node_name.clone();
                st.nodes.push(NodeSpec {
                    name: node_name,
                    start: None,
                    run: Box::new(move |env: NodeEnv| {
                        async move {
                            let cx = SourceContext {
                                name: run_name.clone(),
                                outlet,
                                shutdown: env.shutdown.clone(),
                                abandon: env.abandon,
                                clock: crate::metrics::Clock::start(
                                    metrics.clone(),
                                    crate::metrics::Phase::Busy,
                                ),
                                metrics,
                            };
                            let result = source.run(cx).await;
                            result.map_err(|mut source| {
                                // `cx.emit(env).await?`: the refused envelope
                                // is resolved now, not when the report holding
                                // this error is dropped.
                                if let Some(refused) =
                                    source.downcast_mut::<crate::source::EmitError<S::Out>>()
                                {
                                    refused.resolve();
                                }
                                env.fatal.cancel();
                                env.shutdown.cancel();
                                GraphError::Fatal {
                                    stage: run_name.to_string(),
                                    source,
                                }
                            })
                        }
                        .boxed()
                    }),
                });
            }),
        }
    }

    /// Sets the dead-letter route: where every stage's failed items go, with
    /// their error. Without one, failed items resolve as
    /// [`Outcome::Failed`](crate::Outcome::Failed). The dead-letter stage's
    /// own failures are not re-routed.
    pub fn dead_letters<S>(&mut self, spec: StageSpec<S>)
    where
        S: Stage<In = DeadLetter, Out = ()>,
    {
        let mut st = self.state.borrow_mut();
        if st.dlq.is_some() {
            st.errors.push(GraphError::InvalidConfig {
                stage: spec.name.clone(),
                message: "a graph has one dead-letter route; this is a second".into(),
            });
            return;
        }
        let (rx, outlet) = add_stage_mailbox(
            &mut st,
            &spec.name,
            &spec.mailbox,
            NodeKind::DeadLetter,
            spec.concurrency,
            vec!["*".into()],
        );
        let Some((rx, metrics)) = rx else { return };
        st.dlq = Some(outlet);
        check_concurrency(&mut st, &spec.name, spec.concurrency, spec.mailbox.capacity);
        push_stage_node(&mut st, spec, rx, Outlet::Terminal, metrics, false);
    }

    /// How long the graph drains after a fatal error before what is left
    /// is abandoned (default [`DEFAULT_DRAIN_DEADLINE`]), when it runs
    /// under [`RunningGraph::wait`]; [`RunningGraph::run_until`] uses its
    /// own deadline.
    ///
    /// A fatal error (a stage's or a source's) starts a drain like a
    /// [`shutdown`](RunningGraph::shutdown): sources stop, stages drain;
    /// at the deadline, everything still in the graph is abandoned
    /// (resolved as failed, never as delivered), so a stage stuck in one
    /// call cannot hang the process.
    pub fn drain_deadline(&mut self, deadline: Duration) -> &mut Self {
        self.state.borrow_mut().drain_deadline = deadline;
        self
    }

    /// Checks the graph and freezes it.
    ///
    /// # Errors
    ///
    /// The first problem found: a stream left unconnected, a repeated name,
    /// an inconsistent setting.
    pub fn build(self) -> Result<Graph, GraphError> {
        let mut st = self.state.borrow_mut();
        if let Some(err) = st.errors.drain(..).next() {
            return Err(err);
        }
        if let Some(stage) = st.open.values().next() {
            return Err(GraphError::Unconnected {
                stage: stage.clone(),
            });
        }
        Ok(Graph {
            name: st.name.clone(),
            metrics: st.metrics.clone(),
            nodes: std::mem::take(&mut st.nodes),
            dlq: st.dlq.take(),
            drain_deadline: st.drain_deadline,
        })
    }
}

fn check_concurrency(st: &mut BuilderState, name: &str, concurrency: usize, capacity: usize) {
    if concurrency == 0 {
        st.errors.push(GraphError::InvalidConfig {
            stage: name.into(),
            message: "concurrency must be at least 1".into(),
        });
    } else if capacity > 0 && capacity < concurrency {
        st.errors.push(GraphError::InvalidConfig {
            stage: name.into(),
            message: format!(
                "mailbox capacity {capacity} is below the concurrency {concurrency}; items in progress count against the capacity, so raise it to at least {concurrency}"
            ),
        });
    }
}

#[allow(clippy::type_complexity)]
fn add_stage_mailbox<T: Send + 'static>(
    st: &mut BuilderState,
    name: &str,
    spec: &MailboxSpec<T>,
    kind: NodeKind,
    concurrency: usize,
    from: Vec<String>,
) -> (Option<(Receiver<T>, Arc<StageMetrics>)>, Outlet<T>) {
    st.claim_name(name);
    let capacity = spec.capacity;
    if capacity == 0 {
        st.errors.push(GraphError::InvalidConfig {
            stage: name.into(),
            message: "mailbox capacity must be at least 1 (sluicegate has no unbounded queues)"
                .into(),
        });
        return (None, Outlet::Terminal);
    }
    let (tx, rx) = mailbox(name, capacity, spec.overflow, spec.byte_budget.clone());
    st.metrics.register_mailbox(tx.stats().clone(), from);
    let metrics = Arc::new(StageMetrics::new(name.into(), kind, concurrency));
    st.metrics.register_stage(metrics.clone());
    (Some((rx, metrics)), Outlet::Mailbox(tx))
}

fn push_stage_node<S: Stage>(
    st: &mut BuilderState,
    spec: StageSpec<S>,
    rx: Receiver<S::In>,
    outlet: Outlet<S::Out>,
    metrics: Arc<StageMetrics>,
    use_dlq: bool,
) {
    let name: Arc<str> = spec.name.as_str().into();
    let stage = Arc::new(spec.stage);
    let starter = stage.clone();
    let concurrency = spec.concurrency;
    let order = spec.order;
    let key = spec.key;
    let spawn = spec.spawn_items;
    let prefetch = spec.mailbox.capacity.min(PREFETCH);
    let run_name = name.clone();
    st.nodes.push(NodeSpec {
        name,
        start: Some(Box::new(move || {
            async move { starter.start().await.map_err(Into::into) }.boxed()
        })),
        run: Box::new(move |env: NodeEnv| {
            let cx = NodeCx {
                name: run_name,
                metrics,
                dlq: if use_dlq { env.dlq } else { None },
                shutdown: env.shutdown,
                abandon: env.abandon,
                fatal: env.fatal,
            };
            if concurrency <= 1 {
                driver::run_sequential(stage, rx, outlet, cx, prefetch).boxed()
            } else {
                let how = driver::Concurrency {
                    limit: concurrency,
                    order,
                    key,
                    spawn,
                };
                driver::run_concurrent(stage, rx, outlet, cx, how).boxed()
            }
        }),
    });
}

impl<T: Send + 'static> Stream<T> {
    fn connect_to(self, st: &mut BuilderState, outlet: Outlet<T>) {
        st.open.remove(&self.port);
        (self.connect)(st, outlet);
    }

    /// Shorthand for `.via(StageSpec::new(name, map(f)))`: a stage with the
    /// defaults (a mailbox of [`DEFAULT_CAPACITY`], one item at a time).
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
        let mut st = state.borrow_mut();
        let name = spec.name.clone();
        check_concurrency(&mut st, &name, spec.concurrency, spec.mailbox.capacity);
        let (rx, outlet) = add_stage_mailbox(
            &mut st,
            &name,
            &spec.mailbox,
            NodeKind::Stage,
            spec.concurrency,
            self.from.clone(),
        );
        self.connect_to(&mut st, outlet);
        let port = st.port(&name);
        drop(st);
        Stream {
            state,
            port,
            from: vec![name],
            connect: Box::new(move |st: &mut BuilderState, outlet: Outlet<S::Out>| {
                if let Some((rx, metrics)) = rx {
                    push_stage_node(st, spec, rx, outlet, metrics, true);
                }
            }),
        }
    }

    /// Ends this stream in a sink: a stage whose successful processing
    /// delivers the envelope.
    pub fn to<S>(self, spec: StageSpec<S>)
    where
        S: Stage<In = T, Out = ()>,
    {
        let state = self.state.clone();
        let mut st = state.borrow_mut();
        let name = spec.name.clone();
        check_concurrency(&mut st, &name, spec.concurrency, spec.mailbox.capacity);
        let (rx, outlet) = add_stage_mailbox(
            &mut st,
            &name,
            &spec.mailbox,
            NodeKind::Sink,
            spec.concurrency,
            self.from.clone(),
        );
        self.connect_to(&mut st, outlet);
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
        let mut st = state.borrow_mut();
        let name = spec.name.clone();
        let rx = self.batch_mailbox(&mut st, &spec, NodeKind::Stage);
        let port = st.port(&name);
        drop(st);
        Stream {
            state,
            port,
            from: vec![name],
            connect: Box::new(move |st: &mut BuilderState, outlet: Outlet<S::Out>| {
                if let Some((rx, metrics)) = rx {
                    push_batch_node(st, spec, rx, outlet, metrics);
                }
            }),
        }
    }

    /// Ends this stream in a batch sink.
    pub fn to_batch<S>(self, spec: BatchSpec<S>)
    where
        S: BatchStage<In = T, Out = ()>,
    {
        let state = self.state.clone();
        let mut st = state.borrow_mut();
        let rx = self.batch_mailbox(&mut st, &spec, NodeKind::Sink);
        if let Some((rx, metrics)) = rx {
            push_batch_node(&mut st, spec, rx, Outlet::Terminal, metrics);
        }
    }

    #[allow(clippy::type_complexity)]
    fn batch_mailbox<S: BatchStage<In = T>>(
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
        let slots: Rc<RefCell<Vec<Option<Outlet<T>>>>> =
            Rc::new(RefCell::new((0..N).map(|_| None).collect()));
        let upstream: Rc<RefCell<Option<Stream<T>>>> = Rc::new(RefCell::new(Some(self)));
        let from = upstream
            .borrow()
            .as_ref()
            .map(|s| s.from.clone())
            .unwrap_or_default();
        let mut st = state.borrow_mut();
        let ports: [u64; N] = std::array::from_fn(|_| st.port(&from.join("+")));
        drop(st);
        std::array::from_fn(|i| {
            let slots = slots.clone();
            let upstream = upstream.clone();
            Stream {
                state: state.clone(),
                port: ports[i],
                from: from.clone(),
                connect: Box::new(move |st: &mut BuilderState, outlet: Outlet<T>| {
                    slots.borrow_mut()[i] = Some(outlet);
                    if slots.borrow().iter().all(Option::is_some) {
                        let branches = slots.borrow_mut().drain(..).flatten().collect();
                        if let Some(up) = upstream.borrow_mut().take() {
                            up.connect_to(
                                st,
                                Outlet::Broadcast {
                                    branches,
                                    clone: T::clone,
                                },
                            );
                        }
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
        let slots: Rc<RefCell<[Option<Outlet<T>>; 2]>> = Rc::new(RefCell::new([None, None]));
        let upstream: Rc<RefCell<Option<Stream<T>>>> = Rc::new(RefCell::new(Some(self)));
        let mut st = state.borrow_mut();
        let ports = [st.port(&from.join("+")), st.port(&from.join("+"))];
        drop(st);
        let make = |i: usize, port: u64| {
            let slots = slots.clone();
            let upstream = upstream.clone();
            let pred = pred.clone();
            Stream {
                state: state.clone(),
                port,
                from: from.clone(),
                connect: Box::new(move |st: &mut BuilderState, outlet: Outlet<T>| {
                    slots.borrow_mut()[i] = Some(outlet);
                    let ready = slots.borrow().iter().all(Option::is_some);
                    if ready {
                        let [yes, no] = std::mem::take(&mut *slots.borrow_mut());
                        if let (Some(yes), Some(no), Some(up)) =
                            (yes, no, upstream.borrow_mut().take())
                        {
                            up.connect_to(
                                st,
                                Outlet::Route {
                                    pred,
                                    yes: Box::new(yes),
                                    no: Box::new(no),
                                },
                            );
                        }
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
        let port = state.borrow_mut().port(&from.join("+"));
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

fn push_batch_node<S: BatchStage>(
    st: &mut BuilderState,
    spec: BatchSpec<S>,
    rx: Receiver<S::In>,
    outlet: Outlet<S::Out>,
    metrics: Arc<StageMetrics>,
) {
    let name: Arc<str> = spec.name.as_str().into();
    let stage = Arc::new(spec.stage);
    let starter = stage.clone();
    let batch = spec.batch;
    let run_name = name.clone();
    st.nodes.push(NodeSpec {
        name,
        start: Some(Box::new(move || {
            async move { starter.start().await.map_err(Into::into) }.boxed()
        })),
        run: Box::new(move |env: NodeEnv| {
            let cx = NodeCx {
                name: run_name,
                metrics,
                dlq: env.dlq,
                shutdown: env.shutdown,
                abandon: env.abandon,
                fatal: env.fatal,
            };
            driver::run_batched(stage, rx, outlet, cx, batch).boxed()
        }),
    });
}

/// A started graph. End it with [`RunningGraph::wait`] or
/// [`RunningGraph::shutdown`]; dropping it abandons everything inside.
pub struct RunningGraph {
    name: String,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    abandon: CancellationToken,
    /// Cancelled by the first fatal error: starts the drain deadline.
    fatal: CancellationToken,
    drain_deadline: Duration,
    tasks: JoinSet<Result<(), GraphError>>,
    names: Vec<(tokio::task::Id, Arc<str>)>,
    started: tokio::time::Instant,
}

/// How a graph ended.
#[derive(Debug)]
pub struct Report {
    /// The graph's name.
    pub graph: String,
    /// From start to the last node stopping.
    pub elapsed: Duration,
    /// Whether every node stopped on its own (no deadline was hit).
    pub drained: bool,
    /// Items failed as abandoned because the shutdown deadline passed.
    pub abandoned: u64,
    /// Fatal errors, in the order nodes reported them.
    pub errors: Vec<GraphError>,
    /// The metrics at the end.
    pub snapshot: Snapshot,
}

impl Report {
    /// Drained, nothing abandoned, no fatal error.
    pub fn is_clean(&self) -> bool {
        self.drained && self.abandoned == 0 && self.errors.is_empty()
    }
}

impl RunningGraph {
    /// The graph's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The shutdown token: cancelling it starts a graceful shutdown (sources
    /// stop taking input, everything in the graph drains).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until every node has stopped: the sources ended (or shutdown
    /// was requested through the token) and everything drained. No
    /// deadline, except after a fatal error: that starts a drain within
    /// the graph's [drain deadline](GraphBuilder::drain_deadline), past
    /// which what is left is abandoned, as [`shutdown`](RunningGraph::shutdown)
    /// does.
    pub async fn wait(mut self) -> Report {
        let mut errors = Vec::new();
        loop {
            tokio::select! {
                joined = self.tasks.join_next_with_id() => match joined {
                    Some(joined) => collect(joined, &self.names, &mut errors, &self.shutdown, &self.fatal),
                    None => return self.report(true, errors),
                },
                () = self.fatal.cancelled() => {
                    let deadline = self.drain_deadline;
                    return self.drain(deadline, errors).await;
                }
            }
        }
    }

    /// Shuts down gracefully: sources stop taking input, stages drain their
    /// mailboxes, sinks flush, acknowledgements settle. If that takes longer
    /// than `deadline`, everything still in the graph is abandoned: its
    /// acknowledgements resolve as failed ([`FailureKind::Abandoned`](crate::FailureKind::Abandoned)),
    /// never as delivered, and [`Report::drained`] is false.
    pub async fn shutdown(self, deadline: Duration) -> Report {
        self.drain(deadline, Vec::new()).await
    }

    /// Runs until the graph ends by itself (its sources ended) or `stop`
    /// completes or a fatal error happens, whichever is first; after `stop`
    /// or a fatal error, shuts down as [`shutdown`](RunningGraph::shutdown)
    /// does, with `deadline` (counted from the stop or the error). This is
    /// what a binary wants: run until a signal, then drain within a bound.
    pub async fn run_until(mut self, stop: impl Future<Output = ()>, deadline: Duration) -> Report {
        let mut errors = Vec::new();
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                joined = self.tasks.join_next_with_id() => match joined {
                    Some(joined) => collect(joined, &self.names, &mut errors, &self.shutdown, &self.fatal),
                    None => return self.report(true, errors),
                },
                () = &mut stop => return self.drain(deadline, errors).await,
                () = self.fatal.cancelled() => return self.drain(deadline, errors).await,
            }
        }
    }

    async fn drain(mut self, deadline: Duration, mut errors: Vec<GraphError>) -> Report {
        self.shutdown.cancel();
        let until = tokio::time::Instant::now() + deadline;
        let mut drained = true;
        loop {
            match tokio::time::timeout_at(until, self.tasks.join_next_with_id()).await {
                Ok(Some(joined)) => collect(
                    joined,
                    &self.names,
                    &mut errors,
                    &self.shutdown,
                    &self.fatal,
                ),
                Ok(None) => break,
                Err(_) => {
                    drained = false;
                    break;
                }
            }
        }
        if !drained {
            tracing::warn!(graph = %self.name, ?deadline, "drain deadline passed; abandoning what is left");
            self.abandon.cancel();
            // Nodes answer `abandon` at their next await point; a stage stuck
            // in a blocking call is aborted after a grace period.
            let grace = tokio::time::Instant::now() + ABANDON_GRACE;
            loop {
                match tokio::time::timeout_at(grace, self.tasks.join_next_with_id()).await {
                    Ok(Some(joined)) => collect(
                        joined,
                        &self.names,
                        &mut errors,
                        &self.shutdown,
                        &self.fatal,
                    ),
                    Ok(None) => break,
                    Err(_) => {
                        self.tasks.abort_all();
                        while let Some(joined) = self.tasks.join_next_with_id().await {
                            collect(
                                joined,
                                &self.names,
                                &mut errors,
                                &self.shutdown,
                                &self.fatal,
                            );
                        }
                        break;
                    }
                }
            }
        }
        self.report(drained, errors)
    }

    fn report(&self, drained: bool, errors: Vec<GraphError>) -> Report {
        let snapshot = self.metrics.snapshot();
        let abandoned = snapshot.stages.iter().map(|s| s.abandoned).sum();
        Report {
            graph: self.name.clone(),
            elapsed: self.started.elapsed(),
            drained,
            abandoned,
            errors,
            snapshot,
        }
    }
}

impl Drop for RunningGraph {
    /// Dropping a running graph without [`wait`](RunningGraph::wait) or
    /// [`shutdown`](RunningGraph::shutdown) abandons it: every node stops at
    /// its next await point and resolves what it holds as failed
    /// (abandoned), in the background.
    fn drop(&mut self) {
        if !self.tasks.is_empty() {
            self.shutdown.cancel();
            self.abandon.cancel();
            self.tasks.detach_all();
        }
    }
}

/// How long nodes get to answer an abandon before their tasks are aborted.
const ABANDON_GRACE: Duration = Duration::from_secs(5);

fn collect(
    joined: Result<(tokio::task::Id, Result<(), GraphError>), tokio::task::JoinError>,
    names: &[(tokio::task::Id, Arc<str>)],
    errors: &mut Vec<GraphError>,
    shutdown: &CancellationToken,
    fatal: &CancellationToken,
) {
    match joined {
        Ok((_, Ok(()))) => {}
        Ok((_, Err(e))) => {
            fatal.cancel();
            shutdown.cancel();
            errors.push(e);
        }
        Err(e) => {
            let stage = names
                .iter()
                .find(|(id, _)| *id == e.id())
                .map_or_else(|| "unknown".to_string(), |(_, n)| n.to_string());
            if e.is_panic() {
                fatal.cancel();
                shutdown.cancel();
                errors.push(GraphError::TaskPanicked {
                    stage,
                    message: panic_message(e.into_panic().as_ref()),
                });
            }
        }
    }
}
