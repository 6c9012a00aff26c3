//! Metrics: counts, mailbox depth, busy/blocked/idle, the bottleneck,
//! Prometheus text and the serializable snapshot.

mod common;

use std::time::Duration;

use common::quiesce;
use sluicegate_core::testing::{
    AckLog, CollectSink, Gate, GatedSink, VecSource, run_to_end, within,
};
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
    let snap = run_clean(g).await;
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
        "# TYPE sluicegate_stage_items_out counter",
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

/// Two graphs exported through a registry the embedding service owns, next
/// to the service's own metric: every family is described once, each graph's
/// samples carry its name, and the values are the graphs' final counts.
#[tokio::test]
async fn graphs_export_into_the_callers_prometheus_registry() {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::registry::Registry;
    use sluicegate_core::metrics::PrometheusCollector;

    let mut registry = Registry::default();
    let requests: Counter = Counter::default();
    registry.register(
        "service_requests",
        "The service's own counter",
        requests.clone(),
    );
    requests.inc();

    let mut collector: Option<PrometheusCollector> = None;
    for (graph, n) in [("orders", 7u64), ("refunds", 3)] {
        let acks = AckLog::new();
        let mut g = Graph::builder(graph);
        g.source("src", VecSource::new((0..n).collect(), acks.clone()))
            .to(StageSpec::new("sink", CollectSink::new()));
        let metrics = g.metrics();
        collector = Some(match collector.take() {
            None => PrometheusCollector::new(metrics),
            Some(c) => c.with(metrics),
        });
        run_clean(g).await;
        acks.assert_each_once(n as i64);
    }
    registry.register_collector(Box::new(collector.expect("two graphs")));

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    for line in [
        "service_requests_total 1",
        "sluicegate_stage_items_in_total{graph=\"orders\",stage=\"sink\"} 7",
        "sluicegate_stage_items_in_total{graph=\"refunds\",stage=\"sink\"} 3",
        "sluicegate_stage_items_out_total{graph=\"orders\",stage=\"src\"} 7",
        "sluicegate_stage_latency_seconds_count{graph=\"refunds\",stage=\"sink\"} 3",
        "sluicegate_stage_latency_seconds_bucket{le=\"+Inf\",graph=\"orders\",stage=\"sink\"} 7",
        "sluicegate_mailbox_depth{graph=\"orders\",stage=\"sink\"} 0",
        "sluicegate_mailbox_dropped_total{graph=\"refunds\",stage=\"sink\",policy=\"Block\"} 0",
        "# EOF",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in\n{text}"
        );
    }
    for family in [
        "sluicegate_stage_items_in counter",
        "sluicegate_stage_seconds counter",
        "sluicegate_stage_latency_seconds histogram",
        "sluicegate_mailbox_capacity gauge",
    ] {
        let described = text
            .lines()
            .filter(|l| *l == format!("# TYPE {family}"))
            .count();
        assert_eq!(described, 1, "{family} is described once in\n{text}");
    }
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
    let report = run_to_end(g, Duration::from_secs(120)).await;
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

/// A stage that sleeps `ms` milliseconds per item (on the paused clock,
/// virtual ones) and hands it on.
fn sleeper(ms: u64) -> impl sluicegate_core::Stage<In = u64, Out = u64> {
    then(move |x: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, std::convert::Infallible>(x)
    })
}

/// A sink that sleeps `ms` milliseconds per item (a delivery awaited).
fn slow_sink(ms: u64) -> impl sluicegate_core::Stage<In = u64, Out = ()> {
    sluicegate_core::sink(move |_: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, std::convert::Infallible>(())
    })
}

/// Runs `g` to its end (at most [`LIMIT`]), asserts the report is clean and
/// returns the metrics' last snapshot.
async fn run_clean(g: sluicegate_core::GraphBuilder) -> Snapshot {
    let metrics = g.metrics();
    let report = run_to_end(g, LIMIT).await;
    assert!(report.is_clean(), "{report:?}");
    metrics.snapshot()
}

