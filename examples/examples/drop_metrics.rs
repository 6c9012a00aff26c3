//! Rebuilds the seed's `MetricsCollector` (strategy 2, "drop messages"): a
//! burst of 5000 metrics recorded with `try_send` into a 1000-slot buffer in
//! front of a consumer that flushes 100 at a time, slowly.
//!
//! Here the buffer is the flush sink's mailbox with a drop policy, so the
//! recorder never waits. Unlike `try_send`, nothing vanishes silently: every
//! dropped metric's acknowledgement resolves as `Dropped` (reason: mailbox
//! full) and the mailbox counts it. The graph runs twice:
//! `Overflow::DropNewest` keeps the oldest metrics, `Overflow::DropOldest`
//! keeps the newest (plus the batch already being flushed, which is never
//! dropped).
//!
//! What to look at in the output: which offsets survived under each policy,
//! and `delivered + dropped == sent`, checked against both the ack log and the
//! mailbox's `dropped` counter.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use sluicegate_core::stage::ItemResult;
use sluicegate_core::testing::AckLog;
use sluicegate_core::{BatchConfig, BatchSpec, BatchStage, BoxError, Envelope, Graph};
use sluicegate_core::{Origin, Outcome, Outputs, Overflow, Source, SourceContext};
use sluicegate_examples::{check_nothing_lost, init_tracing, ranges};

const SENT: usize = 5000;
const BUFFER: usize = 1000;

struct Metric {
    name: String,
    value: f64,
}

/// Records `SENT` metrics, pausing 1 ms every 1000 like the seed's loop.
struct Recorder {
    acks: AckLog,
}

impl Source for Recorder {
    type Out = Metric;

    async fn run(self, mut cx: SourceContext<Metric>) -> Result<(), BoxError> {
        for i in 0..SENT {
            let metric = Metric {
                name: "request_count".into(),
                value: i as f64,
            };
            // With a drop policy `emit` never waits: a full mailbox drops instead.
            cx.emit(Envelope::new(metric, self.acks.ack(i as i64)))
                .await?;
            if i % 1000 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Ok(())
    }
}

/// The slow consumer: 100 ms per flush, counting what it flushed.
struct Flusher {
    flushed: Arc<AtomicUsize>,
}

impl BatchStage for Flusher {
    type In = Metric;
    type Out = ();
    type Error = std::convert::Infallible;

    async fn process_batch(
        &self,
        batch: Vec<Metric>,
        _origins: &[&Origin],
    ) -> Result<Vec<ItemResult<(), Self::Error>>, Self::Error> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let values: Vec<i64> = batch.iter().map(|m| m.value as i64).collect();
        let name = batch.first().map_or("-", |m| m.name.as_str());
        println!("  flushed {:>3} x {name}: {}", batch.len(), ranges(&values));
        self.flushed.fetch_add(batch.len(), Ordering::Relaxed);
        Ok(batch.iter().map(|_| Ok(Outputs::one(()))).collect())
    }
}

async fn run(policy: Overflow) -> anyhow::Result<()> {
    let acks = AckLog::new();
    let flushed = Arc::new(AtomicUsize::new(0));
    let flusher = Flusher {
        flushed: flushed.clone(),
    };
    let mut g = Graph::builder(format!("metrics-{policy:?}"));
    let batching = BatchConfig::new(100, Duration::from_millis(200));
    g.source("recorder", Recorder { acks: acks.clone() })
        .to_batch(
            BatchSpec::new("flush", flusher, batching)
                .capacity(BUFFER)
                .overflow(policy),
        );
    println!("--- {policy:?}: {SENT} metrics into a {BUFFER}-slot mailbox ---");
    let report = g.build()?.start().await?.wait().await;

    let mailbox = report.snapshot.mailbox("flush").context("no mailbox")?;
    let (delivered, dropped) = (acks.delivered(), acks.dropped());
    let flushed = flushed.load(Ordering::Relaxed);
    println!(
        "delivered {delivered}, dropped {dropped} (mailbox counted {}): {delivered} + {dropped} = {}",
        mailbox.dropped,
        delivered + dropped
    );
    let kept = acks.offsets_where(Outcome::is_delivered);
    println!("offsets kept: {}", ranges(&kept));
    println!("took {:.2}s", report.elapsed.as_secs_f64());

    check_nothing_lost(&report, &acks, SENT, true)?;
    if mailbox.dropped as usize != dropped || flushed != delivered {
        bail!("the mailbox counter, the ack log and the sink disagree");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    run(Overflow::DropNewest).await?;
    run(Overflow::DropOldest).await?;
    println!("ok: every metric accounted for, delivered + dropped == sent under both policies");
    Ok(())
}
