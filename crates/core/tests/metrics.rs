//! Metrics: counts, mailbox depth, busy/blocked/idle, the bottleneck,
//! Prometheus text and the serializable snapshot.

mod common;

use std::time::Duration;

use common::quiesce;
use sluicegate_core::testing::{AckLog, CollectSink, Gate, GatedSink, VecSource, within};
use sluicegate_core::{Graph, Snapshot, StageSpec, map, then};

const LIMIT: Duration = Duration::from_secs(3600);

/// Three stages, the middle one slow: it is the bottleneck; the one before
/// it is blocked, not busy.
#[tokio::test]
async fn bottleneck_is_the_slow_stage() {
    let acks = AckLog::new();
    let sink = CollectSink::new();
    let slow = then(|x: u64| async move {
        // Real CPU-free waiting: busy time is wall time inside `process`.
        tokio::time::sleep(Duration::from_micros(500)).await;
        Ok::<_, std::convert::Infallible>(x)
    });
    let mut g = Graph::builder("shop");
    g.source("src", VecSource::new((0..400u64).collect(), acks.clone()))
        .via(StageSpec::new("parse", map(|x: u64| x + 1)).capacity(4))
        .via(StageSpec::new("enrich", slow).capacity(4))
        .to(StageSpec::new("store", sink.clone()).capacity(4));
    let graph = g.build().expect("valid");
    let metrics = graph.metrics().clone();
    let report = within(
        LIMIT,
        "the graph",
        graph.start().await.expect("starts").wait(),
    )
    .await;
    assert!(report.is_clean(), "{report:?}");
    let snap = metrics.snapshot();
    let b = snap.bottleneck(None).expect("a bottleneck");
    assert_eq!(b.stage, "enrich", "{b:?}");
    let (_, parse_blocked, _) = snap.stage("parse").expect("parse").time_split(None);
    assert!(
        parse_blocked > 0.5,
        "parse should mostly wait on enrich, blocked {parse_blocked}"
    );
    let enrich = snap.stage("enrich").expect("enrich");
    assert_eq!((enrich.items_in, enrich.items_out), (400, 400));
    assert_eq!(enrich.latency.count(), 400);
    assert!(enrich.latency.quantile_upper_us(0.5).expect("p50") >= 256);
}

#[tokio::test(start_paused = true)]
async fn snapshot_shows_depth_and_renders_prometheus() {
    let acks = AckLog::new();
    let gate = Gate::new();
    let sink = GatedSink::new(gate.clone());
    let mut g = Graph::builder("prom");
    g.source("src", VecSource::new((0..20u64).collect(), acks.clone()))
        .to(StageSpec::new("sink", sink.clone()).capacity(5));
    let graph = g.build().expect("valid");
    let metrics = graph.metrics().clone();
    let running = graph.start().await.expect("starts");
    within(LIMIT, "the sink to hold", gate.wait_for_waiting(1)).await;
    quiesce().await;

    let snap = metrics.snapshot();
    let mb = snap.mailbox("sink").expect("mailbox");
    assert_eq!((mb.depth, mb.capacity, mb.peak_depth), (5, 5, 5));
    assert_eq!(mb.from, vec!["src".to_string()]);
    assert!((mb.fill() - 1.0).abs() < f64::EPSILON);

    let text = snap.to_prometheus();
    for line in [
        "# TYPE sluicegate_mailbox_depth gauge",
        "sluicegate_mailbox_depth{graph=\"prom\",stage=\"sink\"} 5",
        "sluicegate_mailbox_capacity{graph=\"prom\",stage=\"sink\"} 5",
        "sluicegate_stage_items_out_total{graph=\"prom\",stage=\"src\"} 5",
        "# TYPE sluicegate_stage_latency_seconds histogram",
        "sluicegate_mailbox_dropped_total{graph=\"prom\",stage=\"sink\",policy=\"Block\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in\n{text}"
        );
    }
    // Every sample line is `name{labels} value` with a numeric value.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let value = l.rsplit(' ').next().expect("value");
        assert!(value.parse::<f64>().is_ok(), "bad sample line {l:?}");
    }

    let json = serde_json::to_string(&snap).expect("serializes");
    let back: Snapshot = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, snap);

    gate.open_all();
    let report = within(LIMIT, "the graph", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    let end = report.snapshot;
    assert_eq!(end.stage("sink").expect("sink").items_out, 20);
    assert_eq!(end.mailbox("sink").expect("mailbox").depth, 0);
    acks.assert_each_once(20);
}

