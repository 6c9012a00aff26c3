//! A built graph: starting it, running it, draining it, its report.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::{GraphError, panic_message};
use crate::metrics::{Metrics, Snapshot};
use crate::outlet::Outlet;
use std::panic::AssertUnwindSafe;

use super::builder::{BuilderState, GraphBuilder, NodeEnv, NodeSpec, SharedState};
use super::spec::{DEFAULT_DRAIN_DEADLINE, DeadLetter};

/// A built graph, ready to start.
pub struct Graph {
    pub(super) name: String,
    pub(super) metrics: Arc<Metrics>,
    pub(super) nodes: Vec<NodeSpec>,
    pub(super) dlq: Option<Outlet<DeadLetter>>,
    pub(super) drain_deadline: Duration,
}

impl Graph {
    /// Starts building a graph called `name`.
    pub fn builder(name: impl Into<String>) -> GraphBuilder {
        let name = name.into();
        GraphBuilder {
            state: SharedState::new(BuilderState {
                metrics: Arc::new(Metrics::new(&name)),
                name,
                nodes: Vec::new(),
                names: HashSet::new(),
                open: BTreeMap::new(),
                next_port: 0,
                dlq: None,
                errors: Vec::new(),
                drain_deadline: DEFAULT_DRAIN_DEADLINE,
            }),
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

/// A started graph. End it with [`RunningGraph::wait`] or
/// [`RunningGraph::shutdown`]; dropping it abandons everything inside.
pub struct RunningGraph {
    pub(super) name: String,
    pub(super) metrics: Arc<Metrics>,
    pub(super) shutdown: CancellationToken,
    pub(super) abandon: CancellationToken,
    /// Cancelled by the first fatal error: starts the drain deadline.
    pub(super) fatal: CancellationToken,
    pub(super) drain_deadline: Duration,
    pub(super) tasks: JoinSet<Result<(), GraphError>>,
    pub(super) names: Vec<(tokio::task::Id, Arc<str>)>,
    pub(super) started: tokio::time::Instant,
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

    pub(super) async fn drain(mut self, deadline: Duration, mut errors: Vec<GraphError>) -> Report {
        self.shutdown.cancel();
        let until = tokio::time::Instant::now() + deadline;
        let drained = self.join_until(until, &mut errors).await;
        if !drained {
            tracing::warn!(graph = %self.name, ?deadline, "drain deadline passed; abandoning what is left");
            self.abandon.cancel();
            // Nodes answer `abandon` at their next await point; a stage stuck
            // in a blocking call is aborted after a grace period.
            let grace = tokio::time::Instant::now() + ABANDON_GRACE;
            if !self.join_until(grace, &mut errors).await {
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
            }
        }
        self.report(drained, errors)
    }

    /// Collects the node tasks as they end, until all have or `until`
    /// passes; whether all have.
    async fn join_until(
        &mut self,
        until: tokio::time::Instant,
        errors: &mut Vec<GraphError>,
    ) -> bool {
        loop {
            match tokio::time::timeout_at(until, self.tasks.join_next_with_id()).await {
                Ok(Some(joined)) => {
                    collect(joined, &self.names, errors, &self.shutdown, &self.fatal);
                }
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }

    pub(super) fn report(&self, drained: bool, errors: Vec<GraphError>) -> Report {
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
pub(super) const ABANDON_GRACE: Duration = Duration::from_secs(5);

pub(super) fn collect(
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
