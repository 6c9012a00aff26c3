//! Rebuilds the seed's end-to-end pipeline: ingest -> validate (10 ms) ->
//! process (50 ms) -> store (20 ms), every edge a 5-slot buffer, so a slow
//! stage backs up everything before it, all the way to the ingester.
//!
//! The seed's channels cannot tell how full they are ("there's no direct API
//! for queue length in mpsc"). Sluicegate's mailboxes can: every 500 ms this
//! prints each mailbox's depth from `metrics.snapshot()` and the bottleneck
//! over the last interval (`snapshot.bottleneck(Some(&prev))`: the busiest
//! stage that is not itself waiting on the stage after it).
//!
//! The same metrics go into a `prometheus-client` registry, as a service
//! that embeds the graph would register them next to its own
//! (`PrometheusCollector`); the run ends with the peak depths read from it.
//!
//! What to look at in the output: `validate` and `process` sit full (5/5)
//! while `store` stays nearly empty, so `process` is the bottleneck; the
//! whole pipeline, ingester included, runs at process's pace (~20 items/s);
//! and the final check that every item was stored exactly once.

use std::time::Duration;

use sluicegate_core::metrics::PrometheusCollector;
use sluicegate_core::testing::{AckLog, VecSource};
use sluicegate_core::{CancellationToken, Graph, Metrics, Snapshot, StageSpec, sink, then};
use sluicegate_examples::{check_nothing_lost, init_tracing};

const ITEMS: usize = 80;
const CAPACITY: usize = 5;
const STAGES: [&str; 3] = ["validate", "process", "store"];

/// A stage that takes `ms` per item and prefixes `tag`.
fn step(tag: &'static str, ms: u64) -> impl sluicegate_core::Stage<In = String, Out = String> {
    then(move |item: String| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, std::convert::Infallible>(format!("{tag}-{item}"))
    })
}

/// `3/5 [###..]`
fn gauge(snap: &Snapshot, stage: &str) -> String {
    snap.mailbox(stage).map_or_else(String::new, |m| {
        let bar: String = (0..m.capacity)
            .map(|i| if i < m.depth { '#' } else { '.' })
            .collect();
        format!("{}/{} [{bar}]", m.depth, m.capacity)
    })
}

fn count(snap: &Snapshot, stage: &str) -> u64 {
    snap.stage(stage).map_or(0, |s| s.items_out)
}

/// Prints one table row every 500 ms until `stop` is cancelled.
async fn monitor(metrics: std::sync::Arc<Metrics>, stop: CancellationToken) {
    println!(
        "{:>5} {:>8}  {:<13}  {:<13}  {:<13} {:>6}  bottleneck (last 500 ms)",
        "time", "ingested", STAGES[0], STAGES[1], STAGES[2], "stored"
    );
    let mut prev = metrics.snapshot();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.tick().await;
    while stop.run_until_cancelled(tick.tick()).await.is_some() {
        let snap = metrics.snapshot();
        let bottleneck = snap.bottleneck(Some(&prev)).map_or_else(
            || "-".to_string(),
            |b| format!("{} (busy {:.0}%)", b.stage, b.busy * 100.0),
        );
        println!(
            "{:>4.1}s {:>8}  {:<13}  {:<13}  {:<13} {:>6}  {bottleneck}",
            snap.uptime_ns as f64 / 1e9,
            count(&snap, "ingest"),
            gauge(&snap, STAGES[0]),
            gauge(&snap, STAGES[1]),
            gauge(&snap, STAGES[2]),
            count(&snap, "store"),
        );
        prev = snap;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let acks = AckLog::new();
    let raw: Vec<String> = (0..ITEMS).map(|i| format!("raw-data-{i}")).collect();

    let mut g = Graph::builder("end-to-end");
    g.source("ingest", VecSource::new(raw, acks.clone()))
        .via(StageSpec::new("validate", step("validated", 10)).capacity(CAPACITY))
        .via(StageSpec::new("process", step("processed", 50)).capacity(CAPACITY))
        .to(StageSpec::new(
            "store",
            sink(|_item: String| async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, std::convert::Infallible>(())
            }),
        )
        .capacity(CAPACITY));

    // The service's own registry: the graph's families are read into it at
    // each scrape (here, once at the end).
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(PrometheusCollector::new(g.metrics())));

    let running = g.build()?.start().await?;
    let stop = CancellationToken::new();
    let printer = tokio::spawn(monitor(running.metrics().clone(), stop.clone()));
    let report = running.wait().await;
    stop.cancel();
    printer.await?;

    let snap = &report.snapshot;
    let secs = report.elapsed.as_secs_f64();
    println!(
        "\n{ITEMS} items through 4 stages in {secs:.2}s ({:.1} items/s)",
        ITEMS as f64 / secs
    );
    // A sequential stage hands on its previous output while its next item's
    // work is already running, so that overlap counts as blocked, not busy.
    println!("stage     busy blocked  idle  peak depth");
    for name in STAGES {
        let (Some(s), Some(m)) = (snap.stage(name), snap.mailbox(name)) else {
            anyhow::bail!("no metrics for {name}");
        };
        let (busy, blocked, idle) = s.time_split(None);
        println!(
            "{name:<8} {:>4.0}% {:>6.0}% {:>4.0}%  {:>6}/{}",
            busy * 100.0,
            blocked * 100.0,
            idle * 100.0,
            m.peak_depth,
            m.capacity
        );
    }
    let mut exposition = String::new();
    prometheus_client::encoding::text::encode(&mut exposition, &registry)?;
    println!("from the service's Prometheus registry:");
    for line in exposition
        .lines()
        .filter(|l| l.starts_with("sluicegate_mailbox_peak_depth"))
    {
        println!("  {line}");
    }
    let whole = snap.bottleneck(None).map_or("-".into(), |b| b.stage);
    println!("bottleneck over the whole run: {whole}");
    println!("acks: {} delivered of {ITEMS}", acks.delivered());
    check_nothing_lost(&report, &acks, ITEMS, false)?;
    println!("ok: every item stored exactly once; nothing dropped, failed or abandoned");
    Ok(())
}
