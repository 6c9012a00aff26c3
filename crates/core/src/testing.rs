//! A testing kit for pipelines: an in-memory source, a collecting sink, a
//! gate-controlled sink, and an acknowledgement log with assertions.
//!
//! Everything here is deterministic: nothing sleeps, gates are opened by the
//! test, and waits take a timeout with a message (see [`within`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::ack::{Ack, AckReceiver, Origin, Outcome};
use crate::envelope::Envelope;
use crate::error::BoxError;
use crate::source::{Source, SourceContext};
use crate::stage::{Outputs, Stage};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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

/// Records every acknowledgement a source receives, keyed by offset, and
/// counts how many times each offset resolved: an acknowledgement resolves
/// exactly once, so a second resolution is a bug that [`AckLog::outcome`]
/// and [`AckLog::assert_each_once`] report instead of hiding it.
#[derive(Clone, Default)]
pub struct AckLog {
    inner: Arc<AckLogInner>,
}

#[derive(Default)]
struct AckLogInner {
    /// Every outcome of each offset, in the order they arrived.
    outcomes: Mutex<BTreeMap<i64, Vec<Outcome>>>,
    changed: Notify,
}

impl std::fmt::Debug for AckLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckLog")
            .field("resolved", &self.resolved())
            .field("resolved_twice", &self.resolved_more_than_once())
            .finish()
    }
}

impl AckReceiver for AckLog {
    fn on_ack(&self, origin: &Origin, outcome: Outcome) {
        lock(&self.inner.outcomes)
            .entry(origin.offset.unwrap_or(-1))
            .or_default()
            .push(outcome);
        self.inner.changed.notify_waiters();
    }
}

impl AckLog {
    /// An empty log.
    pub fn new() -> Self {
        AckLog::default()
    }

    /// A new acknowledgement reporting to this log for `offset`.
    pub fn ack(&self, offset: i64) -> Ack {
        Ack::new(Origin::at(0, offset), Arc::new(self.clone()))
    }

    /// Every outcome, by offset (more than one per offset is a bug).
    pub fn outcomes(&self) -> BTreeMap<i64, Vec<Outcome>> {
        lock(&self.inner.outcomes).clone()
    }

    /// The outcome of `offset`, if resolved.
    ///
    /// # Panics
    ///
    /// If `offset` resolved more than once, naming every outcome it got.
    pub fn outcome(&self, offset: i64) -> Option<Outcome> {
        let all = lock(&self.inner.outcomes);
        match all.get(&offset).map(Vec::as_slice) {
            None | Some([]) => None,
            Some([one]) => Some(one.clone()),
            Some(many) => panic!(
                "offset {offset} resolved {} times: {}",
                many.len(),
                describe(many)
            ),
        }
    }

    /// How many times `offset` resolved (exactly one is right).
    pub fn times(&self, offset: i64) -> usize {
        lock(&self.inner.outcomes).get(&offset).map_or(0, Vec::len)
    }

    /// Offsets that resolved more than once (a bug), in order.
    pub fn resolved_more_than_once(&self) -> Vec<i64> {
        lock(&self.inner.outcomes)
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(k, _)| *k)
            .collect()
    }

    /// How many acknowledgements resolved (counting duplicates).
    pub fn resolved(&self) -> usize {
        lock(&self.inner.outcomes).values().map(Vec::len).sum()
    }

    fn count(&self, pred: impl Fn(&Outcome) -> bool) -> usize {
        lock(&self.inner.outcomes)
            .values()
            .flatten()
            .filter(|o| pred(o))
            .count()
    }

    /// How many resolved as delivered.
    pub fn delivered(&self) -> usize {
        self.count(Outcome::is_delivered)
    }

    /// How many resolved as dropped.
    pub fn dropped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Dropped(_)))
    }

    /// How many resolved as dead-lettered.
    pub fn dead_lettered(&self) -> usize {
        self.count(|o| matches!(o, Outcome::DeadLettered(_)))
    }

    /// How many resolved as failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    /// Offsets whose outcome matches `pred`, in order.
    pub fn offsets_where(&self, pred: impl Fn(&Outcome) -> bool) -> Vec<i64> {
        lock(&self.inner.outcomes)
            .iter()
            .filter(|(_, v)| v.iter().any(&pred))
            .map(|(k, _)| *k)
            .collect()
    }

    /// Waits until at least `n` acknowledgements resolved.
    pub async fn wait_for(&self, n: usize) {
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.resolved() >= n {
                return;
            }
            notified.await;
        }
    }

    /// Asserts that offsets `0..n` each resolved exactly once, and nothing else did.
    ///
    /// # Panics
    ///
    /// Naming the first offset resolved zero or several times.
    pub fn assert_each_once(&self, n: i64) {
        let all = self.outcomes();
        for offset in 0..n {
            match all.get(&offset).map(Vec::as_slice) {
                Some([_]) => {}
                Some(many @ [_, _, ..]) => panic!(
                    "offset {offset} resolved {} times: {}",
                    many.len(),
                    describe(many)
                ),
                None | Some([]) => panic!(
                    "offset {offset} never resolved ({} of {n} resolved)",
                    all.len()
                ),
            }
        }
        if let Some(extra) = all.keys().find(|k| **k < 0 || **k >= n) {
            panic!("unexpected offset {extra} resolved");
        }
    }
}

fn describe(outcomes: &[Outcome]) -> String {
    outcomes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", then ")
}

pub use crate::ack::AckCounter;

/// A source emitting a list of payloads with offsets `0..n`, acknowledged to
/// an [`AckLog`]. Stops early on shutdown.
pub struct VecSource<T> {
    items: Vec<T>,
    acks: AckLog,
    emitted: Arc<AtomicU64>,
}

