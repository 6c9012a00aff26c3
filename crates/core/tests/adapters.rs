//! The closure adapters, and CPU work on the blocking pool with a bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use sluicegate_core::testing::{AckLog, CollectSink, VecSource, within};
use sluicegate_core::{
    FailureKind, Graph, Outcome, StageSpec, blocking, filter, flat_map, map, try_map,
};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn map_filter_flat_map_try_map() {
    let acks = AckLog::new();
    let sink = CollectSink::new();
    let mut g = Graph::builder("adapters");
    g.source("src", VecSource::new((0..10u64).collect(), acks.clone()))
        .via(StageSpec::new("map", map(|x: u64| x * 10)))
        .via(StageSpec::new("filter", filter(|x: &u64| *x != 30)))
        .via(StageSpec::new(
            "flat_map",
            flat_map(|x: u64| if x == 50 { vec![] } else { vec![x, x + 1] }),
        ))
        .via(StageSpec::new(
            "try_map",
            try_map(|x: u64| if x == 71 { Err("71 is bad") } else { Ok(x) }),
        ))
        .to(StageSpec::new("sink", sink.clone()));
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
    assert_eq!(
        sink.items(),
        vec![0, 1, 10, 11, 20, 21, 40, 41, 60, 61, 70, 80, 81, 90, 91]
    );
    acks.assert_each_once(10);
    // 30 filtered, 50 flat-mapped to nothing: both dropped as filtered.
    assert_eq!(acks.dropped(), 2);
    // 7 split into 70 and 71; 71 failed, so the origin hears the worst: failed.
    assert!(matches!(acks.outcome(7), Some(Outcome::Failed(e)) if e.message() == "71 is bad"));
    assert_eq!(acks.delivered(), 7);
}

/// At most `limit` closures run on the blocking pool at once. The closures
/// meet at a barrier of `limit`: a smaller bound would deadlock (and time
/// out), a larger one would be seen in `max`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_runs_on_the_pool_with_a_bound() {
    const LIMIT_IN_FLIGHT: usize = 3;
    let running = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(LIMIT_IN_FLIGHT));
    let work = {
        let (running, max, barrier) = (running.clone(), max.clone(), barrier.clone());
        blocking(LIMIT_IN_FLIGHT, move |x: u64| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            barrier.wait();
            running.fetch_sub(1, Ordering::SeqCst);
            assert!(x != 7, "hash of 7 overflowed");
            Ok::<_, std::convert::Infallible>(x * x)
        })
    };
    let acks = AckLog::new();
    let sink = CollectSink::new();
    let mut g = Graph::builder("cpu");
    g.source("src", VecSource::new((0..30u64).collect(), acks.clone()))
        .via(StageSpec::new("hash", work).capacity(16).concurrency(8))
        .to(StageSpec::new("sink", sink.clone()));
    let report = within(
        LIMIT,
        "30 items through a barrier of 3 (a smaller bound deadlocks)",
        async {
            g.build()
                .expect("valid")
                .start()
                .await
                .expect("starts")
                .wait()
                .await
        },
    )
    .await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(max.load(Ordering::SeqCst), LIMIT_IN_FLIGHT);
    acks.assert_each_once(30);
    assert_eq!(sink.len(), 29);
    assert!(
        matches!(acks.outcome(7), Some(Outcome::Failed(e)) if e.kind() == FailureKind::Panic && e.message().contains("hash of 7"))
    );
}
