//! The HTTP status server: `/metrics`, `/status`, `/health` and a live graph
//! page at `/`.
//!
//! A [`StatusBoard`] holds what the server reports: the graph's
//! [`Metrics`], the runner's lifecycle [`Phase`], the commit frontier of
//! its Kafka sources ([`Frontier`], when it has some), and an optional
//! callback for extra JSON (settings, anything else). [`serve`] binds
//! an address and serves the board until a cancellation token fires.
//!
//! | path       | what                                                              |
//! |------------|-------------------------------------------------------------------|
//! | `/`        | a self-contained HTML page drawing the graph, refreshed every second |
//! | `/status`  | a JSON document, see [`StatusBoard::status`]                      |
//! | `/metrics` | Prometheus text (format 0.0.4), see [`StatusBoard::prometheus`]   |
//! | `/health`  | `200` while starting, running or draining; `503` once stopped or failed |
//!
//! # Rates
//!
//! Records per second and the busy / blocked / idle split need two
//! snapshots. The board keeps a few recent samples (taken every
//! [`SAMPLE_EVERY`] by a task [`serve`] starts, and at request time when the
//! last one is older than that) and measures over the newest one that is at
//! least [`WINDOW`] old, so the window is between one and two seconds. Before
//! any such sample exists, the figures cover the whole run.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use sluicegate_runner::http::{serve, Phase, StatusBoard};
//! # async fn run(metrics: Arc<sluicegate_core::Metrics>) -> anyhow::Result<()> {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let board = StatusBoard::new(metrics);
//! board.set_extra(|| serde_json::json!({ "brokers": "127.0.0.1:9092" }));
//! let server = serve("127.0.0.1:9898".parse()?, board.clone(), shutdown.clone()).await?;
//! board.set_phase(Phase::Running);
//! // ... run the graph ...
//! board.set_phase(Phase::Stopped);
//! shutdown.cancel();
//! server.stopped().await;
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::fmt::Write as _;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::anyhow;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use sluicegate_core::{Metrics, Snapshot};

use crate::host::frontier::Frontier;
pub use crate::host::phase::Phase;
use crate::host::rate::Period;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the server's sampler records a snapshot for rates.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// The shortest period rates are measured over once the board has history:
/// the newest sample at least this old is the baseline.
pub const WINDOW: Duration = Duration::from_secs(1);

/// A baseline younger than this is not used (too short to measure a rate).
const MIN_WINDOW: Duration = Duration::from_millis(100);

/// How long in-flight requests get to finish once shutdown is requested
/// before the server stops anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The status page, served at `/`.
const PAGE: &str = include_str!("page.html");

/// Computes the `extra` member of `/status`.
type ExtraFn = Arc<dyn Fn() -> Value + Send + Sync>;

/// Computes extra Prometheus text for `/metrics`, given the graph's name.
type ExtraMetricsFn = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// One recorded snapshot, for rates.
struct Sample {
    at: Instant,
    snapshot: Snapshot,
}

struct Inner {
    metrics: Arc<Metrics>,
    phase: Mutex<Phase>,
    extra: Mutex<Option<ExtraFn>>,
    extra_metrics: Mutex<Option<ExtraMetricsFn>>,
    frontier: Mutex<Option<Frontier>>,
    /// Oldest first; at most one sample older than [`WINDOW`] is kept.
    samples: Mutex<VecDeque<Sample>>,
}

/// What the server reports; cheap to clone (clones share everything), shared
/// with the runner, which updates the phase as the graph goes through its
/// lifecycle.
#[derive(Clone)]
pub struct StatusBoard {
    inner: Arc<Inner>,
}

impl fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusBoard")
            .field("phase", &self.phase())
            .field("samples", &lock(&self.inner.samples).len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The snapshot now and the baseline the figures are measured against.
struct Window {
    now: Snapshot,
    /// The baseline and its age; `None` means "since the start".
    before: Option<(Duration, Snapshot)>,
}

impl Window {
    /// The period measured.
    fn period(&self) -> Period<'_> {
        Period::aged(&self.now, self.before.as_ref().map(|(age, s)| (*age, s)))
    }
}

