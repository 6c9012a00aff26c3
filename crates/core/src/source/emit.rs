//! What an emit hands back: the refused envelope with the reason, or a
//! permit for room reserved in the graph.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::envelope::Envelope;
use crate::error::{FailureKind, ItemError};
use crate::metrics::StageMetrics;
use crate::outlet::OutletPermit;

use super::SourceContext;

/// Why [`SourceContext::emit`] did not take an envelope, with the envelope.
///
/// Dropping it resolves the envelope's acknowledgement as failed
/// ([`FailureKind::Abandoned`], counted in the source's `abandoned`
/// metric), never as delivered, so `cx.emit(env).await?` loses nothing:
/// the origin hears of the envelope as soon as the error is dropped, or,
/// when it is the error a source returns, as soon as the source returns.
/// To resolve the envelope some other way, take it back with
/// [`into_inner`](EmitError::into_inner).
pub struct EmitError<T> {
    stop: EmitStop,
    env: Option<Envelope<T>>,
    source: Arc<str>,
    metrics: Arc<StageMetrics>,
}

impl<T> EmitError<T> {
    pub(super) fn new(stop: EmitStop, env: Envelope<T>, cx: &SourceContext<T>) -> Self {
        EmitError {
            stop,
            env: Some(env),
            source: cx.name.clone(),
            metrics: cx.metrics.clone(),
        }
    }

    /// Why the envelope was not taken.
    pub fn stop(&self) -> EmitStop {
        self.stop
    }

    /// The envelope that was not taken; the caller now resolves its
    /// acknowledgement.
    pub fn into_inner(mut self) -> Envelope<T> {
        match self.env.take() {
            Some(env) => env,
            None => unreachable!("the envelope is only taken by into_inner or drop"),
        }
    }

    /// Resolves the envelope as failed (abandoned), if not taken back.
    pub(crate) fn resolve(&mut self) {
        let Some(env) = self.env.take() else { return };
        self.metrics.abandoned.fetch_add(1, Ordering::Relaxed);
        let message = match self.stop {
            EmitStop::Closed => "the graph stopped taking input before this item entered",
            EmitStop::Abandoned => "shutdown deadline passed while waiting for room",
        };
        let (_, ack) = env.into_parts();
        ack.fail(ItemError::new(
            self.source.clone(),
            FailureKind::Abandoned,
            message,
        ));
    }
}

impl<T> Drop for EmitError<T> {
    fn drop(&mut self) {
        self.resolve();
    }
}

impl<T> std::fmt::Debug for EmitError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmitError")
            .field("stop", &self.stop)
            .field("source", &self.source)
            .field("origin", &self.env.as_ref().map(Envelope::origin))
            .finish()
    }
}

impl<T> std::fmt::Display for EmitError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.stop, f)
    }
}

impl<T> std::error::Error for EmitError<T> {}

/// Room in the graph for one envelope, reserved by
/// [`SourceContext::reserve`]: [`send`](EmitPermit::send) never waits, and
/// a permit dropped unused gives its room back.
#[must_use = "a permit holds room in the graph until it sends or is dropped"]
pub struct EmitPermit<T> {
    pub(super) permit: OutletPermit<T>,
    pub(super) metrics: Arc<StageMetrics>,
}

impl<T> EmitPermit<T> {
    /// Hands `env` to the graph, into the reserved room.
    pub fn send(self, env: Envelope<T>) {
        self.permit.send(env);
        self.metrics.note_first_in_now();
        self.metrics.items_in.fetch_add(1, Ordering::Relaxed);
        self.metrics.items_out.fetch_add(1, Ordering::Relaxed);
    }
}

impl<T> std::fmt::Debug for EmitPermit<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmitPermit").finish_non_exhaustive()
    }
}

/// Why [`SourceContext::emit_batch`] stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitStop {
    /// Every downstream stage is gone.
    #[error("the graph has stopped taking input")]
    Closed,
    /// The shutdown deadline passed while waiting for room.
    #[error("shutdown deadline passed while waiting for room")]
    Abandoned,
}
