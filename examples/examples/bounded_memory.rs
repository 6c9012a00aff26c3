//! Rebuilds the seed's "unbounded vs bounded" pattern: a producer that makes
//! 1 KiB payloads as fast as it can, feeding a stage that needs about 1 ms
//! per item, for about 3 seconds.
//!
//! The seed's first program used `mpsc::unbounded_channel`: the producer never
//! waits, so the queue (and the process's memory) grows without limit until
//! the OOM killer steps in. Sluicegate has no unbounded queue to reproduce
//! that with, and this example does not try. Every stage sits behind a
//! bounded mailbox, so the producer is held to the consumer's pace.
//!
//! What to look at in the output: the source spent most of its time
//! *blocked* (waiting for room), the mailbox's peak depth never exceeds its
//! capacity, and the peak RSS stays within a few MiB of the baseline even
//! though megabytes of payloads went through.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluicegate_core::testing::AckLog;
use sluicegate_core::{BoxError, Envelope, Graph, Source, SourceContext, StageSpec, sink, then};
use sluicegate_examples::{check_nothing_lost, init_tracing, mib, peak_rss_kib, rss_kib};
use tokio::time::Instant;

const PAYLOAD: usize = 1024;
const RUN_FOR: Duration = Duration::from_secs(3);
const CAPACITY: usize = 16;

/// Makes a fresh 1 KiB payload per record until `RUN_FOR` has passed. It
/// never sleeps: the only thing slowing it down is `emit` waiting for room.
struct FastProducer {
    acks: AckLog,
}

impl Source for FastProducer {
    type Out = Vec<u8>;

    async fn run(self, mut cx: SourceContext<Vec<u8>>) -> Result<(), BoxError> {
        let stop_at = Instant::now() + RUN_FOR;
        let mut offset = 0i64;
        while Instant::now() < stop_at && !cx.is_shutting_down() {
            let payload = vec![(offset % 251) as u8; PAYLOAD];
            if let Err(refused) = cx.emit(Envelope::new(payload, self.acks.ack(offset))).await {
                return Err(format!("graph stopped taking input: {refused}").into());
            }
            offset += 1;
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let baseline = rss_kib();
    let acks = AckLog::new();
    let bytes_stored = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = bytes_stored.clone();

    let mut g = Graph::builder("bounded-memory");
    g.source("producer", FastProducer { acks: acks.clone() })
        .via(
            StageSpec::new(
                "slow-consumer",
                then(|data: Vec<u8>| async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Ok::<_, std::convert::Infallible>(data.len())
                }),
            )
            .capacity(CAPACITY),
        )
        .to(StageSpec::new(
            "count-bytes",
            sink(move |len: usize| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed);
                    Ok::<_, std::convert::Infallible>(())
                }
            }),
        ));

    println!("producing 1 KiB payloads as fast as possible for {RUN_FOR:?}...");
    let report = g.build()?.start().await?.wait().await;
    let snap = &report.snapshot;
    let producer = snap.stage("producer").context("no producer metrics")?;
    let consumer = snap
        .mailbox("slow-consumer")
        .context("no consumer mailbox")?;
    // A source only records time spent blocked in `emit`; compare it to the wall clock.
    let blocked = producer.blocked_ns as f64 / report.elapsed.as_nanos() as f64;
    let sent = producer.items_out as usize;
    let stored = bytes_stored.load(std::sync::atomic::Ordering::Relaxed);

    println!("ran for {:.2}s", report.elapsed.as_secs_f64());
    println!(
        "records: {sent} produced, {} delivered ({:.1} MiB of payload, {:.0}/s)",
        acks.delivered(),
        stored as f64 / (1024.0 * 1024.0),
        sent as f64 / report.elapsed.as_secs_f64()
    );
    let work = &snap
        .stage("slow-consumer")
        .context("no consumer metrics")?
        .latency;
    println!(
        "slow-consumer: {:.2} ms per record on average (sleep(1ms) rounds up to timer ticks)",
        work.sum_ns as f64 / work.count().max(1) as f64 / 1e6
    );
    println!(
        "producer blocked {:.0}% of its time: it was held to the consumer's pace",
        blocked * 100.0
    );
    println!(
        "slow-consumer mailbox: peak depth {} / capacity {} (at most {} KiB of payload queued)",
        consumer.peak_depth,
        consumer.capacity,
        consumer.capacity * PAYLOAD / 1024
    );
    println!(
        "RSS: {} at start, peak (VmHWM) {}",
        mib(baseline),
        mib(peak_rss_kib())
    );

    check_nothing_lost(&report, &acks, sent, false)?;
    if consumer.peak_depth > consumer.capacity {
        anyhow::bail!("mailbox went over its capacity");
    }
    println!("ok: every record delivered exactly once, the queue never outgrew its bound");
    Ok(())
}
