//! Non-blocking retries through retry topics: a record that fails for a
//! while does not hold its partition.
//!
//! ```text
//! payments (Kafka) ─┐
//!                   ├─> charge (a payment service that is sometimes busy) -> done
//! payments.retry.* ─┘      │ transient failure
//!   (held until due)       └──> dead_letters: retry topic of its attempt,
//!                                or, after the last, payments-dlq with its history
//! ```
//!
//! What to look at:
//!
//! - `charge` refuses one payment in five on its first attempt and one in
//!   fifty on every attempt, each with a [`Transient`] error: "busy, try
//!   later". The dead-letter route (`DeadLetterSink::retry`) writes such a
//!   record to `payments.retry.500ms` (then `.1s`), with headers saying
//!   when it is due and what happened so far, and the original record
//!   counts as finished once that write is acknowledged.
//! - So the input's committed offsets reach its end while refused payments
//!   are still going round: the example checks that before any of them
//!   comes back.
//! - The retry consumer (`KafkaSource::due_header`) holds each record until
//!   its due time with its partition paused, then feeds it back.
//! - A payment refused after the last level goes to `payments-dlq` with the
//!   whole history (three attempts), printed at the end.
//! - The price: a retried payment comes back after later payments of its
//!   key. Use it where per-key order does not matter.
//!
//! It makes fresh topics, produces the input, and exits non-zero unless
//! every payment was charged once or dead-lettered after three attempts.
//!
//! ```text
//! cargo run -p sluicegate-kafka-io --example retry_topics [-- --brokers HOST:PORT]
//! ```
//!
//! The broker defaults to 127.0.0.1:9092 (`scripts/kafka-up` starts one);
//! `--brokers` or `SLUICEGATE_BROKERS` points elsewhere.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use bytes::Bytes;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sluicegate_core::{Graph, Origin, Outputs, Stage, StageSpec, Stream, Transient};
use sluicegate_kafka_io::retry::Attempt;
use sluicegate_kafka_io::{DeadLetterSink, KafkaConfig, KafkaSource, RetryTopics, headers};

mod common;

const PAYMENTS: usize = 500;
const PARTITIONS: i32 = 3;
const PATIENCE: Duration = Duration::from_secs(60);

/// The payment service: busy for one payment in five the first time, and
/// for one in fifty every time.
#[derive(Clone, Default)]
struct Charge {
    charged: Arc<Mutex<Vec<usize>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("payment service busy for payment {0}")]
struct Busy(usize);

impl Stage for Charge {
    type In = Bytes;
    type Out = ();
    type Error = Transient;

    async fn process(&self, payload: Bytes, origin: &Origin) -> Result<Outputs<()>, Transient> {
        let n: usize = std::str::from_utf8(&payload)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Transient::new("not a payment number"))?;
        let retried = origin
            .headers
            .iter()
            .any(|(k, _)| k == headers::RETRY_ATTEMPT);
        if n % 50 == 0 || (n % 5 == 0 && !retried) {
            return Err(Transient::new(Busy(n)));
        }
        if let Ok(mut c) = self.charged.lock() {
            c.push(n);
        }
        Ok(Outputs::one(()))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let brokers = common::brokers();
    common::check_broker(&brokers)?;
    let input = common::unique("payments");
    let dlq = format!("{input}-dlq");
    let retry = RetryTopics::new(
        &input,
        &[Duration::from_millis(500), Duration::from_secs(1)],
    );
    for topic in [&input, &dlq].into_iter().chain(&retry.topics()) {
        common::ensure_topic(&brokers, topic, PARTITIONS).await?;
    }
    common::produce(
        &brokers,
        &input,
        PARTITIONS,
        PAYMENTS,
        |i| Some(i.to_string().into_bytes()),
        |i| i.to_string().into_bytes(),
    )
    .await?;

    let config = KafkaConfig::new(&brokers);
    let group = common::unique("payments-group");
    let payments = KafkaSource::new(config.clone(), &group, [&input]);
    let progress = payments.handle();
    let retries = KafkaSource::new(config.clone(), format!("{group}.retry"), retry.topics())
        .due_header(headers::RETRY_DUE);
    let dead_letters = DeadLetterSink::new(&config, &dlq)?.retry(retry.clone());
    let routed = dead_letters.retry_stats();
    let charge = Charge::default();
    let mut g = Graph::builder("retry_topics");
    g.dead_letters(StageSpec::new("dead_letters", dead_letters));
    let first = g.source("payments", payments);
    let again = g.source("retries", retries);
    Stream::merge(vec![first, again]).to(StageSpec::new("charge", charge.clone()));
    let running = g.build()?.start().await?;

