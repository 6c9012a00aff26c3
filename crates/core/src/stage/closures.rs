//! Stages built from closures: [`map`], [`filter`], [`flat_map`],
//! [`try_map`] (synchronous), [`then`] and [`sink`] (async), and
//! [`batch_sink`] (a whole batch at once).

use std::future::Future;
use std::marker::PhantomData;

use crate::ack::Origin;
use crate::error::BoxError;

use super::{BatchResult, BatchStage, Outputs, Stage, SyncStage};

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
