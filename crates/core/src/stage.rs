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
use std::marker::PhantomData;

use crate::ack::Origin;
use crate::error::BoxError;

pub use crate::blocking::{Blocking, BlockingBatch, blocking, blocking_batch, blocking_shared};

/// What one input produced: nothing, one output, or several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs<T>(Repr<T>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Repr<T> {
    None,
    One(T),
    Many(Vec<T>),
}

impl<T> Outputs<T> {
    /// No output: the input is filtered out (its acknowledgement resolves as
    /// dropped, reason `filtered`).
    pub fn none() -> Self {
        Outputs(Repr::None)
    }

    /// Exactly one output.
    pub fn one(item: T) -> Self {
        Outputs(Repr::One(item))
    }

    /// Any number of outputs (zero is the same as [`Outputs::none`]).
    pub fn many(items: Vec<T>) -> Self {
        Outputs(Repr::Many(items))
    }

    /// How many outputs.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::None => 0,
            Repr::One(_) => 1,
            Repr::Many(v) => v.len(),
        }
    }

    /// Whether there is no output.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> IntoIterator for Outputs<T> {
    type Item = T;
    type IntoIter = OutputsIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        OutputsIter(match self.0 {
            Repr::None => IterRepr::Done,
            Repr::One(t) => IterRepr::One(Some(t)),
            Repr::Many(v) => IterRepr::Many(v.into_iter()),
        })
    }
}

/// Iterator over [`Outputs`].
#[derive(Debug)]
pub struct OutputsIter<T>(IterRepr<T>);

#[derive(Debug)]
enum IterRepr<T> {
    Done,
    One(Option<T>),
    Many(std::vec::IntoIter<T>),
}

impl<T> Iterator for OutputsIter<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match &mut self.0 {
            IterRepr::Done => None,
            IterRepr::One(t) => t.take(),
            IterRepr::Many(it) => it.next(),
        }
    }
}

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

/// A terminal batch stage from an async closure over the whole batch. See
/// [`batch_sink`].
pub struct BatchSink<F, T, E> {
    f: F,
    _types: PhantomData<fn(Vec<T>) -> E>,
}

/// A terminal [`BatchStage`] from an async closure that takes a whole batch
/// (write these rows, send this request) and succeeds or fails for all of
/// it: `Ok(())` delivers every item of the batch, an `Err` fails every
/// item with that error. For a result per item, implement [`BatchStage`].
///
/// ```
/// use std::time::Duration;
/// use sluicegate_core::{BatchConfig, BatchSpec, batch_sink};
///
/// let write = batch_sink(|rows: Vec<String>| async move {
///     println!("writing {} rows in one request", rows.len());
///     Ok::<_, std::io::Error>(())
/// });
/// let spec = BatchSpec::new("write", write, BatchConfig::new(500, Duration::from_millis(50)));
/// # drop(spec);
/// ```
pub fn batch_sink<T, E, Fut, F>(f: F) -> BatchSink<F, T, E>
where
    Fut: Future<Output = Result<(), E>> + Send,
    F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
{
    BatchSink {
        f,
        _types: PhantomData,
    }
}

impl<T, E, Fut, F> BatchStage for BatchSink<F, T, E>
where
    T: Send + 'static,
    E: Into<BoxError> + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
{
    type In = T;
    type Out = ();
    type Error = E;

    async fn process_batch(&self, batch: Vec<T>, _origins: &[&Origin]) -> BatchResult<(), E> {
        let n = batch.len();
        (self.f)(batch).await?;
        Ok((0..n).map(|_| Ok(Outputs::one(()))).collect())
    }
}

/// A stage from a plain function: one output per input. See [`map`].
pub struct Map<F, I, O> {
    f: F,
    _types: PhantomData<fn(I) -> O>,
}

/// A stage that applies `f` to every input.
pub fn map<I, O, F>(f: F) -> Map<F, I, O>
where
    F: Fn(I) -> O + Send + Sync + 'static,
{
    Map {
        f,
        _types: PhantomData,
    }
}

impl<I, O, F> SyncStage for Map<F, I, O>
where
    I: Send + 'static,
    O: Send + 'static,
    F: Fn(I) -> O + Send + Sync + 'static,
{
    type In = I;
    type Out = O;
    type Error = std::convert::Infallible;

    fn process_sync(&self, input: I, _origin: &Origin) -> Result<Outputs<O>, Self::Error> {
        Ok(Outputs::one((self.f)(input)))
    }
}

/// A stage that keeps inputs for which `f` is true. See [`filter`].
pub struct Filter<F, T> {
    f: F,
    _types: PhantomData<fn(T) -> T>,
}

