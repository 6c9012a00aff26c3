//! Building a graph: the builder's state, the nodes it collects, the checks.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::driver::{self, NodeCx};
use crate::error::{BoxError, GraphError};
use crate::mailbox::{Receiver, mailbox};
use crate::metrics::{Metrics, NodeKind, StageMetrics};
use crate::outlet::Outlet;
use crate::source::{Source, SourceContext};
use crate::stage::{BatchStage, Stage};

use super::running::Graph;
use super::spec::{BatchSpec, DeadLetter, MailboxSpec, PREFETCH, StageSpec};
use super::stream::Stream;

/// Runs a node once the graph starts.
pub(super) type RunFn =
    Box<dyn FnOnce(NodeEnv) -> BoxFuture<'static, Result<(), GraphError>> + Send>;
/// A node's start hook.
pub(super) type StartFn = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), BoxError>> + Send>;

/// What a node gets when the graph starts.
pub(super) struct NodeEnv {
    pub(super) dlq: Option<Outlet<DeadLetter>>,
    pub(super) shutdown: CancellationToken,
    pub(super) abandon: CancellationToken,
    pub(super) fatal: CancellationToken,
}

impl NodeEnv {
    /// What a stage's driver gets: its name and metrics, and the graph's
    /// tokens; the dead-letter route unless `use_dlq` is false (the
    /// dead-letter stage's own failures are not re-routed).
    fn node_cx(self, name: Arc<str>, metrics: Arc<StageMetrics>, use_dlq: bool) -> NodeCx {
        NodeCx {
            name,
            metrics,
            dlq: if use_dlq { self.dlq } else { None },
            shutdown: self.shutdown,
            abandon: self.abandon,
            fatal: self.fatal,
        }
    }
}

pub(super) struct NodeSpec {
    pub(super) name: Arc<str>,
    pub(super) start: Option<StartFn>,
    pub(super) run: RunFn,
}

pub(super) struct BuilderState {
    pub(super) name: String,
    pub(super) metrics: Arc<Metrics>,
    pub(super) nodes: Vec<NodeSpec>,
    pub(super) names: HashSet<String>,
    /// Streams not yet connected: port id to the node that produces them.
    pub(super) open: BTreeMap<u64, String>,
    pub(super) next_port: u64,
    pub(super) dlq: Option<Outlet<DeadLetter>>,
    pub(super) errors: Vec<GraphError>,
    pub(super) drain_deadline: Duration,
}

impl BuilderState {
    pub(super) fn port(&mut self, from: &str) -> u64 {
        self.next_port += 1;
        self.open.insert(self.next_port, from.to_string());
        self.next_port
    }

    pub(super) fn claim_name(&mut self, name: &str) {
        if !self.names.insert(name.to_string()) {
            self.errors.push(GraphError::DuplicateName {
                name: name.to_string(),
            });
        }
    }
}

/// The builder's state, shared by the builder and the streams it hands out.
///
/// A mutex rather than a `RefCell` so that builder and streams are `Send`:
/// a graph can be built inside `tokio::spawn`, with `.await`s between the
/// builder's calls. Each call holds the lock only for its own bookkeeping.
#[derive(Clone)]
pub(super) struct SharedState(Arc<Mutex<BuilderState>>);

impl SharedState {
    pub(super) fn new(state: BuilderState) -> Self {
        Self(Arc::new(Mutex::new(state)))
    }

    /// Locks the state. A panic while it was held (a user's closure cannot
    /// run under it) leaves nothing half-written that a later call relies on.
    pub(super) fn lock(&self) -> MutexGuard<'_, BuilderState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Builds a graph. `Send`, like the [`Stream`]s it hands out: a graph can be
/// built on a spawned task, with `.await`s between the calls.
pub struct GraphBuilder {
    pub(super) state: SharedState,
}

impl GraphBuilder {
    /// The graph's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.lock().metrics.clone()
    }

    /// Adds a source; returns its output stream.
    pub fn source<S: Source>(&mut self, name: impl Into<String>, source: S) -> Stream<S::Out> {
        let name = name.into();
        let mut st = self.state.lock();
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
        let mut st = self.state.lock();
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
    /// is abandoned (default [`DEFAULT_DRAIN_DEADLINE`](crate::graph::DEFAULT_DRAIN_DEADLINE)), when it runs
    /// under [`RunningGraph::wait`](crate::graph::RunningGraph::wait); [`RunningGraph::run_until`](crate::graph::RunningGraph::run_until) uses its
    /// own deadline.
    ///
    /// A fatal error (a stage's or a source's) starts a drain like a
    /// [`shutdown`](crate::graph::RunningGraph::shutdown): sources stop, stages drain;
    /// at the deadline, everything still in the graph is abandoned
    /// (resolved as failed, never as delivered), so a stage stuck in one
    /// call cannot hang the process.
    pub fn drain_deadline(&mut self, deadline: Duration) -> &mut Self {
        self.state.lock().drain_deadline = deadline;
        self
    }

    /// Checks the graph and freezes it.
    ///
    /// # Errors
    ///
    /// The first problem found: a stream left unconnected, a repeated name,
    /// an inconsistent setting.
    pub fn build(self) -> Result<Graph, GraphError> {
        let mut st = self.state.lock();
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

pub(super) fn check_concurrency(
    st: &mut BuilderState,
    name: &str,
    concurrency: usize,
    capacity: usize,
) {
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
pub(super) fn add_stage_mailbox<T: Send + 'static>(
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

pub(super) fn push_stage_node<S: Stage>(
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
            let cx = env.node_cx(run_name, metrics, use_dlq);
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

pub(super) fn push_batch_node<S: BatchStage>(
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
            let cx = env.node_cx(run_name, metrics, true);
            driver::run_batched(stage, rx, outlet, cx, batch).boxed()
        }),
    });
}
