//! Graceful shutdown: drain with nothing lost; past the deadline, what is
//! left is abandoned and reported as failed, never as delivered.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::quiesce;
use sluicegate_core::testing::{AckLog, CollectSink, Gate, GatedSink, VecSource, within};
use sluicegate_core::{FailureKind, Graph, Outcome, StageSpec, then};

const LIMIT: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn shutdown_drains_everything_in_flight() {
    let acks = AckLog::new();
    let sink = CollectSink::new();
    let source = VecSource::new((0..100_000u64).collect(), acks.clone());
    let emitted = source.emitted();
    let slow = then(|x: u64| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok::<_, std::convert::Infallible>(x)
    });
    let mut g = Graph::builder("drain");
    g.source("src", source)
        .via(StageSpec::new("slow", slow).capacity(16).concurrency(4))
        .via(StageSpec::new("pass", sluicegate_core::map(|x: u64| x)).capacity(8))
        .to(StageSpec::new("sink", sink.clone()).capacity(8));
    let running = g.build().expect("valid").start().await.expect("starts");
    within(LIMIT, "some items through", sink.wait_for(100)).await;
    let report = within(LIMIT, "shutdown", running.shutdown(Duration::from_secs(60))).await;

    assert!(report.is_clean(), "{report:?}");
    let emitted = emitted.load(Ordering::SeqCst) as usize;
    assert!(emitted < 100_000, "the source should have stopped early");
    assert_eq!(sink.len(), emitted, "everything accepted was delivered");
    assert_eq!(acks.resolved(), emitted);
    assert_eq!(acks.delivered(), emitted);
    acks.assert_each_once(emitted as i64);
}

#[tokio::test(start_paused = true)]
async fn shutdown_past_the_deadline_abandons_as_failed() {
    let acks = AckLog::new();
    let gate = Gate::new();
    let sink = GatedSink::new(gate.clone());
    let source = VecSource::new((0..1_000u64).collect(), acks.clone());
    let emitted = source.emitted();
    let mut g = Graph::builder("stuck");
    g.source("src", source)
        .via(StageSpec::new("a", sluicegate_core::map(|x: u64| x)).capacity(5))
        .to(StageSpec::new("sink", sink.clone()).capacity(3));
    let running = g.build().expect("valid").start().await.expect("starts");
    within(LIMIT, "the sink to hold", gate.wait_for_waiting(1)).await;
    quiesce().await;
    assert_eq!(emitted.load(Ordering::SeqCst), 8);

    let started = tokio::time::Instant::now();
    let report = within(LIMIT, "shutdown", running.shutdown(Duration::from_secs(2))).await;
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "waited exactly the deadline"
    );
    assert!(!report.drained);
    assert_eq!(report.abandoned, 8, "{report:?}");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    // The 8 in the graph, plus the one the source held while blocked.
    assert_eq!(acks.resolved(), 9);
    assert_eq!(
        acks.delivered(),
        0,
        "nothing abandoned may count as delivered"
    );
    for (offset, outcomes) in acks.outcomes() {
        assert_eq!(outcomes.len(), 1, "offset {offset}");
        match &outcomes[0] {
            Outcome::Failed(e) => {
                assert_eq!(e.kind(), FailureKind::Abandoned, "offset {offset}: {e}")
            }
            other => panic!("offset {offset} resolved as {other}"),
        }
    }
    assert!(sink.collected().is_empty());
}

