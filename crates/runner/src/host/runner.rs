//! [`Runner`]: hosts any graph with the binary's plumbing.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use sluicegate_core::{CancellationToken, Graph, GraphError, Report};

use sluicegate_kafka_io::KafkaSourceHandle;

use crate::host::frontier::Frontier;
use crate::host::http::{self, StatusBoard};
pub use crate::host::outcome::{Outcome, Stopped};
use crate::host::phase::Phase;
use crate::host::signals::Signals;
use crate::host::view;

/// How often the live view redraws.
const LIVE_VIEW_EVERY: Duration = Duration::from_secs(1);

/// When to draw the live view on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LiveView {
    /// When stderr is a terminal.
    #[default]
    Auto,
    /// Never (`--quiet`).
    Off,
    /// Always, even into a pipe or file (`--live`).
    Force,
}

/// How a [`Runner`] hosts a graph.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Where the status server listens; `None` for none.
    pub http: Option<SocketAddr>,
    /// How long the graph may drain after a stop before what is left is
    /// abandoned (failed, never acknowledged as done).
    pub drain_timeout: Duration,
    /// The live view.
    pub live_view: LiveView,
    /// Whether SIGINT and SIGTERM stop the graph (a second one ends the
    /// drain at once: [`Runner::run`] returns with [`Stopped::Forced`]).
    pub handle_signals: bool,
}

impl RunnerOptions {
    /// The default [`drain_timeout`](Self::drain_timeout): 30 s.
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            http: None,
            drain_timeout: Self::DEFAULT_DRAIN_TIMEOUT,
            live_view: LiveView::Auto,
            handle_signals: true,
        }
    }
}

/// Hosts a graph: starts the status server and the live view, runs the
/// graph until it ends, a stop condition completes or a signal arrives,
/// then drains it within the deadline.
///
/// ```no_run
/// use sluicegate_core::{Graph, StageSpec, map};
/// use sluicegate_core::testing::{AckLog, CollectSink, VecSource};
/// use sluicegate_runner::{Runner, RunnerOptions};
///
/// # async fn run() -> anyhow::Result<()> {
/// let mut g = Graph::builder("mine");
/// g.source("numbers", VecSource::new((0..1_000u64).collect(), AckLog::new()))
///     .via(StageSpec::new("double", map(|x: u64| x * 2)))
///     .to(StageSpec::new("out", CollectSink::new()));
/// let runner = Runner::new(RunnerOptions {
///     http: Some("127.0.0.1:9898".parse()?),
///     ..RunnerOptions::default()
/// });
/// let outcome = runner.run(g.build()?, std::future::pending()).await?;
/// std::process::exit(outcome.exit_code());
/// # }
/// ```
#[derive(Default)]
pub struct Runner {
    options: RunnerOptions,
    extra: Option<ExtraStatus>,
    extra_metrics: Option<ExtraMetrics>,
    frontier: Option<Frontier>,
}

type ExtraStatus = std::sync::Arc<dyn Fn() -> serde_json::Value + Send + Sync>;
type ExtraMetrics = std::sync::Arc<dyn Fn(&str) -> String + Send + Sync>;

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("options", &self.options)
            .field("extra_status", &self.extra.is_some())
            .field("extra_metrics", &self.extra_metrics.is_some())
            .field("frontier", &self.frontier)
            .finish()
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The status server could not bind its address.
    #[error("status server: {0:#}")]
    Http(anyhow::Error),
    /// The graph would not start.
    #[error("starting the pipeline: {0}")]
    Start(#[from] GraphError),
}

impl Runner {
    /// A runner with `options`.
    pub fn new(options: RunnerOptions) -> Self {
        Runner {
            options,
            extra: None,
            extra_metrics: None,
            frontier: None,
        }
    }

    /// The graph's Kafka sources, whose commit frontier (per partition:
    /// fetched, finished and committed offsets, lag, the oldest unfinished
    /// record and its age, the window, pauses; and the sources' counters)
    /// `/status`, `/metrics`, the page and the live view then show (see
    /// [`Frontier`]).
    pub fn kafka_sources(mut self, sources: impl IntoIterator<Item = KafkaSourceHandle>) -> Self {
        self.frontier = Some(Frontier::new(sources));
        self
    }

    /// Like [`Runner::kafka_sources`], with a frontier of your own (its
    /// history kept at another pace, say).
    pub fn frontier(mut self, frontier: Frontier) -> Self {
        self.frontier = Some(frontier);
        self
    }

    /// Extra JSON for `/status` under `"extra"` (settings, anything else),
    /// computed at each request.
    pub fn extra_status(
        mut self,
        f: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) -> Self {
        self.extra = Some(std::sync::Arc::new(f));
        self
    }

    /// Extra Prometheus text for `/metrics` (counters of your own), computed
    /// at each request from the graph's name; see
    /// [`StatusBoard::set_extra_metrics`](crate::host::http::StatusBoard::set_extra_metrics).
    pub fn extra_metrics(mut self, f: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.extra_metrics = Some(std::sync::Arc::new(f));
        self
    }

