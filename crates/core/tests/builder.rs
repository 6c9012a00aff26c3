//! The builder is `Send`: a graph can be built inside `tokio::spawn`, with
//! `.await`s between the builder's calls (before, an `Rc<RefCell>` inside the
//! builder made such a task fail to compile).

use std::time::Duration;

use sluicegate_core::testing::{CollectSink, run_to_end};
use sluicegate_core::{AckCounter, Graph, GraphBuilder, StageSpec, Stream, sources};

const LIMIT: Duration = Duration::from_secs(30);

fn assert_send<T: Send>() {}

#[test]
fn builder_and_streams_are_send() {
    assert_send::<GraphBuilder>();
    assert_send::<Stream<u64>>();
}

/// Every `.await` between two builder calls is a point where a
/// multi-thread runtime may move the task to another worker thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_is_built_across_awaits_on_a_spawned_task() {
    let (config_tx, config_rx) = tokio::sync::oneshot::channel::<u64>();
    let outcomes = AckCounter::new();
    let sink = CollectSink::new();
    let doubled_sink = CollectSink::new();
    let task = {
        let outcomes = outcomes.clone();
        let sink = sink.clone();
        let doubled = doubled_sink.clone();
        tokio::spawn(async move {
            let mut g = Graph::builder("spawned");
            let numbers = g.source("numbers", sources::from_iter(1..=100u64).acks(outcomes));
            // The factor arrives while the builder and a stream are alive.
            let factor = config_rx.await.expect("the factor is sent");
            tokio::task::yield_now().await;
            let [twice, all] = numbers
                .map("scale", move |n: u64| n * factor)
                .broadcast::<2>();
            twice
                .map("double", |n: u64| n * 2)
                .to(StageSpec::new("collect doubled", doubled));
            tokio::task::yield_now().await;
            all.to(StageSpec::new("collect", sink));
            run_to_end(g, LIMIT).await
        })
    };
    config_tx.send(3).expect("the task waits for the factor");
    let report = task.await.expect("the spawned build and run do not panic");
    assert!(report.is_clean(), "the graph ends cleanly: {report:?}");
    let mut got = sink.items();
    got.sort_unstable();
    assert_eq!(got, (1..=100u64).map(|n| n * 3).collect::<Vec<_>>());
    let mut got = doubled_sink.items();
    got.sort_unstable();
    assert_eq!(got, (1..=100u64).map(|n| n * 6).collect::<Vec<_>>());
    assert_eq!(outcomes.delivered(), 100);
    assert_eq!(outcomes.resolved(), 100);
}
