//! Helpers shared by the core integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use sluicegate_core::testing::AckLog;
use sluicegate_core::{Ack, AckReceiver, BoxError, Envelope, Origin, Source, SourceContext};
use tokio::sync::oneshot;

/// With the clock paused, a virtual sleep returns only once every other task
/// is blocked: the graph has done everything it can.
pub async fn quiesce() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A two-worker multi-threaded runtime, for tests (proptest cases) that
/// run graphs off `#[tokio::test]`.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A source that emits `first`, waits for the test's go, then emits `then`,
/// then (if `hold`) stays open until shutdown.
pub struct PhasedSource {
    pub first: Vec<u64>,
    pub then: Vec<u64>,
    pub go: oneshot::Receiver<()>,
    pub acks: AckLog,
    pub hold: bool,
}

impl Source for PhasedSource {
    type Out = u64;

    async fn run(self, mut cx: SourceContext<u64>) -> Result<(), BoxError> {
        let receiver: Arc<dyn AckReceiver> = Arc::new(self.acks.clone());
        let mut offset = 0;
        for x in self.first {
            cx.emit(Envelope::new(
                x,
                Ack::new(Origin::at(0, offset), receiver.clone()),
            ))
            .await?;
            offset += 1;
        }
        tokio::select! {
            _ = self.go => {}
            () = cx.shutdown_requested() => return Ok(()),
        }
        for x in self.then {
            cx.emit(Envelope::new(
                x,
                Ack::new(Origin::at(0, offset), receiver.clone()),
            ))
            .await?;
            offset += 1;
        }
        if self.hold {
            cx.shutdown_requested().await;
        }
        Ok(())
    }
}