    /// Runs `graph` until it ends by itself, `stop` completes, or (with
    /// signal handling on) SIGINT or SIGTERM arrives; then drains it within
    /// the deadline. A further signal while it drains ends the drain at
    /// once: the graph is abandoned (what it holds is never committed) and
    /// the outcome says [`Stopped::Forced`]. It never exits the process:
    /// the caller does, with [`Outcome::exit_code`].
    ///
    /// # Errors
    ///
    /// [`RunError`] when the status server cannot bind or the graph cannot
    /// start.
    pub async fn run(
        &self,
        graph: Graph,
        stop: impl Future<Output = ()>,
    ) -> Result<Outcome, RunError> {
        let metrics = graph.metrics().clone();
        let board = StatusBoard::new(metrics.clone());
        if let Some(extra) = &self.extra {
            let extra = extra.clone();
            board.set_extra(move || extra());
        }
        if let Some(extra) = &self.extra_metrics {
            let extra = extra.clone();
            board.set_extra_metrics(move |graph| extra(graph));
        }
        if let Some(frontier) = &self.frontier {
            board.set_frontier(frontier.clone());
        }
        board.set_phase(Phase::Starting);
        let quit = CancellationToken::new();
        let server = match self.options.http {
            Some(addr) => {
                let server = http::serve(addr, board.clone(), quit.clone())
                    .await
                    .map_err(RunError::Http)?;
                tracing::info!(
                    "status page on http://{0}/ (metrics: http://{0}/metrics)",
                    server.local_addr()
                );
                Some(server)
            }
            None => None,
        };
        let live = (self.options.live_view != LiveView::Off).then(|| {
            view::spawn(
                metrics,
                self.frontier.clone(),
                LIVE_VIEW_EVERY,
                self.options.live_view == LiveView::Force,
                quit.clone(),
            )
        });

        // Installed before anything can stop, so no signal slips between
        // the first and the second.
        let mut signals = Signals::install(self.options.handle_signals);
        let running = match graph.start().await {
            Ok(r) => r,
            Err(e) => {
                board.set_phase(Phase::Failed(e.to_string()));
                quit.cancel();
                return Err(e.into());
            }
        };
        board.set_phase(Phase::Running);
        let (why_tx, mut why_rx) = tokio::sync::watch::channel(Stopped::Finished);
        let (forced_tx, forced_rx) = tokio::sync::oneshot::channel::<&'static str>();
        let stop_board = board.clone();
        let done = quit.clone();
        let stop_all = async move {
            tokio::select! {
                () = stop => { let _ = why_tx.send(Stopped::Condition); }
                name = signals.next() => {
                    tracing::info!(signal = name, "stopping: draining (a second signal forces exit)");
                    let _ = why_tx.send(Stopped::Signal(name));
                }
            }
            stop_board.set_phase(Phase::Draining);
            // While draining, a (further) signal ends the run at once.
            tokio::spawn(async move {
                tokio::select! {
                    name = signals.next() => { let _ = forced_tx.send(name); }
                    () = done.cancelled() => {}
                }
            });
        };
        let started = tokio::time::Instant::now();
        let run = running.run_until(stop_all, self.options.drain_timeout);
        let (report, stopped) = tokio::select! {
            report = run => (report, why_rx.borrow_and_update().clone()),
            Ok(name) = forced_rx => {
                // Dropping the run drops the graph: everything in it is
                // abandoned in the background (failed, never committed).
                tracing::warn!(signal = name, "signal while draining: abandoning the drain; unfinished records are read again at the next start");
                (forced_report(&board, started.elapsed()), Stopped::Forced(name))
            }
        };
        board.set_phase(match &stopped {
            Stopped::Forced(name) => {
                Phase::Failed(format!("{name} while draining: the drain was abandoned"))
            }
            _ if report.is_clean() => Phase::Stopped,
            _ => Phase::Failed(describe(&report)),
        });
        quit.cancel();
        if let Some(live) = live {
            let _ = live.await;
        }
        if let Some(server) = server {
            server.stopped().await;
        }
        Ok(Outcome { report, stopped })
    }
}

/// The report of a run whose drain a signal ended: the metrics as they are,
/// not drained.
fn forced_report(board: &StatusBoard, elapsed: Duration) -> Report {
    let snapshot = board.metrics().snapshot();
    Report {
        graph: snapshot.graph.clone(),
        elapsed,
        drained: false,
        abandoned: snapshot.stages.iter().map(|s| s.abandoned).sum(),
        errors: Vec::new(),
        snapshot,
    }
}

fn describe(report: &Report) -> String {
    if let Some(e) = report.errors.first() {
        e.to_string()
    } else if !report.drained {
        format!("did not drain; {} records abandoned", report.abandoned)
    } else {
        "stopped".into()
    }
}