impl<T> VecSource<T> {
    /// A source of `items`, reporting outcomes to `acks`.
    pub fn new(items: Vec<T>, acks: AckLog) -> Self {
        VecSource {
            items,
            acks,
            emitted: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A counter of envelopes the graph accepted, readable while it runs.
    pub fn emitted(&self) -> Arc<AtomicU64> {
        self.emitted.clone()
    }
}

impl<T: Send + 'static> Source for VecSource<T> {
    type Out = T;

    async fn run(self, mut cx: SourceContext<T>) -> Result<(), BoxError> {
        let receiver: Arc<dyn AckReceiver> = Arc::new(self.acks.clone());
        for (i, item) in self.items.into_iter().enumerate() {
            if cx.is_shutting_down() {
                break;
            }
            let env = Envelope::new(item, Ack::new(Origin::at(0, i as i64), receiver.clone()));
            if let Err(e) = cx.emit(env).await {
                let (_, ack) = e.into_inner().into_parts();
                ack.fail(crate::ItemError::new(
                    cx.name().to_string(),
                    crate::FailureKind::Abandoned,
                    "graph stopped taking input",
                ));
                break;
            }
            self.emitted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A sink collecting every payload it receives.
#[derive(Debug)]
pub struct CollectSink<T> {
    items: Arc<Mutex<Vec<T>>>,
    changed: Arc<Notify>,
}

impl<T> Clone for CollectSink<T> {
    fn clone(&self) -> Self {
        CollectSink {
            items: self.items.clone(),
            changed: self.changed.clone(),
        }
    }
}

impl<T> Default for CollectSink<T> {
    fn default() -> Self {
        CollectSink {
            items: Arc::new(Mutex::new(Vec::new())),
            changed: Arc::new(Notify::new()),
        }
    }
}

impl<T: Clone> CollectSink<T> {
    /// An empty sink; clones share the collection.
    pub fn new() -> Self {
        CollectSink::default()
    }

    /// Everything collected so far, in arrival order.
    pub fn items(&self) -> Vec<T> {
        lock(&self.items).clone()
    }

    /// How many items arrived.
    pub fn len(&self) -> usize {
        lock(&self.items).len()
    }

    /// Whether nothing arrived.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until at least `n` items arrived.
    pub async fn wait_for(&self, n: usize) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.len() >= n {
                return;
            }
            notified.await;
        }
    }
}

impl<T: Send + 'static> Stage for CollectSink<T> {
    type In = T;
    type Out = ();
    type Error = std::convert::Infallible;

    async fn process(&self, input: T, _origin: &Origin) -> Result<Outputs<()>, Self::Error> {
        lock(&self.items).push(input);
        self.changed.notify_waiters();
        Ok(Outputs::one(()))
    }
}

/// A gate that holds a [`GatedSink`]: each item waits for one permit.
#[derive(Debug, Clone)]
pub struct Gate {
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicU64>,
    changed: Arc<Notify>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            permits: Arc::new(Semaphore::new(0)),
            waiting: Arc::new(AtomicU64::new(0)),
            changed: Arc::new(Notify::new()),
        }
    }
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Gate::default()
    }

    /// Lets `n` more items through.
    pub fn open(&self, n: usize) {
        self.permits.add_permits(n);
    }

    /// Lets everything through from now on.
    pub fn open_all(&self) {
        self.permits.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    /// How many items are waiting at the gate now.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Waits until `n` items are waiting at the gate.
    pub async fn wait_for_waiting(&self, n: u64) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.waiting() >= n {
                return;
            }
            notified.await;
        }
    }

    async fn pass(&self) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        // The semaphore is never closed.
        if let Ok(permit) = self.permits.acquire().await {
            permit.forget();
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// A sink that holds each item at a [`Gate`] until the test opens it, then
/// collects it. Builds a backlog on demand.
#[derive(Debug, Clone)]
pub struct GatedSink<T> {
    gate: Gate,
    collected: CollectSink<T>,
}

impl<T: Clone> GatedSink<T> {
    /// A sink behind `gate`.
    pub fn new(gate: Gate) -> Self {
        GatedSink {
            gate,
            collected: CollectSink::new(),
        }
    }

    /// What passed the gate.
    pub fn collected(&self) -> &CollectSink<T> {
        &self.collected
    }
}

impl<T: Clone + Send + 'static> Stage for GatedSink<T> {
    type In = T;
    type Out = ();
    type Error = std::convert::Infallible;

    async fn process(&self, input: T, origin: &Origin) -> Result<Outputs<()>, Self::Error> {
        self.gate.pass().await;
        self.collected.process(input, origin).await
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{DropReason, FailureKind, ItemError};

    fn panics<R>(f: impl FnOnce() -> R) -> bool {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err()
    }

    /// A second resolution of one offset is counted and reported, whatever
    /// the first outcome was.
    #[test]
    fn ack_log_catches_a_second_resolution() {
        let log = AckLog::new();
        log.ack(0).deliver();
        log.ack(1).deliver();
        log.ack(1)
            .fail(ItemError::new("s", FailureKind::Error, "late"));
        log.ack(2).drop_with(DropReason::Filtered);
        assert_eq!((log.times(0), log.times(1), log.times(3)), (1, 2, 0));
        assert_eq!(log.resolved_more_than_once(), vec![1]);
        assert!(log.outcome(0).is_some_and(|o| o.is_delivered()));
        assert!(log.outcome(3).is_none());
        assert!(
            panics(|| log.outcome(1)),
            "outcome() hid a double resolution"
        );
        assert!(panics(|| log.assert_each_once(3)));
    }
}
