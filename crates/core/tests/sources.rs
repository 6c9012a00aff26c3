//! The ready-made sources of `sluicegate_core::sources`: every item in
//! order with its origin, backpressure reaching a channel's senders, and a
//! shutdown that leaves the unread input unread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sluicegate_core::testing::{AckLog, CollectSink, Gate, GatedSink, run_to_end, within};
use sluicegate_core::{AckCounter, Graph, Origin, Outputs, Stage, StageSpec, map, sources};

const LIMIT: Duration = Duration::from_secs(60);

/// Collects each item with its origin.
#[derive(Clone, Default)]
struct WithOrigin(CollectSink<(u64, Origin)>);

impl Stage for WithOrigin {
    type In = u64;
    type Out = ();
    type Error = std::convert::Infallible;

    async fn process(&self, input: u64, origin: &Origin) -> Result<Outputs<()>, Self::Error> {
        self.0.process((input, origin.clone()), origin).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iterator_goes_through_in_order_with_its_offsets() {
    let acks = AckLog::new();
    let out = WithOrigin::default();
    let mut g = Graph::builder("iter");
    g.source(
        "numbers",
        sources::from_iter(0..1_000u64)
            .acks(acks.clone())
            .partition(3),
    )
    .via(StageSpec::new("double", map(|n: u64| n * 2)).capacity(4))
    .to(StageSpec::new("out", out.clone()).capacity(4));
    let report = run_to_end(g, LIMIT).await;
    assert!(report.is_clean(), "{report:?}");
    let items = out.0.items();
    let expected: Vec<(u64, Origin)> = (0..1_000u64)
        .map(|n| (n * 2, Origin::at(3, n as i64)))
        .collect();
    assert_eq!(items, expected);
    acks.assert_each_once(1_000);
    assert_eq!(acks.delivered(), 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_and_a_counter() {
    let counts = AckCounter::new();
    let out = CollectSink::new();
    let mut g = Graph::builder("stream");
    let stream = futures::stream::iter(["a", "bb", "ccc"]);
    g.source("words", sources::from_stream(stream).acks(counts.clone()))
        .via(StageSpec::new("len", map(|w: &str| w.len())))
        .to(StageSpec::new("out", out.clone()));
    let report = run_to_end(g, LIMIT).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(out.items(), vec![1, 2, 3]);
    assert_eq!((counts.delivered(), counts.resolved()), (3, 3));
}

/// While the graph is full, a channel's senders wait: with the sink held at
/// a gate, exactly the items the graph and the channel have room for are
/// sent, and no more however long the sender tries (paused time: the
/// clock moves only when every task waits). Opened, everything arrives.
#[tokio::test(start_paused = true)]
async fn a_full_graph_makes_the_channel_senders_wait() {
    const CHANNEL: usize = 3;
    let gate = Gate::new();
    let sink = GatedSink::new(gate.clone());
    let counts = AckCounter::new();
    let (tx, source) = sources::channel::<u64>(CHANNEL);
    let mut g = Graph::builder("channel");
    g.source("feed", source.acks(counts.clone()))
        .to(StageSpec::new("held", sink.clone()).capacity(2));
    let running = g.build().expect("valid").start().await.expect("starts");

    let sent = Arc::new(AtomicU64::new(0));
    let producer = tokio::spawn({
        let sent = sent.clone();
        async move {
            for n in 0..100u64 {
                if tx.send(n).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    within(LIMIT, "an item at the gate", gate.wait_for_waiting(1)).await;
    // Every task now waits: the sink at the gate, the source for room, the
    // producer for room in the channel.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    // The sink's mailbox holds 2 (the one at the gate among them), the
    // source holds none (it takes an item only once it has room for it),
    // the channel holds 3.
    assert_eq!(sent.load(Ordering::SeqCst), 2 + CHANNEL as u64);
    assert_eq!(gate.waiting(), 1);
    assert_eq!(counts.resolved(), 0);

    gate.open_all();
    within(LIMIT, "the producer", producer)
        .await
        .expect("producer");
    let report = within(LIMIT, "the graph", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(sent.load(Ordering::SeqCst), 100);
    assert_eq!(sink.collected().items(), (0..100).collect::<Vec<u64>>());
    assert_eq!(counts.delivered(), 100);
}

/// On shutdown the source stops taking items: what is still in the channel
/// stays unread (no acknowledgement), every item taken is delivered, and
/// the senders then see the channel closed.
#[tokio::test(start_paused = true)]
async fn shutdown_leaves_the_unread_input_unread() {
    let gate = Gate::new();
    let sink = GatedSink::new(gate.clone());
    let counts = AckCounter::new();
    let (tx, source) = sources::channel::<u64>(4);
    let mut g = Graph::builder("shutdown");
    g.source("feed", source.acks(counts.clone()))
        .to(StageSpec::new("held", sink.clone()).capacity(1));
    let running = g.build().expect("valid").start().await.expect("starts");
    for n in 0..5u64 {
        tx.send(n)
            .await
            .expect("room: 1 in the graph, 4 in the channel");
    }
    within(LIMIT, "an item at the gate", gate.wait_for_waiting(1)).await;
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let token = running.shutdown_token();
    token.cancel();
    gate.open_all();
    let report = within(LIMIT, "the graph", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(sink.collected().items(), vec![0]);
    assert_eq!((counts.delivered(), counts.resolved()), (1, 1));
    assert!(
        tx.send(9).await.is_err(),
        "the channel is closed once the source is gone"
    );
}