/// On the paused clock a stage sleeping 1 ms per item is busy for those
/// virtual milliseconds: it is the bottleneck and the stage before it is
/// blocked, exactly (the metrics read Tokio's clock, so the split does not
/// depend on how fast the machine runs the test).
#[tokio::test(start_paused = true)]
async fn a_sequential_slow_stage_is_the_bottleneck_on_the_paused_clock() {
    let acks = AckLog::new();
    let mut g = Graph::builder("paused");
    g.source("src", VecSource::new((0..200u64).collect(), acks.clone()))
        .via(StageSpec::new("parse", map(|x: u64| x + 1)).capacity(4))
        .via(StageSpec::new("enrich", sleeper(1)).capacity(4))
        .to(StageSpec::new("store", CollectSink::new()).capacity(4));
    let snap = run_clean(g).await;
    acks.assert_each_once(200);
    let b = snap.bottleneck(None).expect("a bottleneck");
    assert_eq!(b.stage, "enrich", "{b:?}");
    assert!(b.busy > 0.95, "{b:?}");
    let (_, parse_blocked, _) = snap.stage("parse").expect("parse").time_split(None);
    assert!(
        parse_blocked > 0.9,
        "parse waits on enrich: {parse_blocked}"
    );
    let (store_busy, _, store_idle) = snap.stage("store").expect("store").time_split(None);
    assert!(
        store_idle > 0.9,
        "store waits for input: busy {store_busy}, idle {store_idle}"
    );
    // The run took 200 virtual milliseconds of enrich's time, and the
    // active period covers them.
    let (first, last) = snap.active_ns().expect("active");
    assert!(last - first >= 200_000_000, "{first}..{last}");
}

/// Busy of a stage with a concurrency above one is its utilisation: a sink
/// allowed 4 items at once, given one item every 10 ms that it works on for
/// 5 ms, is busy 5/10 × 1/4 = 12.5% of the time (not 50%, the share of the
/// time it has at least one item in flight), idle the rest.
#[tokio::test(start_paused = true)]
async fn busy_of_a_concurrent_stage_is_its_utilisation() {
    let acks = AckLog::new();
    let mut g = Graph::builder("utilisation");
    g.source("src", VecSource::new((0..100u64).collect(), acks.clone()))
        .via(StageSpec::new("pace", sleeper(10)).capacity(2))
        .to(StageSpec::new("wide", slow_sink(5))
            .concurrency(4)
            .capacity(4));
    let snap = run_clean(g).await;
    acks.assert_each_once(100);
    let (busy, blocked, idle) = snap.stage("wide").expect("wide").time_split(None);
    assert!(
        (0.10..0.15).contains(&busy),
        "wide: busy {busy}, blocked {blocked}, idle {idle}"
    );
    assert!(blocked < 0.01, "wide: blocked {blocked}");
    let b = snap.bottleneck(None).expect("a bottleneck");
    assert_eq!(b.stage, "pace", "{b:?}");
}

/// The live view: a transform with two workers at full use, every
/// mailbox before it full, and a sink allowed 64 deliveries at once that
/// always has some in flight. The sink is not the bottleneck (its
/// utilisation is about 40 of 64 in flight); the transform, saturated while
/// the stage before it is blocked on it, is.
async fn a_wide_sink_behind_a_saturated_stage(
    sleep_transform_ms: u64,
    sleep_sink_ms: u64,
    items: u64,
) -> Snapshot {
    let acks = AckLog::new();
    let mut g = Graph::builder("issue");
    g.source("kafka", VecSource::new((0..items).collect(), acks.clone()))
        .via(StageSpec::new("decode", map(|x: u64| x)).capacity(8))
        .via(
            StageSpec::new("transform", sleeper(sleep_transform_ms))
                .concurrency(2)
                .capacity(4),
        )
        .to(StageSpec::new("produce", slow_sink(sleep_sink_ms))
            .concurrency(64)
            .capacity(128));
    let snap = run_clean(g).await;
    acks.assert_each_once(items as i64);
    snap
}

