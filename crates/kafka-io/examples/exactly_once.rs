//! Exactly-once Kafka to Kafka: consume, transform and produce, with each
//! batch's outputs and the consumed offsets they cover committed in one
//! Kafka transaction. Runs on librdkafka's in-process mock cluster, so it
//! needs no broker.
//!
//! ```text
//! orders (4 partitions) -> upper (map) -> orders-upper (KafkaTxnSink, one transaction per batch of 100)
//! ```
//!
//! What to look at:
//!
//! - `KafkaSource::transactional(true)`: the source never commits offsets
//!   itself; it tracks which records are finished and keeps the consumer
//!   group metadata for the sink.
//! - `KafkaTxnSink` is a batch stage: per batch it begins a transaction,
//!   produces every record, sends the offsets (the contiguous run of
//!   finished records, this batch's included) with the group metadata, and
//!   commits. The records' acknowledgements resolve only after the commit.
//! - The mock broker is told to fail the commit of the 3rd transaction. The
//!   sink aborts it and commits the same batch in a new transaction: the
//!   aborted copies stay in the log, marked aborted on a real broker, so
//!   `read_committed` readers never see them.
//! - The reconciliation at the end: every order is in the output, exactly
//!   one batch of them was written twice (the aborted attempt and its
//!   retry), and the offsets sent with the transactions reach the end of
//!   every input partition.
//!
//! The mock cluster speaks the transactional protocol but writes no
//! commit or abort markers and does not store the offsets of a transaction,
//! so its own `read_committed` readers see the aborted copies too; the
//! reconciliation therefore counts them, from the sink's counters.
//!
//! ```text
//! cargo run -p sluicegate-kafka-io --example exactly_once [-- --records N]
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sluicegate_core::{BatchConfig, BatchSpec, Graph, StageSpec, map};
use sluicegate_kafka_io::{KafkaConfig, KafkaSource, KafkaTxnSink, ProducerRecord};

/// Partitions of the input and output topics.
const PARTITIONS: i32 = 4;
/// Records per transaction (at most).
const BATCH: usize = 100;
/// How long any one wait may take before the example gives up.
const PATIENCE: Duration = Duration::from_secs(60);

fn records_arg() -> anyhow::Result<u64> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--records") {
        Some(i) => args
            .get(i + 1)
            .context("--records needs a number")?
            .parse()
            .context("--records needs a number"),
        None => Ok(2_000),
    }
}

/// Produces `n` orders, plainly (not through sluicegate): key and payload
/// name the order, partition `i % PARTITIONS`.
async fn produce_input(brokers: &str, n: u64) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .context("creating the input producer")?;
    let mut pending = Vec::new();
    for i in 0..n {
        let key = i.to_string();
        let payload = format!("order-{i}");
        let record = FutureRecord::to("orders")
            .key(&key)
            .payload(&payload)
            .partition((i % PARTITIONS as u64) as i32);
        pending.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .context("enqueueing an input record")?,
        );
    }
    for delivery in pending {
        tokio::time::timeout(PATIENCE, delivery)
            .await
            .context("an input delivery timed out")?
            .context("an input delivery was cancelled")?
            .map_err(|(e, _)| e)
            .context("an input delivery failed")?;
    }
    Ok(())
}

