//! A testing kit for pipelines: an in-memory source, a collecting sink, a
//! gate-controlled sink, and an acknowledgement log with assertions.
//!
//! Everything here is deterministic: nothing sleeps, gates are opened by the
//! test, and waits take a timeout with a message (see [`within`]).

mod ack_log;
mod sinks;
mod source;
#[cfg(all(test, not(loom)))]
mod tests;

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub use crate::ack::AckCounter;
pub use ack_log::AckLog;
pub use sinks::{CollectSink, Gate, GatedSink};
pub use source::VecSource;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Awaits `fut`, panicking with `what` if it takes longer than `limit`.
///
/// # Panics
///
/// On timeout, with a message naming what was awaited.
pub async fn within<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Builds, starts and runs `graph` until it ends by itself (its sources
/// done, everything drained), within `limit`, and returns its report.
///
/// # Panics
///
/// When the graph does not build or start (with the error), or does not end
/// within `limit`.
pub async fn run_to_end(graph: crate::GraphBuilder, limit: Duration) -> crate::Report {
    within(limit, "the graph to end by itself", async {
        let built = graph
            .build()
            .unwrap_or_else(|e| panic!("the graph does not build: {e}"));
        let running = built
            .start()
            .await
            .unwrap_or_else(|e| panic!("the graph does not start: {e}"));
        running.wait().await
    })
    .await
}
