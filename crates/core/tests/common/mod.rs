//! Helpers shared by the core integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use sluicegate_core::testing::{AckLog, Gate, GatedSink, VecSource, within};
use sluicegate_core::{
    Ack, AckReceiver, BoxError, Envelope, Graph, Origin, RunningGraph, Source, SourceContext,
    StageSpec,
};
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

/// A running graph stuck full: see [`start_held`].
pub struct Held {
    pub acks: AckLog,
    /// The sink; its gate is never opened.
    pub sink: GatedSink<u64>,
    /// How many items the source has emitted.
    pub emitted: Arc<AtomicU64>,
    pub running: RunningGraph,
}

/// Starts `src` (1,000 items) → `a` (a pass-through, mailbox `a_capacity`)
/// → `sink` (a [`GatedSink`] whose gate stays shut, mailbox
/// `sink_capacity`), and returns once the sink holds its first item (within
/// `limit`) and the graph, on the paused clock, has filled up and quiesced.
pub async fn start_held(
    name: &str,
    a_capacity: usize,
    sink_capacity: usize,
    limit: Duration,
) -> Held {
    let acks = AckLog::new();
    let gate = Gate::new();
    let sink = GatedSink::new(gate.clone());
    let source = VecSource::new((0..1_000u64).collect(), acks.clone());
    let emitted = source.emitted();
    let mut g = Graph::builder(name);
    g.source("src", source)
        .via(StageSpec::new("a", sluicegate_core::map(|x: u64| x)).capacity(a_capacity))
        .to(StageSpec::new("sink", sink.clone()).capacity(sink_capacity));
    let running = g.build().expect("valid").start().await.expect("starts");
    within(limit, "the sink to hold", gate.wait_for_waiting(1)).await;
    quiesce().await;
    Held {
        acks,
        sink,
        emitted,
        running,
    }
}
