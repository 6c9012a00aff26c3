//! An in-memory source.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ack::{Ack, AckReceiver, Origin};
use crate::envelope::Envelope;
use crate::error::BoxError;
use crate::source::{Source, SourceContext};

use super::AckLog;

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
