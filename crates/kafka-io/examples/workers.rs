//! The seeds' Kafka workflow on sluicegate: consume → CPU work on the
//! blocking pool → produce, with several workers in one consumer group in
//! one process.
//!
//! ```text
//! kafka-0 ┐
//! kafka-1 ├─ merge ─> fingerprint (blocking pool, 4 at once) ─> out (KafkaSink)
//! kafka-2 │
//! kafka-3 ┘
//! ```
//!
//! What to look at:
//!
//! - `consumer_group(...)` gives one [`KafkaSource`] per worker, all in one
//!   group (it refuses more workers than partitions); `Stream::merge` joins
//!   their streams. Each worker commits its own partitions, and only what
//!   is finished.
//! - The CPU work runs in `blocking(4, f)`: on Tokio's blocking pool, at most
//!   4 at once, so it never stalls the async workers, and a slow spell backs
//!   up to the sources instead of queueing without bound (the seed spawns a
//!   task and a blocking task per message, with no limit).
//! - The sink acknowledges a record only once the broker has; the sources
//!   commit from those acknowledgements.
//!
//! It makes a fresh input and output topic of 4 partitions, starts the
//! workers, waits until the group has handed each worker its partitions,
//! then produces the input (so the shares are even and no rebalance
//! happens mid-stream), and stops once every record is delivered. It reads
//! the output back and exits non-zero if a record is missing or an offset
//! is not committed.
//!
//! ```text
//! cargo run -p sluicegate-kafka-io --example workers [-- --records N --workers N --brokers HOST:PORT]
//! ```
//!
//! The broker defaults to 127.0.0.1:9092 (`scripts/kafka-up` starts one);
//! `--brokers` or `SLUICEGATE_BROKERS` points elsewhere.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};
use sluicegate_core::{Graph, StageSpec, Stream, blocking};
use sluicegate_kafka_io::{
    KafkaConfig, KafkaSink, KafkaSource, KafkaSourceHandle, ProducerRecord, consumer_group,
};

mod common;

/// Partitions of the input and output topics.
const PARTITIONS: i32 = 4;
/// How long any one wait may take before the example gives up.
const PATIENCE: Duration = Duration::from_secs(60);

/// The CPU work: a 64-bit FNV-1a fingerprint of the record, iterated
/// `ROUNDS` times (a stand-in for parsing, scoring, hashing: about 10 µs
/// in a release build, ten times that in a debug build).
fn fingerprint(payload: &[u8]) -> u64 {
    const ROUNDS: usize = 250;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for _ in 0..ROUNDS {
        for b in payload {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// One record's work, on the blocking pool: decode, fingerprint, encode.
fn work(payload: Bytes) -> Result<ProducerRecord, serde_json::Error> {
    let order: Value = serde_json::from_slice(&payload)?;
    let id = order["id"].as_u64().unwrap_or_default();
    let out = json!({ "id": id, "fingerprint": format!("{:016x}", fingerprint(&payload)) });
    Ok(ProducerRecord::new(serde_json::to_vec(&out)?).key(id.to_string()))
}

fn arg(name: &str, default: usize) -> anyhow::Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .with_context(|| format!("{name} needs a value"))?
            .parse()
            .with_context(|| format!("{name} takes a number")),
        None => Ok(default),
    }
}

/// Waits until every worker has been given partitions and the group has
/// not changed for a second (so the input is split evenly).
async fn group_settled(handles: &[KafkaSourceHandle]) -> anyhow::Result<()> {
    let state = || -> Vec<u64> {
        handles
            .iter()
            .flat_map(|h| {
                let s = h.stats();
                [
                    s.assignments.load(Ordering::Relaxed),
                    s.revocations.load(Ordering::Relaxed),
                ]
            })
            .collect()
    };
    let deadline = Instant::now() + PATIENCE;
    let mut last = (state(), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = state();
        let everyone = handles
            .iter()
            .all(|h| h.stats().assignments.load(Ordering::Relaxed) > 0);
        if now != last.0 {
            last = (now, Instant::now());
        } else if everyone && last.1.elapsed() >= Duration::from_secs(1) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the consumer group did not settle within {PATIENCE:?}"
        );
    }
}

