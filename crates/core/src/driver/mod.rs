//! The loops that run each node: sequential and concurrent stages, batch
//! stages. Types are erased here: each node becomes one named task
//! returning `Result<(), GraphError>`.
//!
//! - [`settle`]: what becomes of one input's result (outputs on, failures to
//!   the dead-letter route, a fatal error stops the graph), and the flush.
//! - [`sequential`], [`concurrent`], [`batched`]: the three run loops.
//!
//! Every loop ends the same way: what it holds when the graph is abandoned
//! is failed as abandoned ([`abandon_taken`], [`abandon_mailbox`]), then the
//! stage's `stop` runs ([`finish`]).

mod batched;
mod concurrent;
mod sequential;
mod settle;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::ack::{Ack, Origin};
use crate::error::{BoxError, FailureKind, GraphError, ItemError, panic_message};
use crate::graph::DeadLetter;
use crate::mailbox::{Receiver, Release, Slot};
use crate::metrics::StageMetrics;
use crate::outlet::Outlet;

pub(crate) use batched::run_batched;
pub(crate) use concurrent::{Concurrency, run_concurrent};
pub(crate) use sequential::run_sequential;

/// Computes a per-key ordering key; `None` means "no ordering constraint".
pub(crate) type KeyFn<T> = Arc<dyn Fn(&T, &Origin) -> Option<u64> + Send + Sync>;

/// Everything a node needs besides its stage, input and output.
pub(crate) struct NodeCx {
    pub(crate) name: Arc<str>,
    pub(crate) metrics: Arc<StageMetrics>,
    /// The dead-letter route (`None` for the dead-letter node itself).
    pub(crate) dlq: Option<Outlet<DeadLetter>>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) abandon: CancellationToken,
    /// Cancelled on a fatal error: starts the drain deadline.
    pub(crate) fatal: CancellationToken,
}

/// How awaiting one item's processing ended.
enum Step<R> {
    Done(R),
    /// Abandoned, or the downstream is gone.
    Stop,
}

/// Fails every envelope still in the mailbox (forced shutdown).
fn abandon_mailbox<T>(rx: &mut Receiver<T>, cx: &NodeCx) {
    let rest = rx.close_and_take();
    StageMetrics::add(&cx.metrics.abandoned, rest.len() as u64);
    for env in rest {
        let (_, ack) = env.into_parts();
        ack.fail(ItemError::new(
            cx.name.clone(),
            FailureKind::Abandoned,
            "shutdown deadline passed before this item was processed",
        ));
    }
}

/// Fails every item a loop had taken from its mailbox but not finished
/// (forced shutdown), and gives their slots back.
fn abandon_taken<T>(rx: &Receiver<T>, cx: &NodeCx, taken: impl IntoIterator<Item = (Ack, Slot)>) {
    let mut release = Release::default();
    for (ack, slot) in taken {
        abandon_ack(ack, cx);
        release.add(slot);
    }
    rx.release(release);
}

fn abandon_ack(ack: Ack, cx: &NodeCx) {
    cx.metrics.abandoned.fetch_add(1, AtomicOrdering::Relaxed);
    ack.fail(ItemError::new(
        cx.name.clone(),
        FailureKind::Abandoned,
        "shutdown deadline passed while this item was being processed",
    ));
}

async fn run_stop<F, E>(cx: &NodeCx, stop: F) -> Result<(), GraphError>
where
    F: std::future::Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    match AssertUnwindSafe(stop).catch_unwind().await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(GraphError::Fatal {
            stage: cx.name.to_string(),
            source: e.into(),
        }),
        Err(p) => Err(GraphError::TaskPanicked {
            stage: cx.name.to_string(),
            message: panic_message(p.as_ref()),
        }),
    }
}

fn finish(
    cx: &NodeCx,
    fatal: Option<GraphError>,
    stopped: Result<(), GraphError>,
) -> Result<(), GraphError> {
    if let Some(err) = fatal {
        return Err(err);
    }
    if cx.abandon.is_cancelled() && cx.metrics.abandoned.load(AtomicOrdering::Relaxed) > 0 {
        tracing::warn!(stage = %cx.name, "stage abandoned items at shutdown");
    }
    stopped
}
