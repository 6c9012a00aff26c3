//! The source API's traps, closed: an envelope the graph refused resolves
//! when its error is dropped (so `cx.emit(env).await?` loses nothing), and
//! a reservation cancelled in `select!` loses nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sluicegate_core::testing::{AckLog, CollectSink, Gate, GatedSink, within};
use sluicegate_core::{
    Ack, AckReceiver, BoxError, Envelope, FailureKind, Fatal, Graph, GraphError, Origin, Outcome,
    Source, SourceContext, StageSpec, try_map,
};

const LIMIT: Duration = Duration::from_secs(30);

/// Emits 0.. with the plain `?`, the way the docs invite; `tried` counts
/// the envelopes it offered.
struct QuestionMarkSource {
    acks: AckLog,
    tried: Arc<AtomicU64>,
}

impl Source for QuestionMarkSource {
    type Out = u64;

    async fn run(self, mut cx: SourceContext<u64>) -> Result<(), BoxError> {
        let receiver: Arc<dyn AckReceiver> = Arc::new(self.acks.clone());
        for offset in 0..1_000u64 {
            let ack = Ack::new(Origin::at(0, offset as i64), receiver.clone());
            self.tried.store(offset + 1, Ordering::SeqCst);
            cx.emit(Envelope::new(offset, ack)).await?;
        }
        Ok(())
    }
}

/// A stage fails fatally on item 3 and stops taking input; the source's
/// next `emit` is refused and its `?` returns the error. The refused
/// envelope resolves once, as failed (abandoned), and nothing leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_with_question_mark_resolves_the_refused_envelope() {
    let acks = AckLog::new();
    let tried = Arc::new(AtomicU64::new(0));
    let leaked_before = sluicegate_core::ack::leaked_total();
    let mut g = Graph::builder("question-mark");
    g.source(
        "src",
        QuestionMarkSource {
            acks: acks.clone(),
            tried: tried.clone(),
        },
    )
    .via(
        StageSpec::new(
            "store",
            try_map(|x: u64| {
                if x == 3 {
                    Err(Fatal::new("disk gone"))
                } else {
                    Ok(x)
                }
            }),
        )
        .capacity(1),
    )
    .to(StageSpec::new("sink", CollectSink::new()).capacity(1));
    let running = g.build().expect("valid").start().await.expect("starts");
    let report = within(LIMIT, "the graph to stop", running.wait()).await;

    assert_eq!(
        sluicegate_core::ack::leaked_total(),
        leaked_before,
        "the refused envelope leaked"
    );
    assert!(
        report
            .errors
            .iter()
            .all(|e| !matches!(e, GraphError::TaskPanicked { .. })),
        "{:?}",
        report.errors
    );
    assert!(
        report.errors.iter().any(
            |e| e.to_string().contains("src") && e.to_string().contains("stopped taking input")
        ),
        "the source reports the refusal: {:?}",
        report.errors
    );
    // Every envelope offered resolved once, the refused (last) one included,
    // while the report holding the source's error is still alive.
    let n = tried.load(Ordering::SeqCst) as i64;
    acks.assert_each_once(n);
    let refused = n - 1;
    match acks.outcome(refused) {
        Some(Outcome::Failed(e)) => {
            assert_eq!(e.kind(), FailureKind::Abandoned, "{e}");
            assert_eq!(e.stage(), "src");
        }
        other => panic!("the refused envelope (offset {refused}) resolved as {other:?}"),
    }
    assert!(
        acks.offsets_where(Outcome::is_delivered)
            .iter()
            .all(|o| *o < 3),
        "nothing at or after the fatal item is delivered"
    );
    let src = report.snapshot.stage("src").expect("source metrics");
    assert!(src.abandoned >= 1, "the refusal is counted: {src:?}");
}

/// Emits `n` envelopes, each through `reserve()` in a `select!` against a
/// 1 ms timer: while the sink holds, the timer wins again and again and
/// the reservation is cancelled each time.
struct SelectSource {
    n: u64,
    acks: AckLog,
    cancelled: Arc<AtomicU64>,
}

impl Source for SelectSource {
    type Out = u64;

    async fn run(self, mut cx: SourceContext<u64>) -> Result<(), BoxError> {
        let receiver: Arc<dyn AckReceiver> = Arc::new(self.acks.clone());
        for offset in 0..self.n {
            let env = Envelope::new(
                offset,
                Ack::new(Origin::at(0, offset as i64), receiver.clone()),
            );
            let mut env = Some(env);
            while let Some(e) = env.take() {
                tokio::select! {
                    permit = cx.reserve() => permit?.send(e),
                    () = tokio::time::sleep(Duration::from_millis(1)) => {
                        self.cancelled.fetch_add(1, Ordering::Relaxed);
                        env = Some(e);
                    }
                }
            }
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_reservation_cancelled_in_select_loses_nothing() {
    const N: u64 = 20;
    let acks = AckLog::new();
    let gate = Gate::new();
    let sink = GatedSink::new(gate.clone());
    let cancelled = Arc::new(AtomicU64::new(0));
    let leaked_before = sluicegate_core::ack::leaked_total();
    let mut g = Graph::builder("select");
    g.source(
        "src",
        SelectSource {
            n: N,
            acks: acks.clone(),
            cancelled: cancelled.clone(),
        },
    )
    .to(StageSpec::new("sink", sink.clone()).capacity(1));
    let running = g.build().expect("valid").start().await.expect("starts");
    // Let one item through every 10 ms: the source waits about that long
    // for each place, its timer firing meanwhile.
    for _ in 0..N {
        tokio::time::sleep(Duration::from_millis(10)).await;
        gate.open(1);
    }
    let report = within(LIMIT, "the graph to finish", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    assert!(
        cancelled.load(Ordering::Relaxed) >= N,
        "the reservation was cancelled only {} times",
        cancelled.load(Ordering::Relaxed)
    );
    acks.assert_each_once(N as i64);
    assert_eq!(acks.delivered(), N as usize);
    assert_eq!(
        sink.collected().items(),
        (0..N).collect::<Vec<_>>(),
        "everything arrived, in order, once"
    );
    assert_eq!(sluicegate_core::ack::leaked_total(), leaked_before);
    let snap = report.snapshot.mailbox("sink").expect("mailbox");
    assert_eq!(snap.depth, 0, "no reservation left behind");
}
