//! Backpressure with exact counts, drop policies and byte budgets.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{PhasedSource, quiesce};
use sluicegate_core::testing::{AckLog, CollectSink, Gate, GatedSink, VecSource, within};
use sluicegate_core::{DropReason, Graph, Outcome, Overflow, StageSpec, map};
use tokio::sync::oneshot;

const LIMIT: Duration = Duration::from_secs(30);

/// source → a (capacity 4) → b (capacity 3) → gated sink (capacity 2): with
/// the sink holding, the source gets exactly 4 + 3 + 2 items in, then one
/// more per item the gate lets through.
#[tokio::test(start_paused = true)]
async fn blocked_sink_holds_exactly_the_capacities() {
    let acks = AckLog::new();
    let gate = Gate::new();
    let sink = GatedSink::new(gate.clone());
    let source = VecSource::new((0..1_000u64).collect(), acks.clone());
    let emitted = source.emitted();
    let mut g = Graph::builder("bp");
    g.source("src", source)
        .via(StageSpec::new("a", map(|x: u64| x + 1)).capacity(4))
        .via(StageSpec::new("b", map(|x: u64| x * 2)).capacity(3))
        .to(StageSpec::new("sink", sink.clone()).capacity(2));
    let graph = g.build().expect("valid graph");
    let metrics = graph.metrics().clone();
    let running = graph.start().await.expect("starts");

    within(
        LIMIT,
        "the sink to hold its first item",
        gate.wait_for_waiting(1),
    )
    .await;
    quiesce().await;
    assert_eq!(
        emitted.load(Ordering::SeqCst),
        4 + 3 + 2,
        "source ran past the capacities"
    );
    let snap = metrics.snapshot();
    for (stage, cap) in [("a", 4), ("b", 3), ("sink", 2)] {
        let m = snap.mailbox(stage).expect("mailbox");
        assert_eq!(
            (m.depth, m.capacity),
            (cap, cap),
            "mailbox of {stage} not exactly full"
        );
    }
    assert_eq!(acks.resolved(), 0);

    for released in 1..=5u64 {
        gate.open(1);
        within(
            LIMIT,
            "the sink to collect",
            sink.collected().wait_for(released as usize),
        )
        .await;
        quiesce().await;
        assert_eq!(
            emitted.load(Ordering::SeqCst),
            9 + released,
            "one out, exactly one in"
        );
        assert_eq!(acks.delivered(), released as usize);
    }

    gate.open_all();
    let report = within(LIMIT, "the graph to finish", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(1_000);
    assert_eq!(acks.delivered(), 1_000);
    let expected: Vec<u64> = (0..1_000).map(|x| (x + 1) * 2).collect();
    assert_eq!(sink.collected().items(), expected);
}

/// Concurrency counts against the capacity too: a stage with 4 in flight and
/// capacity 4 holds 4 items, no more.
#[tokio::test(start_paused = true)]
async fn concurrent_stage_in_flight_counts_against_capacity() {
    let acks = AckLog::new();
    let gate = Gate::new();
    let sink = GatedSink::new(gate.clone());
    let source = VecSource::new((0..100u64).collect(), acks.clone());
    let emitted = source.emitted();
    let mut g = Graph::builder("bp-conc");
    g.source("src", source)
        .to(StageSpec::new("sink", sink.clone())
            .capacity(4)
            .concurrency(4));
    let running = g.build().expect("valid").start().await.expect("starts");
    within(LIMIT, "four items at the gate", gate.wait_for_waiting(4)).await;
    quiesce().await;
    assert_eq!(emitted.load(Ordering::SeqCst), 4);
    assert_eq!(gate.waiting(), 4, "more in flight than the concurrency");
    gate.open_all();
    let report = within(LIMIT, "the graph to finish", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(100);
    assert_eq!(sink.collected().len(), 100);
}

async fn drop_policy_run(policy: Overflow) -> (AckLog, Vec<u64>, u64, u64) {
    let acks = AckLog::new();
    let gate = Gate::new();
    let sink = GatedSink::new(gate.clone());
    let (go_tx, go) = oneshot::channel();
    let source = PhasedSource {
        first: vec![0],
        then: (1..100).collect(),
        go,
        acks: acks.clone(),
        hold: false,
    };
    let mut g = Graph::builder("drops");
    g.source("src", source)
        .to(StageSpec::new("sink", sink.clone())
            .capacity(10)
            .overflow(policy));
    let graph = g.build().expect("valid");
    let metrics = graph.metrics().clone();
    let running = graph.start().await.expect("starts");
    // The sink holds item 0 at the gate; then 99 more arrive at a mailbox with 9 free slots.
    within(LIMIT, "item 0 at the gate", gate.wait_for_waiting(1)).await;
    go_tx.send(()).expect("source waiting");
    quiesce().await;
    gate.open_all();
    let report = within(LIMIT, "the graph to finish", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    let snap = metrics.snapshot();
    let mailbox = snap.mailbox("sink").expect("mailbox");
    (
        acks,
        sink.collected().items(),
        mailbox.dropped,
        mailbox.accepted,
    )
}

#[tokio::test(start_paused = true)]
async fn drop_newest_drops_exactly_the_overflow() {
    let (acks, kept, dropped, accepted) = drop_policy_run(Overflow::DropNewest).await;
    assert_eq!(accepted, 10, "only the kept ones were queued");
    assert_eq!(
        kept,
        (0..10).collect::<Vec<u64>>(),
        "DropNewest keeps the first to arrive"
    );
    assert_eq!(dropped, 90);
    acks.assert_each_once(100);
    assert_eq!(acks.delivered(), 10);
    assert_eq!(acks.dropped(), 90);
    assert_eq!(
        acks.offsets_where(|o| matches!(o, Outcome::Dropped(_))),
        (10..100).collect::<Vec<i64>>()
    );
    match acks.outcome(50) {
        Some(Outcome::Dropped(DropReason::MailboxFull { stage, policy })) => {
            assert_eq!(&*stage, "sink");
            assert_eq!(policy, Overflow::DropNewest);
        }
        other => panic!("offset 50 resolved as {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn drop_oldest_keeps_the_newest() {
    let (acks, kept, dropped, accepted) = drop_policy_run(Overflow::DropOldest).await;
    assert_eq!(
        accepted, 100,
        "every arrival was queued; 90 were evicted later"
    );
    // Item 0 was in progress (never dropped); the 9 free slots end with the newest.
    let mut expected = vec![0];
    expected.extend(91..100);
    assert_eq!(kept, expected);
    assert_eq!(dropped, 90);
    acks.assert_each_once(100);
    assert_eq!(acks.dropped(), 90);
    assert_eq!(
        acks.offsets_where(|o| matches!(o, Outcome::Dropped(_))),
        (1..91).collect::<Vec<i64>>()
    );
}

/// A byte budget bounds the mailbox by size as well as count.
#[tokio::test(start_paused = true)]
async fn byte_budget_bounds_the_mailbox() {
    let acks = AckLog::new();
    let gate = Gate::new();
    let sink = GatedSink::new(gate.clone());
    let source = VecSource::new((0..50).map(|_| vec![0u8; 100]).collect(), acks.clone());
    let emitted = source.emitted();
    let mut g = Graph::builder("bytes");
    g.source("src", source)
        .to(StageSpec::new("sink", sink.clone())
            .capacity(1_000)
            .max_bytes(450, |v: &Vec<u8>| v.len()));
    let graph = g.build().expect("valid");
    let metrics = graph.metrics().clone();
    let running = graph.start().await.expect("starts");
    within(LIMIT, "the sink to hold", gate.wait_for_waiting(1)).await;
    quiesce().await;
    assert_eq!(
        emitted.load(Ordering::SeqCst),
        4,
        "450 bytes hold four 100-byte items"
    );
    assert_eq!(
        metrics.snapshot().mailbox("sink").expect("mailbox").bytes,
        400
    );
    gate.open_all();
    let report = within(LIMIT, "the graph to finish", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(50);
}

/// try_send hands the envelope back when full; nothing is lost.
#[tokio::test]
async fn try_send_hands_the_item_back() {
    use sluicegate_core::Envelope;
    use sluicegate_core::mailbox::{TrySendError, mailbox};
    let acks = AckLog::new();
    let (tx, mut rx) = mailbox::<u64>("m", 2, Overflow::Block, None);
    tx.try_send(Envelope::new(1, acks.ack(0))).expect("room");
    tx.try_send(Envelope::new(2, acks.ack(1))).expect("room");
    let back = match tx.try_send(Envelope::new(3, acks.ack(2))) {
        Err(TrySendError::Full(env)) => env,
        other => panic!("expected Full, got {other:?}"),
    };
    assert_eq!(*back.payload(), 3);
    let mut got = Vec::new();
    assert!(rx.recv_many(&mut got, 10).await);
    assert_eq!(got.len(), 2);
    assert!(tx.is_full(), "taken items still hold their slots");
    for (env, slot) in got {
        env.into_parts().1.deliver();
        slot.release();
    }
    assert!(!tx.is_full(), "dropped guards gave the slots back");
    tx.try_send(back).expect("room after release");
    let (env, _slot) = rx.recv().await.expect("item");
    env.into_parts().1.deliver();
    acks.assert_each_once(3);
    drop(CollectSink::<u64>::new());
}

/// `emit_batch` moves many envelopes per lock and still respects the bound:
/// with the sink holding, exactly the capacity gets in.
#[tokio::test(start_paused = true)]
async fn emit_batch_respects_the_bound() {
    use sluicegate_core::{Ack, AckReceiver, BoxError, Envelope, Origin, Source, SourceContext};
    use std::collections::VecDeque;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    struct Batches {
        acks: AckLog,
        sent: Arc<AtomicU64>,
    }
    impl Source for Batches {
        type Out = u64;
        async fn run(self, mut cx: SourceContext<u64>) -> Result<(), BoxError> {
            let receiver: Arc<dyn AckReceiver> = Arc::new(self.acks.clone());
            let mut batch = VecDeque::new();
            for chunk in 0..10i64 {
                batch.extend((0..10).map(|k| {
                    let i = chunk * 10 + k;
                    Envelope::new(i as u64, Ack::new(Origin::at(0, i), receiver.clone()))
                }));
                cx.emit_batch(&mut batch).await?;
                self.sent.fetch_add(10, Ordering::SeqCst);
            }
            Ok(())
        }
    }

    let acks = AckLog::new();
    let gate = Gate::new();
    let sink = GatedSink::new(gate.clone());
    let sent = Arc::new(AtomicU64::new(0));
    let mut g = Graph::builder("batches");
    g.source(
        "src",
        Batches {
            acks: acks.clone(),
            sent: sent.clone(),
        },
    )
    .to(StageSpec::new("sink", sink.clone()).capacity(15));
    let graph = g.build().expect("valid");
    let metrics = graph.metrics().clone();
    let running = graph.start().await.expect("starts");
    within(LIMIT, "the sink to hold", gate.wait_for_waiting(1)).await;
    quiesce().await;
    // The first batch went in whole, the second only in part: 15 in the mailbox.
    assert_eq!(sent.load(Ordering::SeqCst), 10);
    assert_eq!(
        metrics.snapshot().mailbox("sink").expect("mailbox").depth,
        15
    );
    gate.open_all();
    let report = within(LIMIT, "the graph", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(100);
    assert_eq!(sink.collected().items(), (0..100).collect::<Vec<u64>>());
}
