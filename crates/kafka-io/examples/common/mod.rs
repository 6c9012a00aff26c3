//! What the Kafka examples and the `kafka` benchmark share: where the
//! broker is, topics made and removed, input produced fast.
//!
//! Not an example of sluicegate itself: plain rdkafka, so that the input a
//! pipeline reads was written by something other than the code under test.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The broker used when neither `--brokers` nor `SLUICEGATE_BROKERS` says
/// otherwise: the one `scripts/kafka-up` starts.
pub(crate) const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

/// The brokers: `--brokers HOST:PORT[,...]` on the command line, else the
/// `SLUICEGATE_BROKERS` environment variable, else [`DEFAULT_BROKERS`].
pub(crate) fn brokers() -> String {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--brokers")
        && let Some(b) = args.get(i + 1)
    {
        return b.clone();
    }
    std::env::var("SLUICEGATE_BROKERS")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_BROKERS.to_string())
}

/// Fails with a message saying what to do if nothing listens at the first
/// broker address.
pub(crate) fn check_broker(brokers: &str) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs;
    let first = brokers.split(',').next().unwrap_or(brokers).trim();
    let reachable = first
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
        });
    if !reachable {
        bail!(
            "no Kafka broker at {first}: start one with scripts/kafka-up, \
             or point SLUICEGATE_BROKERS (or --brokers) at yours"
        );
    }
    Ok(())
}

/// A name no earlier run used: topics and groups live as long as the broker.
pub(crate) fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn admin(brokers: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("creating the admin client")
}

/// Creates `topic` with `partitions` partitions if it does not exist
/// (sluicegate's own [`admin::ensure_topics`](sluicegate_kafka_io::admin::ensure_topics)),
/// and waits until every partition has a leader.
pub(crate) async fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let config = sluicegate_kafka_io::KafkaConfig::new(brokers);
    sluicegate_kafka_io::admin::ensure_topics(
        &config,
        &[(topic, partitions)],
        Duration::from_secs(15),
    )
    .await
    .with_context(|| format!("creating topic {topic}"))
}

/// Deletes topics (best effort: a run's topics are not worth failing over).
pub(crate) async fn delete_topics(brokers: &str, topics: &[&str]) {
    let Ok(admin) = admin(brokers) else { return };
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    if let Err(e) = admin.delete_topics(topics, &opts).await {
        eprintln!("note: could not delete topics {topics:?}: {e}");
    }
}

/// Produces `n` records to `topic`: record `i` has payload `payload(i)`,
/// key `key(i)` and goes to partition `i % partitions`. Fast (batches of up
/// to 1 MiB, 20 ms linger, up to 100,000 deliveries awaited at once);
/// returns once the broker acknowledged every record.
pub(crate) async fn produce(
    brokers: &str,
    topic: &str,
    partitions: i32,
    n: usize,
    key: impl Fn(usize) -> Option<Vec<u8>>,
    payload: impl Fn(usize) -> Vec<u8>,
) -> anyhow::Result<()> {
    const WINDOW: usize = 100_000;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("creating the input producer")?;
    let mut pending = FuturesUnordered::new();
    for i in 0..n {
        if pending.len() >= WINDOW {
            settle(pending.next().await)?;
        }
        let (k, p) = (key(i), payload(i));
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(&p)
            .partition((i % partitions as usize) as i32);
        if let Some(k) = &k {
            record = record.key(k);
        }
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| anyhow::anyhow!("enqueueing record {i}: {e}"))?;
        pending.push(delivery);
    }
    while let Some(d) = pending.next().await {
        settle(Some(d))?;
    }
    Ok(())
}

fn settle(
    delivery: Option<
        Result<
            rdkafka::producer::future_producer::OwnedDeliveryResult,
            futures::channel::oneshot::Canceled,
        >,
    >,
) -> anyhow::Result<()> {
    match delivery {
        Some(Ok(Ok(_))) | None => Ok(()),
        Some(Ok(Err((e, _)))) => bail!("producing the input: {e}"),
        Some(Err(_)) => bail!("producing the input: delivery canceled"),
    }
}

/// Reads `topic` from the start with a fresh group and counts its records:
/// returns once `expected` were read and nothing more came for `quiet`
/// (so a count above `expected` shows up), or when nothing came for 30 s.
///
/// Counting by reading, not by watermarks: a record read twice or missing
/// shows up, which the topic's offsets alone cannot tell.
pub(crate) async fn count_records(
    brokers: &str,
    topic: &str,
    expected: u64,
    quiet: Duration,
) -> anyhow::Result<u64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("count"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create()
        .context("creating the counting consumer")?;
    consumer.subscribe(&[topic])?;
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let mut count = 0u64;
        let mut last = std::time::Instant::now();
        loop {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(_)) => {
                    count += 1;
                    last = std::time::Instant::now();
                }
                Some(Err(e)) => eprintln!("counting {topic}: {e}"),
                None => {
                    let idle = last.elapsed();
                    if (count >= expected && idle >= quiet) || idle >= Duration::from_secs(30) {
                        return Ok(count);
                    }
                }
            }
        }
    })
    .await?
}

/// The offsets `group` has committed for partitions `0..partitions` of
/// `topic`, as the broker reports them (`None`: nothing committed).
pub(crate) fn committed_offsets(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<Vec<Option<i64>>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .context("creating an offsets client")?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .with_context(|| format!("reading the offsets committed by {group}"))?;
    Ok((0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect())
}
