//! The stage traits and the adapters that build stages from closures.
//!
//! [`Stage`] is the core trait: an async `process` from one input to zero or
//! more outputs. [`BatchStage`] receives batches gathered by the runtime.
//! Most stages are built with the adapters: [`map`], [`filter`],
//! [`flat_map`], [`try_map`], [`then`] (async closures), [`blocking`] and
//! [`blocking_batch`] (CPU work on the blocking pool, one item or one batch
//! per hop) and [`sink`].
//!
//! Stages take `&self` so that one instance can process several items at
//! once (see [`StageSpec::concurrency`](crate::StageSpec::concurrency));
//! state that changes goes behind a lock or an atomic.

use std::future::Future;

use crate::ack::Origin;
use crate::error::BoxError;

mod closures;
mod outputs;

pub use crate::blocking::{Blocking, BlockingBatch, blocking, blocking_batch, blocking_shared};
pub use closures::{
    BatchSink, Filter, FlatMap, Map, Sink, Then, TryMap, batch_sink, filter, flat_map, map, sink,
    then, try_map,
};
pub use outputs::{Outputs, OutputsIter};

/// A processing step: one input in, zero or more outputs out.
///
/// The runtime calls [`process`](Stage::process) with each input's payload and
/// [`Origin`]; it attaches the input's acknowledgement to the outputs, so a
/// stage never handles acknowledgements. An `Err` fails that one item (it goes
/// to the dead-letter route with the error) and the stage keeps running; a
/// panic does the same. An error for which [`is_fatal`](Stage::is_fatal) is
/// true, or one that is a [`Fatal`](crate::Fatal), stops the graph.
///
/// # Example
///
/// ```
/// use sluicegate_core::{Origin, Outputs, Stage};
///
/// struct Uppercase;
///
/// impl Stage for Uppercase {
///     type In = String;
///     type Out = String;
///     type Error = std::convert::Infallible;
///
///     async fn process(&self, input: String, _origin: &Origin) -> Result<Outputs<String>, Self::Error> {
///         Ok(Outputs::one(input.to_uppercase()))
///     }
/// }
/// ```
pub trait Stage: Send + Sync + 'static {
    /// The input payload.
    type In: Send + 'static;
    /// The output payload.
    type Out: Send + 'static;
    /// The per-item error.
    type Error: Into<BoxError> + Send + 'static;

    /// Runs once before the graph accepts input. An error stops the graph
    /// from starting.
    fn start(&self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }

    /// Processes one input.
    fn process(
        &self,
        input: Self::In,
        origin: &Origin,
    ) -> impl Future<Output = Result<Outputs<Self::Out>, Self::Error>> + Send;

    /// Runs once after the stage's input is drained (flush connections,
    /// files, producers). Not called on a forced shutdown.
    fn stop(&self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }

    /// Whether `error` should stop the whole graph instead of failing one item.
    fn is_fatal(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// Whether a later attempt of the item may succeed (see
    /// [`Transient`](crate::Transient)): its failure then says
    /// [`is_transient`](crate::ItemError::is_transient).
    fn is_transient(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// How many items this stage is built to process at once, when it
    /// knows: a [`blocking`](crate::blocking) stage's `max_in_flight`.
    /// [`StageSpec::new`](crate::StageSpec::new) starts from it instead of
    /// one (with a mailbox at least that large), so the stage's own bound
    /// is not undone by a forgotten [`concurrency`](crate::StageSpec::concurrency);
    /// an explicit `concurrency` still wins.
    fn concurrency_hint(&self) -> Option<usize> {
        None
    }
}

/// A step that finishes each input without waiting for anything (parse,
/// validate, convert): a [`Stage`] without the `async`. Every `SyncStage`
/// is a `Stage` (a blanket impl wraps its result in a ready future), so it
/// goes into a [`StageSpec`](crate::StageSpec) like any other.
///
/// ```
/// use sluicegate_core::{Origin, Outputs, StageSpec, SyncStage};
///
/// struct Upper;
///
/// impl SyncStage for Upper {
///     type In = String;
///     type Out = String;
///     type Error = std::convert::Infallible;
///
///     fn process_sync(&self, input: String, _origin: &Origin) -> Result<Outputs<String>, Self::Error> {
///         Ok(Outputs::one(input.to_uppercase()))
///     }
/// }
///
/// let spec = StageSpec::new("upper", Upper);
/// # drop(spec);
/// ```
///
/// Work that takes long on the CPU belongs on the blocking pool instead
/// ([`blocking`], [`blocking_batch`]): a sync stage runs on the async
/// workers.
pub trait SyncStage: Send + Sync + 'static {
    /// The input payload.
    type In: Send + 'static;
    /// The output payload.
    type Out: Send + 'static;
    /// The per-item error.
    type Error: Into<BoxError> + Send + 'static;

    /// Processes one input.
    fn process_sync(
        &self,
        input: Self::In,
        origin: &Origin,
    ) -> Result<Outputs<Self::Out>, Self::Error>;

    /// Whether `error` should stop the whole graph: see [`Stage::is_fatal`].
    fn is_fatal(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// Whether a later attempt may succeed: see [`Stage::is_transient`].
    fn is_transient(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }
}

impl<S: SyncStage> Stage for S {
    type In = S::In;
    type Out = S::Out;
    type Error = S::Error;

    fn process(
        &self,
        input: S::In,
        origin: &Origin,
    ) -> impl Future<Output = Result<Outputs<S::Out>, S::Error>> + Send {
        std::future::ready(self.process_sync(input, origin))
    }

    fn is_fatal(&self, error: &S::Error) -> bool {
        SyncStage::is_fatal(self, error)
    }

    fn is_transient(&self, error: &S::Error) -> bool {
        SyncStage::is_transient(self, error)
    }
}

/// The result for one item of a batch.
pub type ItemResult<Out, E> = Result<Outputs<Out>, E>;

/// The result of a whole batch: one [`ItemResult`] per input, or an error
/// that fails them all.
pub type BatchResult<Out, E> = Result<Vec<ItemResult<Out, E>>, E>;

/// A step that processes inputs in batches gathered by the runtime (by count,
/// bytes and deadline; see [`BatchConfig`](crate::BatchConfig)).
///
/// `process_batch` returns one result per input, in input order, so one bad
/// row fails only itself; an outer `Err` fails the whole batch. Returning a
/// different number of results than inputs fails the whole batch.
pub trait BatchStage: Send + Sync + 'static {
    /// The input payload.
    type In: Send + 'static;
    /// The output payload.
    type Out: Send + 'static;
    /// The per-item and per-batch error.
    type Error: Into<BoxError> + Send + 'static;

    /// Runs once before the graph accepts input.
    fn start(&self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }

    /// Processes a batch; `origins[i]` is where `batch[i]` came from.
    fn process_batch(
        &self,
        batch: Vec<Self::In>,
        origins: &[&Origin],
    ) -> impl Future<Output = BatchResult<Self::Out, Self::Error>> + Send;

    /// Runs once after the stage's input is drained.
    fn stop(&self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }

    /// Whether `error` should stop the whole graph.
    fn is_fatal(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// Whether a later attempt of the item (or, for a whole-batch error,
    /// of each item) may succeed: see [`Stage::is_transient`].
    fn is_transient(&self, error: &Self::Error) -> bool {
        let _ = error;
        false
    }
}