/// Failed items reach the dead-letter route before the graph finishes.
#[tokio::test(start_paused = true)]
async fn dead_letters_drain_before_the_graph_finishes() {
    let acks = AckLog::new();
    let letters = CollectSink::<sluicegate_core::DeadLetter>::new();
    let good = CollectSink::new();
    let mut g = Graph::builder("dlq-drain");
    g.dead_letters(StageSpec::new("dlq", letters.clone()).capacity(2));
    g.source("src", VecSource::new((0..50u64).collect(), acks.clone()))
        .via(StageSpec::new(
            "odd-fails",
            sluicegate_core::try_map(|x: u64| if x % 2 == 1 { Err("odd") } else { Ok(x) }),
        ))
        .to(StageSpec::new("sink", good.clone()));
    let report = within(
        LIMIT,
        "the graph",
        g.build()
            .expect("valid")
            .start()
            .await
            .expect("starts")
            .wait(),
    )
    .await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(50);
    assert_eq!(acks.delivered(), 25);
    assert_eq!(acks.dead_lettered(), 25);
    assert_eq!(good.len(), 25);
    let letters = letters.items();
    assert_eq!(letters.len(), 25);
    assert!(
        letters
            .iter()
            .all(|d| d.error.stage() == "odd-fails" && d.error.message() == "odd")
    );
}

/// Dropping a running graph (no wait, no shutdown) abandons what is inside:
/// every accepted envelope resolves as failed, none leaks, none is delivered.
#[tokio::test(start_paused = true)]
async fn dropping_a_running_graph_abandons_without_leaks() {
    let acks = AckLog::new();
    let gate = Gate::new();
    let sink = GatedSink::new(gate.clone());
    let source = VecSource::new((0..1_000u64).collect(), acks.clone());
    let emitted = source.emitted();
    let mut g = Graph::builder("dropped");
    g.source("src", source)
        .via(StageSpec::new("a", sluicegate_core::map(|x: u64| x)).capacity(4))
        .to(StageSpec::new("sink", sink.clone()).capacity(2));
    let running = g.build().expect("valid").start().await.expect("starts");
    within(LIMIT, "the sink to hold", gate.wait_for_waiting(1)).await;
    quiesce().await;
    let leaked_before = sluicegate_core::ack::leaked_total();
    drop(running);
    within(
        LIMIT,
        "every accepted item to resolve",
        acks.wait_for(emitted.load(Ordering::SeqCst) as usize + 1),
    )
    .await;
    assert_eq!(
        acks.resolved(),
        7,
        "6 in the graph and 1 in the source's hand"
    );
    assert_eq!(acks.delivered(), 0);
    assert_eq!(acks.failed(), 7);
    assert_eq!(sluicegate_core::ack::leaked_total(), leaked_before);
}

#[tokio::test(start_paused = true)]
async fn run_until_ends_with_the_sources_when_stop_never_comes() {
    let acks = AckLog::new();
    let sink = CollectSink::new();
    let mut g = Graph::builder("to_the_end");
    g.source("src", VecSource::new((0..500u64).collect(), acks.clone()))
        .to(StageSpec::new("sink", sink.clone()).capacity(8));
    let running = g.build().expect("valid").start().await.expect("starts");
    let never = std::future::pending::<()>();
    let report = within(
        LIMIT,
        "the graph to end",
        running.run_until(never, Duration::from_secs(1)),
    )
    .await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(sink.len(), 500);
    acks.assert_each_once(500);
}

#[tokio::test(start_paused = true)]
async fn run_until_drains_when_stop_completes() {
    let acks = AckLog::new();
    let gate = Gate::new();
    let sink = GatedSink::new(gate.clone());
    let source = VecSource::new((0..1_000u64).collect(), acks.clone());
    let emitted = source.emitted();
    let mut g = Graph::builder("stopped");
    g.source("src", source)
        .to(StageSpec::new("sink", sink.clone()).capacity(4));
    let running = g.build().expect("valid").start().await.expect("starts");
    let stop = {
        let gate = gate.clone();
        async move {
            gate.wait_for_waiting(1).await;
            // The stop request arrives; the gate opens so the drain can finish.
            gate.open_all();
        }
    };
    let report = within(
        LIMIT,
        "run_until to drain",
        running.run_until(stop, Duration::from_secs(60)),
    )
    .await;
    assert!(report.is_clean(), "{report:?}");
    let emitted = emitted.load(Ordering::SeqCst) as usize;
    assert!(emitted < 1_000, "the source should have stopped early");
    assert_eq!(
        acks.delivered(),
        emitted,
        "everything accepted was delivered"
    );
    acks.assert_each_once(emitted as i64);
}