/// Every record of `topic`, read from the start of each partition.
fn read_all(brokers: &str, topic: &str, expect: usize) -> anyhow::Result<Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "exactly-once-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_uncommitted")
        .create()
        .context("creating the reader")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut out = Vec::new();
    while out.len() < expect {
        ensure!(
            started.elapsed() < PATIENCE,
            "read {} of {expect} records of {topic}",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.context("reading the output")?;
            out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = records_arg()?;
    let mock = MockCluster::new(1).context("starting the mock cluster")?;
    let brokers = mock.bootstrap_servers();
    mock.create_topic("orders", PARTITIONS, 1)?;
    mock.create_topic("orders-upper", PARTITIONS, 1)?;
    produce_input(&brokers, n).await?;
    println!("{n} orders in `orders` ({PARTITIONS} partitions) on an in-process mock cluster");

    // The broker fails the commit of the 3rd transaction.
    use RDKafkaRespErr::*;
    mock.request_errors(
        RDKafkaApiKey::EndTxn,
        &[
            RD_KAFKA_RESP_ERR_NO_ERROR,
            RD_KAFKA_RESP_ERR_NO_ERROR,
            RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR,
        ],
    );

    let kafka = KafkaConfig::new(&brokers);
    let source = KafkaSource::new(kafka.clone(), "orders-eos", ["orders"]).transactional(true);
    let handle = source.handle();
    let sink = KafkaTxnSink::new(
        &kafka,
        "orders-upper",
        "orders-eos-0",
        handle.exactly_once(),
    )?;
    let stats = sink.stats();
    let mut g = Graph::builder("exactly-once");
    g.source("orders", source)
        .via(StageSpec::new(
            "upper",
            map(|b: Bytes| ProducerRecord::new(b.to_ascii_uppercase())),
        ))
        .to_batch(BatchSpec::new(
            "orders-upper",
            sink,
            BatchConfig::new(BATCH, Duration::from_millis(50)),
        ));
    let started = Instant::now();
    let running = g.build()?.start().await?;
    while stats.records.load(Ordering::SeqCst) < n {
        ensure!(
            started.elapsed() < PATIENCE,
            "only {} of {n} records committed after {PATIENCE:?}",
            stats.records.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent: BTreeMap<i32, Option<i64>> = handle
        .partitions()
        .iter()
        .map(|p| (p.state.partition, p.state.committed))
        .collect();
    let report = running.shutdown(Duration::from_secs(30)).await;
    ensure!(
        report.is_clean(),
        "the pipeline did not stop cleanly: {report:?}"
    );
    let elapsed = started.elapsed();

    // Reconcile.
    let commits = stats.commits.load(Ordering::SeqCst);
    let aborts = stats.aborts.load(Ordering::SeqCst);
    let aborted = stats.aborted_records.load(Ordering::SeqCst);
    let log = read_all(&brokers, "orders-upper", (n + aborted) as usize)?;
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for payload in &log {
        *counts.entry(payload.as_str()).or_default() += 1;
    }
    let twice = counts.values().filter(|c| **c == 2).count() as u64;
    let missing = (0..n)
        .filter(|i| !counts.contains_key(format!("ORDER-{i}").as_str()))
        .count();
    println!("transactions: {commits} committed, {aborts} aborted ({elapsed:.2?})");
    println!(
        "output log: {} records = {n} committed + {aborted} of the aborted transaction",
        log.len()
    );
    println!(
        "orders missing from the output: {missing}; written twice (aborted, then retried): {twice}"
    );
    // Partition p holds orders p, p + 4, p + 8, ...
    let end =
        |p: i32| (n / PARTITIONS as u64 + u64::from((p as u64) < n % PARTITIONS as u64)) as i64;
    for (p, offset) in &sent {
        println!(
            "orders[{p}]: offset sent with the last transaction {offset:?}, end of the partition {}",
            end(*p)
        );
    }

    ensure!(missing == 0, "{missing} orders are missing from the output");
    ensure!(
        aborts == 1,
        "expected one aborted transaction, saw {aborts}"
    );
    ensure!(
        twice == aborted,
        "{twice} orders written twice, but the aborted transaction held {aborted}"
    );
    ensure!(
        counts.values().all(|c| *c <= 2),
        "an order was written more than twice"
    );
    ensure!(
        sent.len() == PARTITIONS as usize
            && (0..PARTITIONS).all(|p| sent.get(&p).copied().flatten() == Some(end(p))),
        "the offsets sent do not reach the end of every partition: {sent:?}"
    );
    println!(
        "reconciled: each of the {n} orders committed exactly once, with its offset \
         (a broker that writes transaction markers hides the {aborted} aborted copies from read_committed readers)"
    );
    Ok(())
}
