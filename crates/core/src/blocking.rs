//! CPU-heavy work on Tokio's blocking pool, bounded: one item per hop
//! ([`blocking`], [`blocking_shared`]) or one batch per hop
//! ([`blocking_batch`]).
//!
//! Each hop to the blocking pool costs a task, a wake-up of a pool thread
//! and a wake-up back: tens of microseconds of latency and a few of CPU on
//! a busy machine. For work of a few microseconds per item that cost is
//! the stage's limit, whatever its concurrency; [`blocking_batch`] pays it
//! once per batch (split across its workers) instead of once per item.

use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::ack::Origin;
use crate::error::{BoxError, Panicked, panic_message};
use crate::stage::{BatchResult, BatchStage, ItemResult, Outputs, Stage};

/// CPU-heavy work on Tokio's blocking pool, bounded. See [`blocking`].
pub struct Blocking<F, I, O, E> {
    f: Arc<F>,
    permits: Arc<Semaphore>,
    max_in_flight: Option<usize>,
    _types: PhantomData<fn(I) -> Result<O, E>>,
}

/// A stage that runs `f` on the blocking thread pool (`spawn_blocking`) so
/// CPU work never stalls the async workers, with at most `max_in_flight`
/// calls running at once.
///
/// # Backpressure
///
/// A bare `spawn_blocking` per message queues without bound inside Tokio;
/// here a call waits for a permit first, so the stage's input backs up
/// instead. [`StageSpec::new`](crate::StageSpec::new) gives the stage a
/// [`concurrency`](crate::StageSpec::concurrency) of `max_in_flight` (and a
/// mailbox at least that large), so that many run in parallel without
/// saying it twice; use [`blocking_shared`] to share one budget between
/// several stages.
///
/// # Panics
///
/// A panic in `f` fails that item like any stage panic.
pub fn blocking<I, O, E, F>(max_in_flight: usize, f: F) -> Blocking<F, I, O, E>
where
    F: Fn(I) -> Result<O, E> + Send + Sync + 'static,
{
    let max_in_flight = max_in_flight.max(1);
    Blocking {
        max_in_flight: Some(max_in_flight),
        ..blocking_shared(Arc::new(Semaphore::new(max_in_flight)), f)
    }
}

/// Like [`blocking`], drawing permits from a semaphore shared with other
/// stages. Set each stage's [`concurrency`](crate::StageSpec::concurrency)
/// to the share of the budget it may take at once (default one).
pub fn blocking_shared<I, O, E, F>(permits: Arc<Semaphore>, f: F) -> Blocking<F, I, O, E>
where
    F: Fn(I) -> Result<O, E> + Send + Sync + 'static,
{
    Blocking {
        f: Arc::new(f),
        permits,
        max_in_flight: None,
        _types: PhantomData,
    }
}

impl<I, O, E, F> Stage for Blocking<F, I, O, E>
where
    I: Send + 'static,
    O: Send + 'static,
    E: Into<BoxError> + Send + 'static,
    F: Fn(I) -> Result<O, E> + Send + Sync + 'static,
{
    type In = I;
    type Out = O;
    type Error = E;

    fn concurrency_hint(&self) -> Option<usize> {
        self.max_in_flight
    }

    async fn process(&self, input: I, _origin: &Origin) -> Result<Outputs<O>, E> {
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = self.permits.clone().acquire_owned().await;
        let f = self.f.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(input)
        })
        .await;
        match joined {
            Ok(result) => result.map(Outputs::one),
            // Re-raise the panic here so the runtime fails this item with its message.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => panic!("blocking task cancelled: the runtime is shutting down"),
        }
    }
}

/// CPU-heavy work on the blocking pool, a batch per hop. See [`blocking_batch`].
pub struct BlockingBatch<F, I, O, E> {
    f: Arc<F>,
    workers: usize,
    _types: PhantomData<fn(I) -> Result<O, E>>,
}

