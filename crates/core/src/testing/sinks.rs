//! Sinks for tests: one that collects, one held at a gate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, Semaphore};

use crate::ack::Origin;
use crate::stage::{Outputs, Stage};

use super::lock;

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
