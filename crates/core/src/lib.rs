//! # sluicegate-core
//!
//! Async stream pipelines that never accept work faster than they can finish
//! it. A graph is made of stages running as actors, each behind a bounded
//! [mailbox]; when a stage falls behind, its mailbox fills and the stage
//! before it waits, all the way back to the source. Every envelope carries an
//! [acknowledgement](ack) that resolves exactly once (delivered, dropped with
//! a reason, dead-lettered, or failed), so a source knows which records are
//! finished and nothing is silently lost.
//!
//! The modules follow the architecture:
//!
//! - [`ack`]: acknowledgements, outcomes, origins.
//! - [`mailbox`]: bounded mailboxes and overflow policies.
//! - [`stage`]: the [`Stage`] and [`BatchStage`] traits and closure adapters.
//! - [`source`]: the [`Source`] trait.
//! - [`sources`]: sources from an iterator, a `futures::Stream`, a bounded channel.
//! - [`graph`]: building a graph in code, running it, shutting it down.
//! - [`ledger`]: committing a source's offsets with a stage's own work.
//! - [`metrics`]: counters, snapshots, Prometheus text, the bottleneck.
//! - [`retry`]: the retry policy (capped exponential backoff with jitter).
//! - `testing` (feature `testing`): in-memory sources, collecting and gated
//!   sinks, ack logs, for tests.
//!
//! See [`graph`] for a complete example.

#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod ack;
mod blocking;
mod driver;
pub mod envelope;
pub mod error;
pub mod graph;
pub mod ledger;
pub mod mailbox;
pub mod metrics;
mod outlet;
pub mod retry;
pub mod source;
pub mod sources;
pub mod stage;
#[cfg(feature = "testing")]
pub mod testing;

pub use ack::{Ack, AckCounter, AckReceiver, DropReason, IgnoreAcks, Origin, Outcome};
pub use envelope::Envelope;
pub use error::{BoxError, FailureKind, Fatal, GraphError, ItemError, Panicked, Transient};
pub use graph::{
    BatchConfig, BatchSpec, DeadLetter, Graph, GraphBuilder, Order, Report, RunningGraph,
    StageSpec, Stream,
};
pub use ledger::CommitLedger;
pub use mailbox::Overflow;
pub use metrics::{Bottleneck, Metrics, Snapshot};
pub use retry::RetryPolicy;
pub use source::{EmitError, EmitPermit, EmitStop, Source, SourceContext};
pub use stage::{
    BatchStage, Outputs, Stage, SyncStage, batch_sink, blocking, blocking_batch, blocking_shared,
    filter, flat_map, map, sink, then, try_map,
};
pub use tokio_util::sync::CancellationToken;