/// A [`BatchStage`] that runs `f` on each item of a batch on the blocking
/// pool, the batch split into at most `workers` contiguous parts that run
/// in parallel (one `spawn_blocking` each): one hop to the pool per part,
/// not per item.
///
/// Results keep the input order, whatever part finishes first, so the
/// stage preserves the order of its input (and so every per-key order).
/// An `Err` from `f`, or a panic in `f`, fails that item alone (to the
/// dead-letter route; a panic counts as one, with its message); the rest of
/// the batch goes on. Give it to a [`BatchSpec`](crate::BatchSpec) with a
/// [`BatchConfig`](crate::BatchConfig) whose deadline is zero: each batch
/// is then whatever waits in the mailbox, up to the batch size, so a quiet
/// stream is handed on at once and a busy one in large batches.
///
/// # Backpressure
///
/// One batch at a time: at most `workers` pool threads run `f` for this
/// stage, and while they do, the stage's mailbox fills. Make the mailbox
/// twice the batch size, so one batch gathers while the other runs.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use sluicegate_core::{BatchConfig, BatchSpec, blocking_batch};
///
/// let hash = blocking_batch(2, |x: u64| {
///     Ok::<_, std::convert::Infallible>(x.wrapping_mul(0x9e37_79b9_7f4a_7c15))
/// });
/// let spec = BatchSpec::new("hash", hash, BatchConfig::new(256, Duration::ZERO)).capacity(512);
/// # drop(spec);
/// ```
pub fn blocking_batch<I, O, E, F>(workers: usize, f: F) -> BlockingBatch<F, I, O, E>
where
    F: Fn(I) -> Result<O, E> + Send + Sync + 'static,
{
    BlockingBatch {
        f: Arc::new(f),
        workers: workers.max(1),
        _types: PhantomData,
    }
}

/// `f` on one item, a panic caught as that item's [`Panicked`] error.
fn run_one<I, O, E, F>(f: &F, item: I) -> ItemResult<O, BoxError>
where
    E: Into<BoxError>,
    F: Fn(I) -> Result<O, E>,
{
    match std::panic::catch_unwind(AssertUnwindSafe(|| f(item))) {
        Ok(Ok(out)) => Ok(Outputs::one(out)),
        Ok(Err(e)) => Err(e.into()),
        Err(payload) => Err(Box::new(Panicked::new(panic_message(payload.as_ref())))),
    }
}

impl<I, O, E, F> BatchStage for BlockingBatch<F, I, O, E>
where
    I: Send + 'static,
    O: Send + 'static,
    E: Into<BoxError> + Send + 'static,
    F: Fn(I) -> Result<O, E> + Send + Sync + 'static,
{
    type In = I;
    type Out = O;
    type Error = BoxError;

    async fn process_batch(&self, batch: Vec<I>, _origins: &[&Origin]) -> BatchResult<O, BoxError> {
        let n = batch.len();
        let parts = self.workers.min(n).max(1);
        // Contiguous parts, the first ones one item longer when `n` does
        // not divide evenly; split from the back so each `split_off` moves
        // only its own part.
        let mut sizes: Vec<usize> = (0..parts)
            .map(|i| n / parts + usize::from(i < n % parts))
            .collect();
        let mut rest = batch;
        let mut chunks = Vec::with_capacity(parts);
        while let Some(size) = sizes.pop() {
            let at = rest.len() - size;
            chunks.push(rest.split_off(at));
        }
        chunks.reverse();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let f = self.f.clone();
                tokio::task::spawn_blocking(move || {
                    chunk
                        .into_iter()
                        .map(|item| run_one(&*f, item))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut results = Vec::with_capacity(n);
        for handle in handles {
            match handle.await {
                Ok(part) => results.extend(part),
                // Every item's panic is caught inside the task.
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {
                    return Err("blocking task cancelled: the runtime is shutting down".into());
                }
            }
        }
        Ok(results)
    }
}
