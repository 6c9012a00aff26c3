//! Acknowledgement accounting, property-tested: over random graphs (chains
//! of random stages, fan-out, routing and merging, random capacities,
//! concurrency and overflow policies) and random per-item outcomes, every
//! envelope resolves exactly once, the origin hears about each one, and the
//! outcome matches what happened to it.

use std::time::Duration;

use proptest::prelude::*;
use sluicegate_core::testing::{AckLog, CollectSink, VecSource, within};
use sluicegate_core::{
    DeadLetter, Graph, Order, Outcome, Overflow, StageSpec, Stream, flat_map, map, then, try_map,
};

#[derive(Debug, Clone)]
enum Kind {
    Map,
    /// Drops multiples of the divisor.
    Filter(u64),
    /// Emits `x % n` copies (zero for some inputs: filtered).
    FlatMap(u64),
    /// Fails multiples of the divisor.
    Fail(u64),
    /// Panics on multiples of the divisor.
    Panic(u64),
    /// Sleeps (virtual time) a few ms.
    Slow,
}

#[derive(Debug, Clone)]
struct StageCfg {
    kind: Kind,
    capacity: usize,
    concurrency: usize,
    order: Order,
    overflow: Overflow,
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Chain,
    /// Broadcast to two sinks after the chain.
    Broadcast,
    /// Route even/odd into two branches, then merge them again.
    RouteMerge,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Map),
        (2u64..6).prop_map(Kind::Filter),
        (1u64..4).prop_map(Kind::FlatMap),
        (2u64..7).prop_map(Kind::Fail),
        (3u64..9).prop_map(Kind::Panic),
        Just(Kind::Slow),
    ]
}

fn stage_cfg() -> impl Strategy<Value = StageCfg> {
    (
        kind(),
        1usize..6,
        1usize..4,
        prop_oneof![Just(Order::Unordered), Just(Order::Preserve), Just(Order::PerKey)],
        prop_oneof![4 => Just(Overflow::Block), 1 => Just(Overflow::DropNewest), 1 => Just(Overflow::DropOldest)],
    )
        .prop_map(|(kind, capacity, concurrency, order, overflow)| StageCfg {
            kind,
            capacity: capacity.max(concurrency),
            concurrency,
            order,
            overflow,
        })
}

fn apply(stream: Stream<u64>, i: usize, cfg: &StageCfg) -> Stream<u64> {
    let name = format!("s{i}");
    macro_rules! spec {
        ($stage:expr) => {
            StageSpec::new(name, $stage)
                .capacity(cfg.capacity)
                .concurrency(cfg.concurrency)
                .order(cfg.order)
                .overflow(cfg.overflow)
        };
    }
    match cfg.kind {
        Kind::Map => stream.via(spec!(map(|x: u64| x.wrapping_mul(3)))),
        Kind::Filter(d) => stream.via(spec!(sluicegate_core::filter(move |x: &u64| x % d != 0))),
        Kind::FlatMap(n) => stream.via(spec!(flat_map(
            move |x: u64| (0..(x % (n + 1))).map(move |k| x + k)
        ))),
        Kind::Fail(d) => stream.via(spec!(try_map(move |x: u64| if x % d == 0 {
            Err(format!("{x} rejected"))
        } else {
            Ok(x)
        }))),
        Kind::Panic(d) => stream.via(spec!(map(move |x: u64| {
            assert!(x % d != 0, "stage refuses {x}");
            x
        }))),
        Kind::Slow => stream.via(spec!(then(|x: u64| async move {
            tokio::time::sleep(Duration::from_millis(x % 5)).await;
            Ok::<_, std::convert::Infallible>(x)
        }))),
    }
}

async fn run(n: usize, stages: Vec<StageCfg>, shape: Shape, with_dlq: bool) -> (AckLog, bool) {
    let acks = AckLog::new();
    let mut g = Graph::builder("random");
    if with_dlq {
        g.dead_letters(StageSpec::new("dlq", CollectSink::<DeadLetter>::new()).capacity(2));
    }
    let mut stream = g.source("src", VecSource::new((0..n as u64).collect(), acks.clone()));
    for (i, cfg) in stages.iter().enumerate() {
        stream = apply(stream, i, cfg);
    }
    match shape {
        Shape::Chain => stream.to(StageSpec::new("sink", CollectSink::new()).capacity(3)),
        Shape::Broadcast => {
            let mut branches = stream.broadcast(2);
            let b = branches.pop().expect("two branches");
            let a = branches.pop().expect("two branches");
            a.to(StageSpec::new("sink-a", CollectSink::new()).capacity(2));
            b.via(
                StageSpec::new(
                    "b-fail",
                    try_map(|x: u64| if x % 4 == 1 { Err("b rejects") } else { Ok(x) }),
                )
                .capacity(2),
            )
            .to(StageSpec::new("sink-b", CollectSink::new()).capacity(1));
        }
        Shape::RouteMerge => {
            let (even, odd) = stream.route(|x: &u64| x % 2 == 0);
            let even = even.via(StageSpec::new("even", map(|x: u64| x + 2)).capacity(2));
            let odd = odd.via(
                StageSpec::new("odd", flat_map(|x: u64| vec![x, x]))
                    .capacity(3)
                    .concurrency(2),
            );
            Stream::merge(vec![even, odd])
                .to(StageSpec::new("sink", CollectSink::new()).capacity(2));
        }
    }
    let running = g.build().expect("valid").start().await.expect("starts");
    let report = within(
        Duration::from_secs(36_000),
        "the graph to finish",
        running.wait(),
    )
    .await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    (acks, report.is_clean())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_envelope_resolves_exactly_once(
        n in 1usize..120,
        stages in prop::collection::vec(stage_cfg(), 1..5),
        shape in prop_oneof![Just(Shape::Chain), Just(Shape::Broadcast), Just(Shape::RouteMerge)],
        with_dlq in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime");
        let leaked_before = sluicegate_core::ack::leaked_total();
        let (acks, clean) = rt.block_on(run(n, stages.clone(), shape, with_dlq));
        prop_assert!(clean);
        acks.assert_each_once(n as i64);
        prop_assert_eq!(sluicegate_core::ack::leaked_total(), leaked_before, "an acknowledgement leaked");
        // Outcomes match what can happen in this graph.
        let can_fail = stages.iter().any(|s| matches!(s.kind, Kind::Fail(_) | Kind::Panic(_)))
            || matches!(shape, Shape::Broadcast);
        let can_drop = stages.iter().any(|s| matches!(s.kind, Kind::Filter(_) | Kind::FlatMap(_)) || s.overflow != Overflow::Block);
        for (offset, outcomes) in acks.outcomes() {
            match &outcomes[0] {
                Outcome::Delivered => {}
                Outcome::Dropped(_) => prop_assert!(can_drop, "offset {} dropped in a graph that cannot drop", offset),
                Outcome::DeadLettered(_) => prop_assert!(can_fail && with_dlq, "offset {} dead-lettered", offset),
                Outcome::Failed(e) => prop_assert!(can_fail && !with_dlq, "offset {} failed: {}", offset, e),
            }
        }
        if !can_fail && !can_drop {
            prop_assert_eq!(acks.delivered(), n);
        }
    }
}
