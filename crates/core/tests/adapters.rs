//! The closure adapters, and CPU work on the blocking pool with a bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use sluicegate_core::testing::{AckLog, CollectSink, VecSource, run_to_end, within};
use sluicegate_core::{
    FailureKind, Graph, Origin, Outcome, Outputs, StageSpec, blocking, filter, flat_map, map,
    try_map,
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
    let report = run_to_end(g, LIMIT).await;
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

/// `blocking(n, f)` runs `n` at once without being told twice: no
/// `.concurrency(n)`, no `.capacity(..)`. The closures wait for each other
/// until `n` run at once (at most 5 s each): with the stage one at a time,
/// as before it said its own concurrency, the most seen at once is 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_sets_its_own_concurrency() {
    const N: usize = 3;
    // (calls here now, calls arrived in all)
    let meet = Arc::new((
        std::sync::Mutex::new((0usize, 0usize)),
        std::sync::Condvar::new(),
    ));
    let max = Arc::new(AtomicUsize::new(0));
    let work = {
        let (meet, max) = (meet.clone(), max.clone());
        blocking(N, move |x: u64| {
            let (state, changed) = &*meet;
            let mut s = state.lock().expect("lock");
            s.0 += 1;
            s.1 += 1;
            max.fetch_max(s.0, Ordering::SeqCst);
            // This call's round of N ends when the N-th of it arrives.
            let round_end = s.1.div_ceil(N) * N;
            changed.notify_all();
            let (mut s, _) = changed
                .wait_timeout_while(s, Duration::from_secs(5), |s| s.1 < round_end)
                .expect("lock");
            s.0 -= 1;
            Ok::<_, std::convert::Infallible>(x)
        })
    };
    let spec = StageSpec::new("cpu", work);
    let acks = AckLog::new();
    let sink = CollectSink::new();
    let mut g = Graph::builder("cpu-hint");
    g.source(
        "src",
        VecSource::new((0..(2 * N as u64)).collect(), acks.clone()),
    )
    .via(spec)
    .to(StageSpec::new("sink", sink.clone()));
    // Builds only if the mailbox grew to the concurrency.
    let report = run_to_end(g, LIMIT).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(max.load(Ordering::SeqCst), N, "calls at once");
    acks.assert_each_once(2 * N as i64);
}

/// A hint larger than the default mailbox grows the mailbox with it, and an
/// explicit concurrency still wins.
#[test]
fn the_hint_sizes_the_mailbox_and_explicit_settings_win() {
    let big = StageSpec::new(
        "big",
        blocking(500, |x: u64| Ok::<_, std::convert::Infallible>(x)),
    );
    let mut g = Graph::builder("hint");
    g.source("src", VecSource::new(vec![1u64], AckLog::new()))
        .via(big)
        .to(StageSpec::new("sink", CollectSink::new()));
    assert!(
        g.build().is_ok(),
        "a concurrency of 500 got a mailbox of 500"
    );
    let small = StageSpec::new(
        "small",
        blocking(500, |x: u64| Ok::<_, std::convert::Infallible>(x)),
    )
    .capacity(10);
    let mut g = Graph::builder("hint-small");
    g.source("src", VecSource::new(vec![1u64], AckLog::new()))
        .via(small)
        .to(StageSpec::new("sink", CollectSink::new()));
    let err = g
        .build()
        .err()
        .expect("capacity 10 below the concurrency 500");
    assert!(
        err.to_string().contains("below the concurrency 500"),
        "{err}"
    );
    let explicit = StageSpec::new(
        "explicit",
        blocking(500, |x: u64| Ok::<_, std::convert::Infallible>(x)),
    )
    .concurrency(2)
    .capacity(10);
    let mut g = Graph::builder("hint-explicit");
    g.source("src", VecSource::new(vec![1u64], AckLog::new()))
        .via(explicit)
        .to(StageSpec::new("sink", CollectSink::new()));
    assert!(
        g.build().is_ok(),
        "an explicit concurrency of 2 fits a mailbox of 10"
    );
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

/// The `Stream` shorthands build the same stages as their `StageSpec` forms:
/// each a named node with the defaults, items through in order, a filtered
/// item dropped, an `Err` failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_shorthands_build_named_stages() {
    let acks = AckLog::new();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut g = Graph::builder("shorthands");
    g.source(
        "src",
        VecSource::new(vec!["1", "0", "x", "4", "5"], acks.clone()),
    )
    .try_map("parse", |s: &str| s.parse::<u64>())
    .filter("non-zero", |n: &u64| *n > 0)
    .map("price", |n: u64| n * 100)
    .then("label", |cents: u64| async move {
        Ok::<_, std::convert::Infallible>(format!("{cents} cents"))
    })
    .sink("out", {
        let seen = seen.clone();
        move |label: String| {
            seen.lock().expect("lock").push(label);
            std::future::ready(Ok::<_, std::convert::Infallible>(()))
        }
    });
    let report = run_to_end(g, LIMIT).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        *seen.lock().expect("lock"),
        vec!["100 cents", "400 cents", "500 cents"]
    );
    acks.assert_each_once(5);
    assert_eq!((acks.delivered(), acks.dropped(), acks.failed()), (3, 1, 1));
    let names: Vec<&str> = report
        .snapshot
        .stages
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    for name in ["parse", "non-zero", "price", "label", "out"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let price = report.snapshot.stages.iter().find(|s| s.name == "price");
    assert_eq!(price.map(|s| (s.concurrency, s.items_in)), Some((1, 3)));
}

/// A `SyncStage` is a `Stage`: its outputs go on, an `Err` fails that item,
/// and an error it calls fatal stops the graph (the blanket impl carries
/// `is_fatal` over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_stage_runs_as_a_stage_with_its_error_rules() {
    struct Halve;
    impl sluicegate_core::SyncStage for Halve {
        type In = u64;
        type Out = u64;
        type Error = String;
        fn process_sync(&self, n: u64, _origin: &Origin) -> Result<Outputs<u64>, String> {
            match n {
                99 => Err("99 is the end".into()),
                n if n % 2 == 1 => Err(format!("{n} is odd")),
                n => Ok(Outputs::one(n / 2)),
            }
        }
        fn is_fatal(&self, error: &String) -> bool {
            error.contains("the end")
        }
    }
    let acks = AckLog::new();
    let sink = CollectSink::new();
    let mut g = Graph::builder("sync");
    g.source("src", VecSource::new(vec![2u64, 3, 4], acks.clone()))
        .via(StageSpec::new("halve", Halve))
        .to(StageSpec::new("sink", sink.clone()));
    let report = run_to_end(g, LIMIT).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(sink.items(), vec![1, 2]);
    acks.assert_each_once(3);
    assert!(matches!(acks.outcome(1), Some(Outcome::Failed(e)) if e.message() == "3 is odd"));

    let acks = AckLog::new();
    let mut g = Graph::builder("sync-fatal");
    g.source("src", VecSource::new(vec![2u64, 99], acks.clone()))
        .via(StageSpec::new("halve", Halve))
        .to(StageSpec::new("sink", CollectSink::new()));
    let report = run_to_end(g, LIMIT).await;
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(
        report.errors[0].to_string().contains("99 is the end"),
        "{report:?}"
    );
}
