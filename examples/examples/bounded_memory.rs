//! Rebuilds the seed's "unbounded vs bounded" pattern: a producer that makes
//! 1 KiB payloads as fast as it can, feeding a stage that needs about 1 ms
//! per item, for about 3 seconds, then a checksum on the blocking pool.
//!
//! The seed's first program used `mpsc::unbounded_channel`: the producer never
//! waits, so the queue (and the process's memory) grows without limit until
//! the OOM killer steps in. Sluicegate has no unbounded queue to reproduce
//! that with, and this example does not try. Every stage sits behind a
//! bounded mailbox, so the producer is held to the consumer's pace.
//!
//! What to look at in the output: the source spent most of its time
//! *blocked* (waiting for room), no mailbox's peak depth exceeds its
//! capacity, and the peak RSS stays within a few MiB of the baseline even
//! though megabytes of payloads went through; run it longer and the peak does
//! not move. (Acks are counted by an `AckCounter`, not kept per record in an
//! `AckLog`, so that the bookkeeping itself does not grow with the run.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use sluicegate_core::AckReceiver;
use sluicegate_core::testing::AckCounter;
use sluicegate_core::{Ack, BoxError, Envelope, Graph, Origin, Source, SourceContext};
use sluicegate_core::{StageSpec, blocking, then};
use sluicegate_examples::{check_all_delivered, init_tracing, mib, peak_rss_kib, rss_kib};
use tokio::time::Instant;

const PAYLOAD: usize = 1024;
const RUN_FOR: Duration = Duration::from_secs(3);
const CAPACITY: usize = 16;

/// Makes a fresh 1 KiB payload per record until `RUN_FOR` has passed. It
/// never sleeps: the only thing slowing it down is `emit` waiting for room.
struct FastProducer {
    acks: Arc<dyn AckReceiver>,
}

impl Source for FastProducer {
    type Out = Vec<u8>;

    async fn run(self, mut cx: SourceContext<Vec<u8>>) -> Result<(), BoxError> {
        let stop_at = Instant::now() + RUN_FOR;
        let mut offset = 0i64;
        while Instant::now() < stop_at && !cx.is_shutting_down() {
            let payload = vec![(offset % 251) as u8; PAYLOAD];
            let ack = Ack::new(Origin::at(0, offset), self.acks.clone());
            // A refused envelope resolves as failed when the error is dropped.
            cx.emit(Envelope::new(payload, ack)).await?;
            offset += 1;
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let baseline = rss_kib();
    let acks = AckCounter::new();
    let bytes_seen = Arc::new(AtomicU64::new(0));
    let counter = bytes_seen.clone();

    let mut g = Graph::builder("bounded-memory");
    g.source(
        "producer",
        FastProducer {
            acks: Arc::new(acks.clone()),
        },
    )
    .via(
        StageSpec::new(
            "slow-consumer",
            then(|data: Vec<u8>| async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok::<_, std::convert::Infallible>(data)
            }),
        )
        .capacity(CAPACITY),
    )
    .to(
        // CPU work (a byte sum) on Tokio's blocking pool, two at a time.
        StageSpec::new(
            "checksum",
            blocking(2, move |data: Vec<u8>| {
                let sum: u64 = data.iter().map(|&b| u64::from(b)).sum();
                counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                std::hint::black_box(sum);
                Ok::<_, std::convert::Infallible>(())
            }),
        )
        // blocking(2, ..) runs two at once by itself; the mailbox holds two more.
        .capacity(4),
    );

    println!("producing 1 KiB payloads as fast as possible for {RUN_FOR:?}...");
    let report = g.build()?.start().await?.wait().await;
    let snap = &report.snapshot;
    let producer = snap.stage("producer").context("no producer")?;
    let (_, blocked, _) = producer.time_split(None);
    let sent = producer.items_out as usize;
    let bytes = bytes_seen.load(Ordering::Relaxed);

    println!("ran for {:.2}s", report.elapsed.as_secs_f64());
    println!(
        "records: {sent} produced, {} delivered ({:.1} MiB checksummed, {:.0}/s)",
        acks.delivered(),
        bytes as f64 / (1024.0 * 1024.0),
        sent as f64 / report.elapsed.as_secs_f64()
    );
    let work = &snap.stage("slow-consumer").context("no stage")?.latency;
    println!(
        "slow-consumer: {:.2} ms per record on average (sleep(1ms) rounds up to timer ticks)",
        work.sum_ns as f64 / work.count().max(1) as f64 / 1e6
    );
    println!(
        "producer blocked {:.0}% of its time: it was held to the consumer's pace",
        blocked * 100.0
    );
    let mut bound = 0;
    for m in &snap.mailboxes {
        println!(
            "mailbox {:<13} peak depth {:>2} / capacity {}",
            m.stage, m.peak_depth, m.capacity
        );
        if m.peak_depth > m.capacity {
            anyhow::bail!("mailbox {} went over its capacity", m.stage);
        }
        bound += m.capacity * PAYLOAD / 1024;
    }
    println!("payload held in mailboxes (waiting + in progress): at most {bound} KiB");
    let peak = mib(peak_rss_kib());
    println!("RSS: {} at start, peak (VmHWM) {peak}", mib(baseline));

    check_all_delivered(&acks, &report, sent as u64)?;
    println!("ok: all {sent} records delivered, none lost; no mailbox outgrew its bound");
    Ok(())
}