/// Reads `topic` back and returns the distinct ids and the record count.
fn read_back(brokers: &str, topic: &str, expected: usize) -> anyhow::Result<(HashSet<u64>, usize)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", common::unique("workers-check"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let (mut ids, mut count) = (HashSet::new(), 0);
    let mut last = Instant::now();
    // Until everything is there and nothing more came for half a second.
    while !(ids.len() >= expected && last.elapsed() > Duration::from_millis(500))
        && last.elapsed() < Duration::from_secs(10)
    {
        if let Some(m) = consumer.poll(Duration::from_millis(50)) {
            let m = m?;
            let v: Value = serde_json::from_slice(m.payload().unwrap_or_default())?;
            ids.insert(v["id"].as_u64().context("an output record without an id")?);
            count += 1;
            last = Instant::now();
        }
    }
    Ok((ids, count))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let records = arg("--records", 20_000)?;
    let workers = arg("--workers", 4)?;
    let brokers = common::brokers();
    common::check_broker(&brokers)?;
    let input = common::unique("workers-in");
    let output = common::unique("workers-out");
    let group = common::unique("workers");
    common::ensure_topic(&brokers, &input, PARTITIONS).await?;
    common::ensure_topic(&brokers, &output, PARTITIONS).await?;
    println!(
        "workers: {records} records through {workers} workers of group {group} on {brokers}\n  {input} -> {output}"
    );
    let started = Instant::now();

    // Members learn of a rebalance at their next heartbeat: every 500 ms
    // instead of librdkafka's 3 s, so the four workers settle sooner.
    let kafka = KafkaConfig::new(&brokers).set("heartbeat.interval.ms", "500");
    let sources: Vec<KafkaSource> =
        consumer_group(&kafka, &group, &[&input], workers, Duration::from_secs(10)).await?;
    let handles: Vec<KafkaSourceHandle> = sources.iter().map(KafkaSource::handle).collect();
    let sink = KafkaSink::new(&kafka, &output)?;
    let delivered = sink.stats();

    let mut g = Graph::builder("workers");
    let streams = sources
        .into_iter()
        .enumerate()
        .map(|(i, s)| g.source(format!("kafka-{i}"), s))
        .collect();
    Stream::merge(streams)
        .via(StageSpec::new("fingerprint", blocking(4, work)).capacity(8))
        .to(StageSpec::new("out", sink).concurrency(1024).capacity(2048));
    let running = g.build()?.start().await?;

    group_settled(&handles).await?;
    println!(
        "  group settled after {:.1} s; producing the input",
        started.elapsed().as_secs_f64()
    );
    common::produce(
        &brokers,
        &input,
        PARTITIONS,
        records,
        |i| Some(i.to_string().into_bytes()),
        |i| format!(r#"{{"id":{i},"amount":{},"currency":"EUR"}}"#, i % 1000).into_bytes(),
    )
    .await?;
    let flowing = Instant::now();
    let deadline = Instant::now() + PATIENCE;
    while delivered.delivered.load(Ordering::Relaxed) < records as u64 {
        ensure!(
            Instant::now() < deadline,
            "only {} of {records} records delivered after {PATIENCE:?}",
            delivered.delivered.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = flowing.elapsed();
    let report = running.shutdown(Duration::from_secs(30)).await;

    println!("\nper worker (records handed to the graph):");
    let mut total = 0;
    for (i, h) in handles.iter().enumerate() {
        let s = h.stats();
        let n = s.records.load(Ordering::Relaxed);
        total += n;
        println!(
            "  kafka-{i}: {n:>6} records, {} assignment(s), {} revocation(s), {} commits",
            s.assignments.load(Ordering::Relaxed),
            s.revocations.load(Ordering::Relaxed),
            s.commits.load(Ordering::Relaxed),
        );
    }
    println!("  total:   {total:>6} records (input: {records})");

    let (ids, count) = read_back(&brokers, &output, records)?;
    let lost = records - ids.len().min(records);
    let committed = common::committed_offsets(&brokers, &group, &input, PARTITIONS)?;
    let committed_sum: i64 = committed.iter().flatten().sum();
    println!(
        "\nproduced to {output}: {} acknowledged by the broker; read back {count} records, {} distinct ids, {} duplicates, {lost} lost",
        delivered.delivered.load(Ordering::Relaxed),
        ids.len(),
        count - ids.len(),
    );
    println!("committed offsets of {group}: {committed:?} (sum {committed_sum})");
    println!(
        "the last record was delivered {:.2} s after the input was produced; {:.1} s in all",
        took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    common::delete_topics(&brokers, &[&input, &output]).await;

    if !report.is_clean() {
        bail!("the pipeline did not end cleanly: {report:?}");
    }
    ensure!(lost == 0, "{lost} records are missing from {output}");
    ensure!(
        committed_sum == records as i64,
        "the committed offsets cover {committed_sum} records, not {records}"
    );
    println!("every record delivered and committed");
    Ok(())
}
