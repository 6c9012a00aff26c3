//! Acknowledgement accounting, property-tested against an outcome model.
//!
//! Random graphs (chains of random stages, fan-out, routing and merging,
//! random capacities, concurrency and orders) run random inputs on a
//! multi-thread runtime in real time, so per-item tasks and the stages
//! really overlap. For each input a model computes the one outcome it must
//! get (what each stage does to that value, the worst over fan-out parts)
//! and the test requires exactly that outcome, resolved exactly once, with
//! no acknowledgement leaked.
//!
//! Drop policies make which items are dropped a matter of timing, so they
//! have a property of their own: the outcome is the model's, or a drop.

mod common;

use common::runtime;
use std::time::Duration;

use proptest::prelude::*;
use sluicegate_core::testing::{AckLog, CollectSink, VecSource, within};
use sluicegate_core::{
    DeadLetter, Graph, Order, Outcome, Overflow, StageSpec, Stream, flat_map, map, then, try_map,
};

const LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
enum Kind {
    Map,
    /// Drops multiples of the divisor.
    Filter(u64),
    /// Emits `x % (n + 1)` copies (zero for some inputs: filtered).
    FlatMap(u64),
    /// Fails multiples of the divisor.
    Fail(u64),
    /// Panics on multiples of the divisor.
    Panic(u64),
    /// Yields to the scheduler a few times, so items finish out of order.
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
    /// Broadcast to two branches after the chain; branch b fails `x % 4 == 1`.
    Broadcast,
    /// Route even/odd into two branches, then merge them again.
    RouteMerge,
}

/// The outcome an input must get, ordered by severity like [`Outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Expect {
    Delivered,
    Dropped,
    DeadLettered,
    Failed,
}

impl Expect {
    fn of(outcome: &Outcome) -> Expect {
        match outcome {
            Outcome::Delivered => Expect::Delivered,
            Outcome::Dropped(_) => Expect::Dropped,
            Outcome::DeadLettered(_) => Expect::DeadLettered,
            Outcome::Failed(_) => Expect::Failed,
        }
    }
}

/// The model: what the graph must do with `x` from stage `stages[0]` on.
fn expect(x: u64, stages: &[StageCfg], shape: Shape, dlq: bool) -> Expect {
    let failed = if dlq {
        Expect::DeadLettered
    } else {
        Expect::Failed
    };
    let Some((cfg, rest)) = stages.split_first() else {
        return match shape {
            Shape::Broadcast if x % 4 == 1 => failed,
            _ => Expect::Delivered,
        };
    };
    match cfg.kind {
        Kind::Map => expect(x.wrapping_mul(3), rest, shape, dlq),
        Kind::Filter(d) if x % d == 0 => Expect::Dropped,
        Kind::FlatMap(n) => (0..x % (n + 1))
            .map(|k| expect(x + k, rest, shape, dlq))
            .max()
            .unwrap_or(Expect::Dropped),
        Kind::Fail(d) | Kind::Panic(d) if x % d == 0 => failed,
        Kind::Filter(_) | Kind::Fail(_) | Kind::Panic(_) | Kind::Slow => {
            expect(x, rest, shape, dlq)
        }
    }
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

fn stage_cfg(overflow: BoxedStrategy<Overflow>) -> impl Strategy<Value = StageCfg> {
    (
        kind(),
        1usize..6,
        1usize..4,
        prop_oneof![
            Just(Order::Unordered),
            Just(Order::Preserve),
            Just(Order::PerKey)
        ],
        overflow,
    )
        .prop_map(|(kind, capacity, concurrency, order, overflow)| StageCfg {
            kind,
            capacity: capacity.max(concurrency),
            concurrency,
            order,
            overflow,
        })
}

fn blocking_stage() -> impl Strategy<Value = StageCfg> {
    stage_cfg(Just(Overflow::Block).boxed())
}

fn any_stage() -> impl Strategy<Value = StageCfg> {
    stage_cfg(
        prop_oneof![4 => Just(Overflow::Block), 1 => Just(Overflow::DropNewest), 1 => Just(Overflow::DropOldest)]
            .boxed(),
    )
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Chain),
        Just(Shape::Broadcast),
        Just(Shape::RouteMerge)
    ]
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
            for _ in 0..x % 5 {
                tokio::task::yield_now().await;
            }
            Ok::<_, std::convert::Infallible>(x)
        }))),
    }
}

