//! The HTTP status server: `/metrics`, `/status`, `/health` and a live graph
//! page at `/`.
//!
//! A [`StatusBoard`] holds what the server reports: the graph's
//! [`Metrics`](sluicegate_core::Metrics), the runner's lifecycle [`Phase`], the commit frontier of
//! its Kafka sources ([`Frontier`](crate::host::frontier::Frontier), when it has some), and an optional
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

use std::time::Duration;

mod board;
mod reports;
mod server;
mod window;

pub use crate::host::phase::Phase;
pub use board::StatusBoard;
pub use server::{HttpServer, serve};

/// How often the server's sampler records a snapshot for rates.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// The shortest period rates are measured over once the board has history:
/// the newest sample at least this old is the baseline.
pub const WINDOW: Duration = Duration::from_secs(1);