/// On a multi-threaded runtime, under real parallelism, everything still
/// arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_threaded_stress_delivers_everything_once() {
    const N: u64 = 100_000;
    let acks = AckLog::new();
    let sink = CollectSink::new();
    let mut g = Graph::builder("stress");
    let (evens, odds) = g
        .source("src", VecSource::new((0..N).collect(), acks.clone()))
        .via(StageSpec::new("a", map(|x: u64| x)).capacity(7))
        .via(
            StageSpec::new("b", map(|x: u64| x))
                .capacity(16)
                .concurrency(3),
        )
        .route(|x: &u64| x % 2 == 0);
    let evens = evens.via(StageSpec::new("even", map(|x: u64| x)).capacity(3));
    let odds = odds.via(StageSpec::new("odd", map(|x: u64| x)).capacity(5));
    sluicegate_core::Stream::merge(vec![evens, odds])
        .to(StageSpec::new("sink", sink.clone()).capacity(11));
    let report = within(
        Duration::from_secs(120),
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
    let mut got = sink.items();
    got.sort_unstable();
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    acks.assert_each_once(N as i64);
    assert_eq!(acks.delivered(), N as usize);
}

/// Busy, blocked and idle of every node, in that order.
fn times(snap: &Snapshot) -> Vec<(String, [u64; 3])> {
    snap.stages
        .iter()
        .map(|s| (s.name.clone(), [s.busy_ns, s.blocked_ns, s.idle_ns]))
        .collect()
}

/// A stage stuck on one call for the whole window is busy for that window
/// (its time is published while the phase is still open), so it is the
/// bottleneck and the stage behind it reads blocked; reported time never
/// goes backwards, and it stops growing once the graph ends.
#[tokio::test]
async fn a_stuck_stage_is_the_bottleneck_while_it_is_stuck() {
    let acks = AckLog::new();
    let gate = Gate::new();
    let sink = GatedSink::new(gate.clone());
    let mut g = Graph::builder("stuck");
    g.source("src", VecSource::new((0..20u64).collect(), acks.clone()))
        .via(StageSpec::new("parse", map(|x: u64| x + 1)).capacity(2))
        .to(StageSpec::new("store", sink.clone()).capacity(2));
    let graph = g.build().expect("valid");
    let metrics = graph.metrics().clone();
    let running = graph.start().await.expect("starts");
    within(
        LIMIT,
        "the store to hold its first item",
        gate.wait_for_waiting(1),
    )
    .await;

    // Nothing changes phase from here on: every node waits on the gate.
    let before = metrics.snapshot();
    let stuck_for = Duration::from_millis(20);
    let after = within(
        Duration::from_secs(10),
        "the stuck store's busy time to grow",
        async {
            loop {
                let snap = metrics.snapshot();
                let store = snap.stage("store").expect("store");
                let grown = store.busy_ns - before.stage("store").expect("store").busy_ns;
                if grown >= stuck_for.as_nanos() as u64 {
                    break snap;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        },
    )
    .await;
    let b = after.bottleneck(Some(&before)).expect("the stuck stage");
    assert_eq!(b.stage, "store", "{b:?}");
    assert!(b.busy > 0.99, "{b:?}");
    let (_, parse_blocked, _) = after
        .stage("parse")
        .expect("parse")
        .time_split(before.stage("parse"));
    assert!(
        parse_blocked > 0.99,
        "parse waits on the full store: {parse_blocked}"
    );
    for ((name, t0), (_, t1)) in times(&before).iter().zip(times(&after)) {
        assert!(
            t0.iter().zip(&t1).all(|(a, b)| a <= b),
            "{name}: {t0:?} then {t1:?}"
        );
    }

    gate.open_all();
    let report = within(LIMIT, "the graph", running.wait()).await;
    assert!(report.is_clean(), "{report:?}");
    acks.assert_each_once(20);
    let ended = metrics.snapshot();
    for ((name, t1), (_, t2)) in times(&after).iter().zip(times(&ended)) {
        assert!(
            t1.iter().zip(&t2).all(|(a, b)| a <= b),
            "{name}: {t1:?} then {t2:?}"
        );
    }
    // Every phase is closed: the counters are final.
    assert_eq!(times(&ended), times(&metrics.snapshot()));
}