impl StatusBoard {
    /// A board reporting `metrics`, in [`Phase::Starting`], with no extra.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        StatusBoard {
            inner: Arc::new(Inner {
                metrics,
                phase: Mutex::new(Phase::Starting),
                extra: Mutex::new(None),
                extra_metrics: Mutex::new(None),
                frontier: Mutex::new(None),
                samples: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// The metrics this board reports.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Sets the JSON merged into `/status` under `"extra"` (settings, or
    /// anything else a host wants to show). `f` runs at request
    /// time on the server's task, so it must be quick and must not block;
    /// never put secrets in it. Replaces an earlier one.
    pub fn set_extra(&self, f: impl Fn() -> Value + Send + Sync + 'static) {
        *lock(&self.inner.extra) = Some(Arc::new(f));
    }

    /// Sets a function whose Prometheus text (format 0.0.4: `# HELP`,
    /// `# TYPE` and samples, each line ending in a newline) is appended to
    /// `/metrics`; it is given the graph's name for a `graph` label. It runs
    /// at request time on the server's task, so it must be quick and must
    /// not block. Replaces an earlier one.
    pub fn set_extra_metrics(&self, f: impl Fn(&str) -> String + Send + Sync + 'static) {
        *lock(&self.inner.extra_metrics) = Some(Arc::new(f));
    }

    /// Shows the commit frontier of the graph's Kafka sources: under
    /// `"kafka"` in `/status` ([`Frontier::status`]), as
    /// `sluicegate_kafka_*` series in `/metrics` ([`crate::host::frontier::prometheus`]),
    /// and as a table on the page. Replaces an earlier one.
    pub fn set_frontier(&self, frontier: Frontier) {
        *lock(&self.inner.frontier) = Some(frontier);
    }

    /// Sets the lifecycle phase reported by `/health`, `/status`, `/metrics`
    /// and the page.
    pub fn set_phase(&self, phase: Phase) {
        *lock(&self.inner.phase) = phase;
    }

    /// The current lifecycle phase.
    pub fn phase(&self) -> Phase {
        lock(&self.inner.phase).clone()
    }

    /// Records a sample for rates if the newest is at least [`SAMPLE_EVERY`]
    /// old (the server's sampler calls this; requests do too).
    pub fn sample(&self) {
        let _ = self.window();
        let frontier = lock(&self.inner.frontier).clone();
        if let Some(f) = frontier {
            f.sample();
        }
    }

    /// Takes a snapshot, picks the baseline, and records the snapshot as a
    /// sample when one is due.
    fn window(&self) -> Window {
        let now = self.inner.metrics.snapshot();
        let at = Instant::now();
        let mut samples = lock(&self.inner.samples);
        // Keep exactly one sample at least WINDOW old: the baseline.
        while samples
            .get(1)
            .is_some_and(|s| at.saturating_duration_since(s.at) >= WINDOW)
        {
            samples.pop_front();
        }
        // A graph restarted under the same metrics (uptime went back) makes
        // the old samples meaningless.
        if samples
            .back()
            .is_some_and(|s| s.snapshot.uptime_ns > now.uptime_ns)
        {
            samples.clear();
        }
        let before = samples.front().and_then(|s| {
            let age = at.saturating_duration_since(s.at);
            (age >= MIN_WINDOW).then(|| (age, s.snapshot.clone()))
        });
        if samples
            .back()
            .is_none_or(|s| at.saturating_duration_since(s.at) >= SAMPLE_EVERY)
        {
            samples.push_back(Sample {
                at,
                snapshot: now.clone(),
            });
        }
        Window { now, before }
    }

    /// The JSON document `/status` returns:
    ///
    /// ```text
    /// {
    ///   "graph": "reference",            the graph's name
    ///   "phase": "running",              see Phase::name
    ///   "error": null,                   the message of a failed phase
    ///   "uptime_s": 12.5,                seconds since the graph started
    ///   "window_s": 1.2,                 the period rates and split cover
    ///   "snapshot": { ... },             sluicegate_core::Snapshot
    ///   "rates": { "decode": 1520.0 },   records taken in per second, per node
    ///                                    (created, for a source)
    ///   "split": { "decode": { "busy": 0.4, "blocked": 0.0, "idle": 0.6 } },
    ///   "bottleneck": { "stage": "store", "busy": 0.97, "blocked": 0.0 } or null,
    ///   "kafka": { "partitions": [..], "counters": {..}, "trend_every_s": 5.0 } or null,
    ///                                    the commit frontier, see Frontier::status
    ///   "extra": ...                     what set_extra's callback returned, or null
    /// }
    /// ```
    ///
    /// The split counts the phase a node is still in, so a node stuck in one
    /// call for the whole window shows that phase at 100%; it is all zeros
    /// for a node that ended before the window began.
    pub fn status(&self) -> Value {
        let window = self.window();
        let period = window.period();
        let mut rates = Map::new();
        let mut split = Map::new();
        for f in period.stages() {
            rates.insert(f.name().to_string(), json!(f.rate.unwrap_or(0.0)));
            split.insert(
                f.name().to_string(),
                json!({ "busy": f.busy, "blocked": f.blocked, "idle": f.idle }),
            );
        }
        let bottleneck = period.bottleneck();
        let phase = self.phase();
        // Called outside the lock, so the callback may use the board.
        let extra = lock(&self.inner.extra).clone();
        let extra = extra.map_or(Value::Null, |f| f());
        let frontier = lock(&self.inner.frontier).clone();
        let kafka = frontier.map_or(Value::Null, |f| f.status());
        let uptime_s = window.now.uptime_ns as f64 / 1e9;
        let graph = window.now.graph.clone();
        json!({
            "graph": graph,
            "phase": phase.name(),
            "error": phase.error(),
            "uptime_s": uptime_s,
            "window_s": period.seconds(),
            "rates": rates,
            "split": split,
            "bottleneck": bottleneck,
            "kafka": kafka,
            "extra": extra,
            "snapshot": window.now,
        })
    }

    /// The text `/metrics` returns: [`Snapshot::to_prometheus`] followed by
    /// `sluicegate_phase{graph,phase}` (1 for the current phase, 0 for the
    /// others), `sluicegate_uptime_seconds{graph}`, the commit frontier
    /// of the Kafka sources, if any ([`crate::host::frontier::prometheus`]), and
    /// the text of [`set_extra_metrics`](Self::set_extra_metrics), if any.
    pub fn prometheus(&self) -> String {
        let snapshot = self.inner.metrics.snapshot();
        let mut out = snapshot.to_prometheus();
        let g = escape_label(&snapshot.graph);
        let current = self.phase().name();
        let _ = writeln!(
            out,
            "# HELP sluicegate_phase The runner's lifecycle phase (1 for the current one)."
        );
        let _ = writeln!(out, "# TYPE sluicegate_phase gauge");
        for name in Phase::NAMES {
            let _ = writeln!(
                out,
                "sluicegate_phase{{graph=\"{g}\",phase=\"{name}\"}} {}",
                u8::from(name == current)
            );
        }
        let _ = writeln!(
            out,
            "# HELP sluicegate_uptime_seconds Seconds since the graph started."
        );
        let _ = writeln!(out, "# TYPE sluicegate_uptime_seconds gauge");
        let _ = writeln!(
            out,
            "sluicegate_uptime_seconds{{graph=\"{g}\"}} {}",
            snapshot.uptime_ns as f64 / 1e9
        );
        let frontier = lock(&self.inner.frontier).clone();
        if let Some(f) = frontier {
            out.push_str(&f.prometheus(&snapshot.graph));
        }
        // Called outside the lock, like the extra status.
        let extra = lock(&self.inner.extra_metrics).clone();
        if let Some(f) = extra {
            out.push_str(&f(&snapshot.graph));
        }
        out
    }

    /// The JSON `/health` returns, and whether it is healthy (`200`) or not
    /// (`503`).
    fn health(&self) -> (bool, Value) {
        let phase = self.phase();
        let healthy = phase.is_healthy();
        (
            healthy,
            json!({
                "status": if healthy { "ok" } else { "unavailable" },
                "phase": phase.name(),
                "error": phase.error(),
            }),
        )
    }
}

pub(crate) fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The routes, over `board`.
fn router(board: StatusBoard) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(board)
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

async fn status(State(board): State<StatusBoard>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(board.status()),
    )
        .into_response()
}

async fn metrics(State(board): State<StatusBoard>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        board.prometheus(),
    )
        .into_response()
}

