//! Fan-out under concurrent senders: a broadcast reserves room in every
//! branch before it sends a copy to any, so a branch filled by another
//! sender in between makes the send wait (or hand the envelope back),
//! never fail a copy.

use std::sync::Arc;
use std::time::Duration;

use sluicegate_core::mailbox::TrySendError;
use sluicegate_core::testing::{AckLog, CollectSink, within};
use sluicegate_core::{
    Ack, AckReceiver, BoxError, Envelope, Graph, Origin, Source, SourceContext, StageSpec, Stream,
};

const LIMIT: Duration = Duration::from_secs(60);
const SOURCES: u64 = 3;
const PER_SOURCE: u64 = 3_000;

/// Emits its offsets with `try_emit` (as the Kafka source does), waiting
/// for room whenever a mailbox is full.
struct TryEmitSource {
    offsets: std::ops::Range<u64>,
    acks: AckLog,
}

impl Source for TryEmitSource {
    type Out = u64;

    async fn run(self, mut cx: SourceContext<u64>) -> Result<(), BoxError> {
        let receiver: Arc<dyn AckReceiver> = Arc::new(self.acks.clone());
        for offset in self.offsets {
            let mut env = Envelope::new(
                offset,
                Ack::new(Origin::at(0, offset as i64), receiver.clone()),
            );
            loop {
                match cx.try_emit(env) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        env = back;
                        cx.ready().await;
                    }
                    Err(TrySendError::Closed(back)) => {
                        drop(back);
                        return Err("the graph stopped taking input".into());
                    }
                }
            }
        }
        Ok(())
    }
}

/// Three sources merged into a broadcast to two small sinks, on a
/// multi-thread runtime: every record reaches both branches, and every
/// origin hears Delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_from_concurrent_senders_fails_no_copy() {
    let acks = AckLog::new();
    let a = CollectSink::new();
    let b = CollectSink::new();
    let mut g = Graph::builder("fanout");
    let sources: Vec<Stream<u64>> = (0..SOURCES)
        .map(|i| {
            g.source(
                format!("src{i}"),
                TryEmitSource {
                    offsets: i * PER_SOURCE..(i + 1) * PER_SOURCE,
                    acks: acks.clone(),
                },
            )
        })
        .collect();
    let [to_a, to_b] = Stream::merge(sources).broadcast();
    to_b.to(StageSpec::new("b", b.clone()).capacity(1));
    to_a.to(StageSpec::new("a", a.clone()).capacity(1));
    let running = g.build().expect("valid").start().await.expect("starts");
    let report = within(LIMIT, "the graph to finish", running.wait()).await;
    let n = (SOURCES * PER_SOURCE) as usize;
    let failed = acks.failed();
    assert_eq!(
        failed,
        0,
        "{failed} of {n} records failed (first: {:?})",
        acks.offsets_where(|o| !o.is_delivered())
            .first()
            .and_then(|o| acks.outcome(*o))
    );
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(n as i64);
    assert_eq!(acks.delivered(), n);
    let mut got_a = a.items();
    let mut got_b = b.items();
    got_a.sort_unstable();
    got_b.sort_unstable();
    let all: Vec<u64> = (0..n as u64).collect();
    assert_eq!(got_a, all, "branch a got every record once");
    assert_eq!(got_b, all, "branch b got every record once");
}
