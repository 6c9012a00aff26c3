//! Sources: where envelopes enter a graph.

mod context;
mod emit;

use std::future::Future;

use crate::error::BoxError;

pub use context::SourceContext;
pub use emit::{EmitError, EmitPermit, EmitStop};

/// Produces envelopes into a graph.
///
/// A source creates each envelope with an [`Ack`](crate::Ack) whose
/// [`AckReceiver`](crate::AckReceiver) it owns, so it hears how every record
/// ended (a Kafka source commits offsets from that). It runs until its input
/// ends or [`SourceContext::shutdown_requested`] fires, and then returns:
/// returning is how it tells the graph that no more input will come.
///
/// # Errors
///
/// An `Err` from `run` is fatal: the graph shuts down and reports it.
pub trait Source: Send + 'static {
    /// The payload of the envelopes it produces.
    type Out: Send + 'static;

    /// Produces envelopes with `cx.emit` until done or asked to stop.
    fn run(self, cx: SourceContext<Self::Out>)
    -> impl Future<Output = Result<(), BoxError>> + Send;
}