/// `200` while starting, running or draining; `503` once stopped or failed.
async fn health(State(board): State<StatusBoard>) -> Response {
    let (healthy, body) = board.health();
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

/// A running status server, returned by [`serve`].
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    server: JoinHandle<()>,
    sampler: JoinHandle<()>,
}

impl HttpServer {
    /// The address the server listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the server has stopped: after the shutdown token passed to
    /// [`serve`] is cancelled, requests in progress get up to two seconds to
    /// finish, then the server closes its connections. Errors are logged.
    pub async fn stopped(self) {
        if let Err(e) = self.server.await {
            tracing::warn!(error = %e, "the HTTP status server's task failed");
        }
        if let Err(e) = self.sampler.await {
            tracing::warn!(error = %e, "the HTTP status sampler's task failed");
        }
    }
}

/// Binds `addr` and serves `board` on it until `shutdown` is cancelled:
/// `/` (the page), `/status`, `/metrics` and `/health` (see the
/// [module](self)). Also starts the sampler that records a snapshot every
/// [`SAMPLE_EVERY`] for rates.
///
/// The server binds wherever it is told; the runner's default,
/// `127.0.0.1`, keeps it off the network.
///
/// # Errors
///
/// When `addr` cannot be bound (already in use, not a local address, no
/// permission), with a message naming the address.
pub async fn serve(
    addr: SocketAddr,
    board: StatusBoard,
    shutdown: CancellationToken,
) -> anyhow::Result<HttpServer> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (something else listens there; choose another address with --http ADDR)"
        } else {
            ""
        };
        anyhow!("cannot bind the HTTP status server to {addr}: {e}{hint}")
    })?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| anyhow!("cannot read the HTTP status server's address ({addr}): {e}"))?;
    tracing::debug!(%local_addr, "HTTP status server listening");

    let sampler = {
        let board = board.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => board.sample(),
                }
            }
        })
    };

    let app = router(board);
    let server = tokio::spawn(async move {
        let graceful = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future();
        let grace_over = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            result = graceful => {
                if let Err(e) = result {
                    tracing::error!(error = %e, %local_addr, "the HTTP status server failed");
                }
            }
            () = grace_over => {
                tracing::debug!(%local_addr, "HTTP status server: closing connections still open after the grace period");
            }
        }
        tracing::debug!(%local_addr, "HTTP status server stopped");
    });

    Ok(HttpServer {
        local_addr,
        server,
        sampler,
    })
}