/// A stage that keeps the inputs for which `f` returns true; the others
/// resolve as dropped with reason `filtered`.
pub fn filter<T, F>(f: F) -> Filter<F, T>
where
    F: Fn(&T) -> bool + Send + Sync + 'static,
{
    Filter {
        f,
        _types: PhantomData,
    }
}

impl<T, F> SyncStage for Filter<F, T>
where
    T: Send + 'static,
    F: Fn(&T) -> bool + Send + Sync + 'static,
{
    type In = T;
    type Out = T;
    type Error = std::convert::Infallible;

    fn process_sync(&self, input: T, _origin: &Origin) -> Result<Outputs<T>, Self::Error> {
        Ok(if (self.f)(&input) {
            Outputs::one(input)
        } else {
            Outputs::none()
        })
    }
}

/// A stage from a function returning any number of outputs. See [`flat_map`].
pub struct FlatMap<F, I, O> {
    f: F,
    _types: PhantomData<fn(I) -> O>,
}

/// A stage that turns every input into zero or more outputs.
pub fn flat_map<I, O, It, F>(f: F) -> FlatMap<F, I, O>
where
    It: IntoIterator<Item = O>,
    F: Fn(I) -> It + Send + Sync + 'static,
{
    FlatMap {
        f,
        _types: PhantomData,
    }
}

impl<I, O, It, F> SyncStage for FlatMap<F, I, O>
where
    I: Send + 'static,
    O: Send + 'static,
    It: IntoIterator<Item = O>,
    F: Fn(I) -> It + Send + Sync + 'static,
{
    type In = I;
    type Out = O;
    type Error = std::convert::Infallible;

    fn process_sync(&self, input: I, _origin: &Origin) -> Result<Outputs<O>, Self::Error> {
        Ok(Outputs::many((self.f)(input).into_iter().collect()))
    }
}

/// A stage from a fallible function. See [`try_map`].
pub struct TryMap<F, I, O, E> {
    f: F,
    _types: PhantomData<fn(I) -> Result<O, E>>,
}

/// A stage that applies a fallible `f`; an `Err` fails that item (to the
/// dead-letter route) and the stage goes on.
pub fn try_map<I, O, E, F>(f: F) -> TryMap<F, I, O, E>
where
    F: Fn(I) -> Result<O, E> + Send + Sync + 'static,
{
    TryMap {
        f,
        _types: PhantomData,
    }
}

impl<I, O, E, F> SyncStage for TryMap<F, I, O, E>
where
    I: Send + 'static,
    O: Send + 'static,
    E: Into<BoxError> + Send + 'static,
    F: Fn(I) -> Result<O, E> + Send + Sync + 'static,
{
    type In = I;
    type Out = O;
    type Error = E;

    fn process_sync(&self, input: I, _origin: &Origin) -> Result<Outputs<O>, E> {
        (self.f)(input).map(Outputs::one)
    }
}

/// A stage from an async function. See [`then`].
pub struct Then<F, I, O, E> {
    f: F,
    _types: PhantomData<fn(I) -> Result<O, E>>,
}

/// A stage from an async closure returning `Result<Out, E>`.
pub fn then<I, O, E, Fut, F>(f: F) -> Then<F, I, O, E>
where
    Fut: Future<Output = Result<O, E>> + Send,
    F: Fn(I) -> Fut + Send + Sync + 'static,
{
    Then {
        f,
        _types: PhantomData,
    }
}

impl<I, O, E, Fut, F> Stage for Then<F, I, O, E>
where
    I: Send + 'static,
    O: Send + 'static,
    E: Into<BoxError> + Send + 'static,
    Fut: Future<Output = Result<O, E>> + Send,
    F: Fn(I) -> Fut + Send + Sync + 'static,
{
    type In = I;
    type Out = O;
    type Error = E;

    async fn process(&self, input: I, _origin: &Origin) -> Result<Outputs<O>, E> {
        (self.f)(input).await.map(Outputs::one)
    }
}

/// A terminal stage from an async closure. See [`sink`].
pub struct Sink<F, T, E> {
    f: F,
    _types: PhantomData<fn(T) -> E>,
}

/// A sink: an async closure that consumes each input; `Ok` delivers it.
pub fn sink<T, E, Fut, F>(f: F) -> Sink<F, T, E>
where
    Fut: Future<Output = Result<(), E>> + Send,
    F: Fn(T) -> Fut + Send + Sync + 'static,
{
    Sink {
        f,
        _types: PhantomData,
    }
}

impl<T, E, Fut, F> Stage for Sink<F, T, E>
where
    T: Send + 'static,
    E: Into<BoxError> + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    F: Fn(T) -> Fut + Send + Sync + 'static,
{
    type In = T;
    type Out = ();
    type Error = E;

    async fn process(&self, input: T, _origin: &Origin) -> Result<Outputs<()>, E> {
        (self.f)(input).await.map(Outputs::one)
    }
}