#[tokio::test(start_paused = true)]
async fn the_saturated_stage_not_the_wide_sink_is_the_bottleneck_on_the_paused_clock() {
    let snap = a_wide_sink_behind_a_saturated_stage(1, 20, 1_000).await;
    let b = snap.bottleneck(None).expect("a bottleneck");
    assert_eq!(b.stage, "transform", "{b:?}");
    assert!(b.busy > 0.95, "{b:?}");
    // 2 items per ms through the transform, 20 ms each in the sink: 40 of
    // 64 in flight.
    let (busy, _, _) = snap.stage("produce").expect("produce").time_split(None);
    assert!((0.55..0.7).contains(&busy), "produce utilisation {busy}");
    let (_, decode_blocked, _) = snap.stage("decode").expect("decode").time_split(None);
    assert!(
        decode_blocked > 0.9,
        "decode waits on the transform: {decode_blocked}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saturated_stage_not_the_wide_sink_is_the_bottleneck_on_the_real_clock() {
    // Real sleeps: Tokio's timer makes a 2 ms sleep about 2 to 3 ms, a
    // 20 ms one about 21; the sink has at most about 2 × 21 / 2 = 21 of 64
    // in flight whatever the jitter.
    let snap = a_wide_sink_behind_a_saturated_stage(2, 20, 300).await;
    let b = snap.bottleneck(None).expect("a bottleneck");
    assert_eq!(b.stage, "transform", "{b:?}");
    let (busy, _, _) = snap.stage("produce").expect("produce").time_split(None);
    assert!(busy < 0.6, "produce utilisation {busy}");
    let (_, decode_blocked, _) = snap.stage("decode").expect("decode").time_split(None);
    assert!(
        decode_blocked > 0.5,
        "decode waits on the transform: {decode_blocked}"
    );
}

/// The rule on fixed figures: of the stages not blocked themselves, the
/// one whose upstream is blocked on it is the bottleneck, even when a stage
/// after it is busier (here a sink at 70% that keeps up with what it gets);
/// with no upstream blocked anywhere, the busiest stage is named; with no
/// work at all, none.
#[test]
fn the_bottleneck_is_the_stage_its_upstream_is_blocked_on() {
    use sluicegate_core::metrics::{HistogramSnapshot, MailboxSnapshot, NodeKind, StageSnapshot};
    let node = |name: &str, kind: NodeKind, split: [u64; 3]| StageSnapshot {
        name: name.into(),
        kind,
        concurrency: 1,
        items_in: 1,
        items_out: 1,
        filtered: 0,
        failed: 0,
        panics: 0,
        abandoned: 0,
        busy_ns: split[0],
        blocked_ns: split[1],
        idle_ns: split[2],
        latency: HistogramSnapshot {
            bounds_us: vec![1],
            counts: vec![0, 0],
            sum_ns: 0,
        },
        first_in_ns: None,
        last_out_ns: None,
    };
    let mailbox = |stage: &str, from: &str| MailboxSnapshot {
        stage: stage.into(),
        from: vec![from.into()],
        capacity: 8,
        depth: 0,
        peak_depth: 0,
        max_bytes: None,
        bytes: 0,
        overflow: sluicegate_core::Overflow::Block,
        accepted: 0,
        dropped: 0,
    };
    let snap = |a_blocked: u64| Snapshot {
        graph: "g".into(),
        uptime_ns: 100,
        stages: vec![
            node("src", NodeKind::Source, [10, 90, 0]),
            node("a", NodeKind::Stage, [100 - a_blocked, a_blocked, 0]),
            node("b", NodeKind::Stage, [60, 0, 40]),
            node("c", NodeKind::Sink, [70, 0, 30]),
        ],
        mailboxes: vec![mailbox("a", "src"), mailbox("b", "a"), mailbox("c", "b")],
    };
    // a is blocked on b: b holds it back, although c is busier.
    let b = snap(80).bottleneck(None).expect("a bottleneck");
    assert_eq!((b.stage.as_str(), b.busy), ("b", 0.6), "{b:?}");
    // Nothing blocked but the source (on a, which is fully busy): a.
    let b = snap(0).bottleneck(None).expect("a bottleneck");
    assert_eq!(b.stage, "a", "{b:?}");
    let mut idle = snap(0);
    for s in &mut idle.stages {
        s.busy_ns = 0;
    }
    assert_eq!(idle.bottleneck(None), None);
}
