//! Ordering under concurrency: per-key order and preserved input order,
//! property-tested with random amounts of work per item on a multi-thread
//! runtime in real time, so items really run at the same time on different
//! threads and finish out of order.

mod common;

use common::runtime;
use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use sluicegate_core::testing::{AckLog, CollectSink, VecSource, within};
use sluicegate_core::{Graph, Order, StageSpec, then};

/// (key, sequence within the whole input, work: a delay in ms under the
/// paused clock, or busy microseconds and yields in real time)
type Item = (u8, usize, u64);

/// Real work of `units`: that many 20 µs spins, each followed by a yield.
async fn work(units: u64) {
    for _ in 0..units {
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_micros(20) {
            std::hint::spin_loop();
        }
        tokio::task::yield_now().await;
    }
}

async fn run(items: Vec<Item>, workers: usize, order: Order) -> (Vec<Item>, AckLog) {
    run_with(items, workers, order, false).await
}

async fn run_with(
    items: Vec<Item>,
    workers: usize,
    order: Order,
    virtual_time: bool,
) -> (Vec<Item>, AckLog) {
    let acks = AckLog::new();
    let sink = CollectSink::new();
    let n = items.len();
    let slow = then(move |item: Item| async move {
        if virtual_time {
            tokio::time::sleep(Duration::from_millis(item.2)).await;
        } else {
            work(item.2).await;
        }
        Ok::<_, std::convert::Infallible>(item)
    });
    let mut spec = StageSpec::new("slow", slow)
        .capacity(workers * 2)
        .concurrency(workers)
        .order(order);
    if order == Order::PerKey {
        spec = spec.key_by(|item: &Item, _| Some(u64::from(item.0)));
    }
    let mut g = Graph::builder("ordering");
    g.source("src", VecSource::new(items, acks.clone()))
        .via(spec)
        .to(StageSpec::new("sink", sink.clone()));
    let running = g.build().expect("valid").start().await.expect("starts");
    let report = within(
        Duration::from_secs(60),
        "the graph to finish",
        running.wait(),
    )
    .await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(sink.len(), n);
    (sink.items(), acks)
}

fn items_strategy() -> impl Strategy<Value = Vec<Item>> {
    prop::collection::vec((0u8..5, 0u64..20), 1..80).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (k, d))| (k, i, d))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn per_key_order_holds_under_concurrency(items in items_strategy(), workers in 2usize..6) {
        let n = items.len();
        let (out, acks) = runtime().block_on(run(items, workers, Order::PerKey));
        let mut last: HashMap<u8, usize> = HashMap::new();
        for (key, seq, _) in &out {
            if let Some(prev) = last.insert(*key, *seq) {
                prop_assert!(prev < *seq, "key {key}: {seq} came out after {prev}");
            }
        }
        acks.assert_each_once(n as i64);
        prop_assert_eq!(acks.delivered(), n);
    }

    #[test]
    fn preserve_mode_outputs_input_order(items in items_strategy(), workers in 2usize..6) {
        let n = items.len();
        let (out, acks) = runtime().block_on(run(items, workers, Order::Preserve));
        let seqs: Vec<usize> = out.iter().map(|i| i.1).collect();
        prop_assert_eq!(seqs, (0..n).collect::<Vec<_>>());
        acks.assert_each_once(n as i64);
        prop_assert_eq!(acks.delivered(), n);
    }
}

/// Different keys really do run in parallel: four keys, four workers, each
/// item 100 ms: the whole run takes 100 ms of virtual time per item per key.
#[tokio::test(start_paused = true)]
async fn different_keys_run_in_parallel() {
    let items: Vec<Item> = (0..16).map(|i| ((i % 4) as u8, i, 100)).collect();
    let start = tokio::time::Instant::now();
    let (out, _) = run_with(items, 4, Order::PerKey, true).await;
    assert_eq!(out.len(), 16);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(400),
        "4 items per key, 100 ms each, keys in parallel"
    );
}

/// Unordered mode with concurrency still delivers everything exactly once.
#[tokio::test(start_paused = true)]
async fn unordered_delivers_everything_once() {
    let items: Vec<Item> = (0..50).map(|i| (0, i, (i as u64 * 7) % 13)).collect();
    let (out, acks) = run_with(items, 3, Order::Unordered, true).await;
    let mut seqs: Vec<usize> = out.iter().map(|i| i.1).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..50).collect::<Vec<_>>());
    acks.assert_each_once(50);
}

/// Items polled on the stage's own task (`spawn_items(false)`, no task per
/// item) still run at the same time (16 items of 70 to 100 ms, 4 at once:
/// 400 ms of virtual time), keep the input order when asked, and an item
/// that panics fails alone, dead-lettered with its message.
#[tokio::test(start_paused = true)]
async fn items_on_the_stages_own_task_run_at_once_in_order() {
    let acks = AckLog::new();
    let sink = CollectSink::new();
    let dead = CollectSink::<sluicegate_core::DeadLetter>::new();
    let slow = then(|i: u64| async move {
        tokio::time::sleep(Duration::from_millis(100 - (i % 4) * 10)).await;
        assert!(i != 5, "item {i} panics");
        Ok::<_, std::convert::Infallible>(i)
    });
    let mut g = Graph::builder("inline");
    g.dead_letters(StageSpec::new("dlq", dead.clone()));
    g.source("src", VecSource::new((0..16u64).collect(), acks.clone()))
        .via(
            StageSpec::new("slow", slow)
                .capacity(8)
                .concurrency(4)
                .order(Order::Preserve)
                .spawn_items(false),
        )
        .to(StageSpec::new("sink", sink.clone()));
    let start = tokio::time::Instant::now();
    let running = g.build().expect("valid").start().await.expect("starts");
    let report = within(Duration::from_secs(60), "the graph", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(start.elapsed(), Duration::from_millis(400));
    let want: Vec<u64> = (0..16).filter(|i| *i != 5).collect();
    assert_eq!(sink.items(), want);
    acks.assert_each_once(16);
    assert_eq!((acks.delivered(), acks.dead_lettered()), (15, 1));
    let letters = dead.items();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].error.kind(), sluicegate_core::FailureKind::Panic);
    assert!(
        letters[0].error.message().contains("item 5 panics"),
        "{:?}",
        letters[0].error
    );
}