async fn run(n: usize, stages: &[StageCfg], shape: Shape, with_dlq: bool) -> (AckLog, bool) {
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
            let [a, b] = stream.broadcast();
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
    let report = within(LIMIT, "the graph to finish", running.wait()).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    (acks, report.is_clean())
}

/// Runs the graph and checks what holds whatever the policies: every input
/// resolved exactly once, nothing leaked, the graph drained cleanly.
fn run_checked(
    n: usize,
    stages: &[StageCfg],
    shape: Shape,
    with_dlq: bool,
) -> Result<AckLog, TestCaseError> {
    let leaked_before = sluicegate_core::ack::leaked_total();
    let (acks, clean) = runtime().block_on(run(n, stages, shape, with_dlq));
    prop_assert!(clean);
    acks.assert_each_once(n as i64);
    prop_assert_eq!(
        sluicegate_core::ack::leaked_total(),
        leaked_before,
        "an acknowledgement leaked"
    );
    Ok(acks)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// With blocking mailboxes nothing is left to timing: each input gets
    /// exactly the model's outcome.
    #[test]
    fn every_envelope_gets_the_outcome_the_model_says(
        n in 1usize..120,
        stages in prop::collection::vec(blocking_stage(), 1..5),
        shape in shape(),
        with_dlq in any::<bool>(),
    ) {
        let acks = run_checked(n, &stages, shape, with_dlq)?;
        for (offset, outcomes) in acks.outcomes() {
            let want = expect(offset as u64, &stages, shape, with_dlq);
            let got = Expect::of(&outcomes[0]);
            prop_assert_eq!(got, want, "offset {}: {}", offset, outcomes[0]);
        }
    }

    /// With drop policies, a mailbox may drop any part: the outcome is the
    /// model's or a drop, never a delivery the model does not allow, never
    /// a failure it does not predict.
    #[test]
    fn with_drop_policies_the_outcome_is_the_models_or_a_drop(
        n in 1usize..120,
        stages in prop::collection::vec(any_stage(), 1..5),
        shape in shape(),
        with_dlq in any::<bool>(),
    ) {
        let acks = run_checked(n, &stages, shape, with_dlq)?;
        let can_overflow = stages.iter().any(|s| s.overflow != Overflow::Block);
        for (offset, outcomes) in acks.outcomes() {
            let want = expect(offset as u64, &stages, shape, with_dlq);
            let got = Expect::of(&outcomes[0]);
            prop_assert!(
                got == want || (can_overflow && got == Expect::Dropped),
                "offset {}: the model says {:?}, got {}", offset, want, outcomes[0]
            );
        }
    }
}

/// The model itself, on a graph worked out by hand.
#[test]
fn the_model_matches_a_hand_worked_graph() {
    let stage = |kind| StageCfg {
        kind,
        capacity: 1,
        concurrency: 1,
        order: Order::Unordered,
        overflow: Overflow::Block,
    };
    // x → flat_map (x % 3 copies: x, x+1) → fail multiples of 4.
    let stages = [stage(Kind::FlatMap(2)), stage(Kind::Fail(4))];
    let at = |x| expect(x, &stages, Shape::Chain, false);
    assert_eq!(at(3), Expect::Dropped, "3 % 3 = 0 copies");
    assert_eq!(at(7), Expect::Delivered, "7 % 3 = 1 copy: 7");
    assert_eq!(at(8), Expect::Failed, "copies 8 and 9; 8 fails");
    assert_eq!(at(11), Expect::Failed, "copies 11 and 12; 12 fails");
    assert_eq!(at(13), Expect::Delivered, "copies 13 and 14");
    assert_eq!(expect(8, &stages, Shape::Chain, true), Expect::DeadLettered);
    assert_eq!(
        expect(5, &[stage(Kind::Map)], Shape::Broadcast, false),
        Expect::Delivered,
        "15 % 4 = 3"
    );
    assert_eq!(
        expect(3, &[stage(Kind::Map)], Shape::Broadcast, false),
        Expect::Failed,
        "9 % 4 = 1: branch b fails"
    );
}
