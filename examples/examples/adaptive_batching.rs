//! Rebuilds the seed's adaptive batching consumer (strategy 3): wait for the
//! first item, then gather until 100 items or 50 ms after the first, and
//! process the whole batch at once (10 ms per batch).
//!
//! The seed hand-writes that loop with `timeout`; here it is a `batch_sink`
//! behind a `BatchSpec` with `BatchConfig::new(100, 50 ms)`, and the runtime
//! gathers. The producer sends bursts of 200 with 500 ms pauses, like the
//! seed, plus one short burst of 37 in the middle.
//!
//! What to look at in the output: under a burst, batches are full (100 items,
//! closed by size: the first of a burst waited ~0 ms, the second only for the
//! first's 10 ms of processing); the short burst becomes one small batch
//! closed by the 50 ms deadline (its first item waited ~50 ms). The batch
//! mailbox holds two batches (200), so a burst never waits for room.

use std::time::Duration;

use anyhow::Context;
use sluicegate_core::testing::AckLog;
use sluicegate_core::{BatchConfig, BatchSpec, BoxError, Envelope, Graph, batch_sink};
use sluicegate_core::{Source, SourceContext};
use sluicegate_examples::{check_nothing_lost, init_tracing};
use tokio::time::Instant;

const BURSTS: [usize; 4] = [200, 200, 37, 200];
const MAX_BATCH: usize = 100;

/// A record and the moment it was produced.
struct Item {
    label: String,
    produced: Instant,
}

/// Sends each burst as fast as the graph takes it, then pauses 500 ms.
struct Bursty {
    acks: AckLog,
    start: Instant,
}

impl Source for Bursty {
    type Out = Item;

    async fn run(self, mut cx: SourceContext<Item>) -> Result<(), BoxError> {
        let mut offset = 0;
        for (burst, size) in BURSTS.into_iter().enumerate() {
            let t = self.start.elapsed().as_secs_f64();
            println!("[{t:.2}s] --- burst {burst}: {size} items ---");
            for i in 0..size {
                let item = Item {
                    label: format!("burst-{burst}-item-{i}"),
                    produced: Instant::now(),
                };
                cx.emit(Envelope::new(item, self.acks.ack(offset))).await?;
                offset += 1;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let acks = AckLog::new();
    let start = Instant::now();
    let config = BatchConfig::new(MAX_BATCH, Duration::from_millis(50));
    // Processes a batch in 10 ms and says how big it was and how long its
    // oldest item had waited for the batch to close. The whole batch
    // succeeds or fails together (`batch_sink`): no per-item results to build.
    let process = batch_sink(move |batch: Vec<Item>| async move {
        let waited = batch
            .first()
            .map_or(Duration::ZERO, |i| i.produced.elapsed());
        let why = if batch.len() == MAX_BATCH {
            "full"
        } else {
            "deadline"
        };
        println!(
            "[{:.2}s] processing batch of {:>3} ({why}: first item waited {:>2} ms; last: {})",
            start.elapsed().as_secs_f64(),
            batch.len(),
            waited.as_millis(),
            batch.last().map_or("-", |i| i.label.as_str()),
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, std::convert::Infallible>(())
    });
    let spec = BatchSpec::new("batch", process, config);

    let mut g = Graph::builder("adaptive-batching");
    let bursty = Bursty {
        acks: acks.clone(),
        start,
    };
    g.source("bursty", bursty).to_batch(spec);
    let report = g.build()?.start().await?.wait().await;

    let sent: usize = BURSTS.iter().sum();
    // A batch stage's latency histogram has one observation per batch.
    let stage = report.snapshot.stage("batch").context("no batch stage")?;
    println!(
        "{sent} items in {} batches over {:.2}s; delivered {}",
        stage.latency.count(),
        report.elapsed.as_secs_f64(),
        acks.delivered()
    );
    check_nothing_lost(&report, &acks, sent, false)?;
    println!("ok: every item delivered exactly once");
    Ok(())
}
