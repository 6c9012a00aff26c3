//! The server: the routes over a [`StatusBoard`], and [`serve`].

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::anyhow;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{SAMPLE_EVERY, StatusBoard};

/// How long in-flight requests get to finish once shutdown is requested
/// before the server stops anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The status page, served at `/`.
const PAGE: &str = include_str!("page.html");

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
/// [module](super)). Also starts the sampler that records a snapshot every
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
