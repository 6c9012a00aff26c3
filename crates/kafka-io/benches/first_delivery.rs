//! Time to the first delivery of a fresh `KafkaSink`, with and without its
//! start hook, on librdkafka's mock cluster (in this process).
//!
//! ```text
//! cargo bench -p sluicegate-kafka-io --bench first_delivery
//! cargo bench -p sluicegate-kafka-io --bench first_delivery -- --rounds 20
//! ```
//!
//! The sink's producer is idempotent, and librdkafka asks for its producer
//! id on a timer unless it learns early that the cluster is up. The start
//! hook (`Stage::start`, run by the graph before any record flows) waits for
//! the cluster, so the first record should take one round trip, not the
//! timer. Each round makes a fresh mock cluster and a fresh sink, runs the
//! hook or not, then times one `process` call. Figures: docs/BENCHMARKS.md,
//! section D.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use sluicegate_core::{Origin, Stage};
use sluicegate_kafka_io::{KafkaConfig, KafkaSink, ProducerRecord};

async fn first_delivery(with_start_hook: bool) -> anyhow::Result<Duration> {
    let cluster = MockCluster::<DefaultProducerContext>::new(1).context("mock cluster")?;
    cluster
        .create_topic("out", 1, 1)
        .context("create the topic")?;
    let sink = KafkaSink::new(&KafkaConfig::new(cluster.bootstrap_servers()), "out")?;
    if with_start_hook {
        sink.start().await?;
    }
    let sent = Instant::now();
    sink.process(ProducerRecord::new("first"), &Origin::default())
        .await?;
    let took = sent.elapsed();
    sink.stop().await?;
    Ok(took)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut rounds = 10usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rounds" => {
                rounds = args
                    .next()
                    .context("--rounds takes a number")?
                    .parse()
                    .context("--rounds takes a number")?;
            }
            // What cargo bench passes to every harness-less bench.
            "--bench" => {}
            other => bail!("unknown option {other}; options: --rounds N"),
        }
    }
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    println!("first delivery of a fresh KafkaSink, mock cluster, {rounds} rounds each");
    println!("| start hook | median | min | max |");
    println!("| --- | ---: | ---: | ---: |");
    for hook in [true, false] {
        let mut took = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            took.push(first_delivery(hook).await?);
        }
        let (min, max) = (took.iter().min().copied(), took.iter().max().copied());
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            if hook { "run" } else { "skipped" },
            median(took).as_secs_f64() * 1e3,
            min.unwrap_or_default().as_secs_f64() * 1e3,
            max.unwrap_or_default().as_secs_f64() * 1e3,
        );
    }
    Ok(())
}