    // The input's commits reach its end while refused payments go round.
    let started = Instant::now();
    let end = PAYMENTS as i64;
    while progress
        .partitions()
        .iter()
        .filter_map(|p| p.state.committed)
        .sum::<i64>()
        < end
    {
        ensure!(
            started.elapsed() < PATIENCE,
            "the input's commits did not reach its end"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let charged_then = charge.charged.lock().map(|c| c.len()).unwrap_or(0);
    println!(
        "input committed to its end after {:.1} s; {charged_then} payments charged, {} sent to {} so far",
        started.elapsed().as_secs_f64(),
        routed.scheduled[0].load(std::sync::atomic::Ordering::Relaxed),
        retry.topics()[0],
    );

    // Every payment charged once, or dead-lettered after its last level.
    let busy_always: BTreeSet<usize> = (0..PAYMENTS).filter(|n| n % 50 == 0).collect();
    let want: BTreeSet<usize> = (0..PAYMENTS).filter(|n| n % 50 != 0).collect();
    while charge.charged.lock().map(|c| c.len()).unwrap_or(0) < want.len()
        || routed
            .dead_lettered
            .load(std::sync::atomic::Ordering::Relaxed)
            < busy_always.len() as u64
    {
        ensure!(started.elapsed() < PATIENCE, "not every payment finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = running.shutdown(Duration::from_secs(30)).await;
    ensure!(
        report.is_clean(),
        "the pipeline did not end cleanly: {report:?}"
    );
    let charged = charge.charged.lock().map(|c| c.clone()).unwrap_or_default();
    let distinct: BTreeSet<usize> = charged.iter().copied().collect();
    ensure!(
        distinct == want,
        "charged {} distinct payments, want {}",
        distinct.len(),
        want.len()
    );
    ensure!(charged.len() == want.len(), "a payment was charged twice");
    for (level, (topic, delay)) in retry.levels().iter().enumerate() {
        println!(
            "{topic}: {} payments retried after {delay:?}",
            routed.scheduled[level].load(std::sync::atomic::Ordering::Relaxed)
        );
    }

    // The dead-letter topic, read back: the always-busy payments, each with
    // three attempts in its history.
    let letters = read_all(&brokers, &dlq, busy_always.len()).await?;
    let mut seen = BTreeSet::new();
    for (n, history) in &letters {
        ensure!(history.len() == 3, "payment {n}: {history:?}");
        seen.insert(*n);
    }
    ensure!(
        seen == busy_always,
        "dead-lettered {seen:?}, want {busy_always:?}"
    );
    if let Some((n, history)) = letters.first() {
        println!(
            "{dlq}: {} payments after 3 attempts; payment {n}:",
            letters.len()
        );
        for a in history {
            println!(
                "  attempt {} at {} ms in {}: {}",
                a.attempt, a.at, a.stage, a.error
            );
        }
    }
    common::delete_topics(
        &brokers,
        &[&input, &dlq, &retry.topics()[0], &retry.topics()[1]],
    )
    .await;
    println!(
        "ok: {} charged once each, {} dead-lettered with their history",
        want.len(),
        busy_always.len()
    );
    Ok(())
}

/// Reads `n` records of `topic` from the start: each payment number and
/// the history its headers carry.
async fn read_all(
    brokers: &str,
    topic: &str,
    n: usize,
) -> anyhow::Result<Vec<(usize, Vec<Attempt>)>> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", common::unique("read"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut out = Vec::new();
        while out.len() < n {
            if started.elapsed() > PATIENCE {
                bail!("{} of {n} records in {topic}", out.len());
            }
            let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = m?;
            let number = std::str::from_utf8(m.payload().unwrap_or_default())?.parse()?;
            let history = rdkafka::message::Headers::iter(
                m.headers()
                    .ok_or_else(|| anyhow::anyhow!("a dead letter without headers"))?,
            )
            .find(|h| h.key == headers::RETRY_HISTORY)
            .and_then(|h| h.value)
            .map(serde_json::from_slice::<Vec<Attempt>>)
            .transpose()?
            .unwrap_or_default();
            out.push((number, history));
        }
        out.sort_by_key(|(n, _)| *n);
        Ok(out)
    })
    .await?
}
