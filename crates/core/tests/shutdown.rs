//! Graceful shutdown: drain with nothing lost; past the deadline, what is
//! left is abandoned and reported as failed, never as delivered.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Held, start_held};
use sluicegate_core::testing::{
    AckLog, CollectSink, Gate, GatedSink, VecSource, run_to_end, within,
};
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
    let Held {
        acks,
        sink,
        emitted,
        running,
    } = start_held("stuck", 5, 3, LIMIT).await;
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
    let report = run_to_end(g, LIMIT).await;
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
    let Held {
        acks,
        emitted,
        running,
        ..
    } = start_held("dropped", 4, 2, LIMIT).await;
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

/// A stage that never finishes its first call (a store stuck behind a lock).
fn stuck() -> impl sluicegate_core::Stage<In = u64, Out = u64> {
    then(|_: u64| async {
        std::future::pending::<()>().await;
        Ok::<u64, std::convert::Infallible>(0)
    })
}

/// Starts source → store (fatal on 3) → stuck (never returns; room for the
/// items before the fatal one, so the store reaches it) → sink, with drain
/// deadline `deadline`; returns the source's acknowledgements and the graph.
async fn start_fatal_then_stuck(deadline: Duration) -> (AckLog, sluicegate_core::RunningGraph) {
    let acks = AckLog::new();
    let mut g = Graph::builder("fatal-stuck");
    g.drain_deadline(deadline);
    g.source("src", VecSource::new((0..100u64).collect(), acks.clone()))
        .via(
            StageSpec::new(
                "store",
                sluicegate_core::try_map(|x: u64| {
                    if x == 3 {
                        Err(sluicegate_core::Fatal::new("credentials rejected"))
                    } else {
                        Ok(x)
                    }
                }),
            )
            .capacity(1),
        )
        .via(StageSpec::new("stuck", stuck()).capacity(8))
        .to(StageSpec::new("sink", CollectSink::new()));
    let running = g.build().expect("valid").start().await.expect("starts");
    (acks, running)
}

fn assert_fatal_then_abandoned(report: &sluicegate_core::Report, acks: &AckLog) {
    assert!(!report.drained, "the stuck stage cannot drain: {report:?}");
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.to_string().contains("credentials rejected")),
        "{:?}",
        report.errors
    );
    assert!(report.abandoned >= 1, "{report:?}");
    let n = acks.outcomes().len() as i64;
    acks.assert_each_once(n);
    assert_eq!(acks.delivered(), 0, "nothing passed the stuck stage");
    match acks.outcome(0) {
        Some(Outcome::Failed(e)) => assert_eq!(e.kind(), FailureKind::Abandoned, "{e}"),
        other => panic!("the stuck item resolved as {other:?}"),
    }
    assert!(matches!(acks.outcome(3), Some(Outcome::Failed(e)) if e.kind() == FailureKind::Fatal));
}

/// A fatal error starts the drain deadline: `wait` returns at the deadline
/// although a stage is stuck, and what it held is abandoned, not delivered.
#[tokio::test(start_paused = true)]
async fn a_fatal_error_starts_the_drain_deadline_in_wait() {
    let (acks, running) = start_fatal_then_stuck(Duration::from_secs(2)).await;
    let started = tokio::time::Instant::now();
    let report = within(
        LIMIT,
        "wait() to return after a fatal error with a stage stuck",
        running.wait(),
    )
    .await;
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "the drain deadline, counted from the fatal error"
    );
    assert_fatal_then_abandoned(&report, &acks);
}

/// The same under `run_until`, whose own deadline applies.
#[tokio::test(start_paused = true)]
async fn a_fatal_error_starts_the_drain_deadline_in_run_until() {
    let (acks, running) = start_fatal_then_stuck(Duration::from_secs(3600)).await;
    let started = tokio::time::Instant::now();
    let report = within(
        LIMIT,
        "run_until to return after a fatal error with a stage stuck",
        running.run_until(std::future::pending(), Duration::from_secs(5)),
    )
    .await;
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_fatal_then_abandoned(&report, &acks);
}
