//! A graph fed by other tasks through a bounded channel
//! (`sources::channel`): the graph's backpressure reaches the tasks that
//! send.
//!
//! A producer task offers 2,000 readings as fast as it can; the graph
//! squares them and a deliberately slow stage (1 ms a reading, one at a
//! time) records them. The channel holds 16 readings, the square stage's
//! mailbox 8 and the slow stage's 32, so the producer can never be more
//! than 57 readings ahead of the slow stage (56 waiting, 1 being
//! recorded): its `send` waits for room instead of piling readings up in
//! memory.
//!
//! What to look at in the output: the largest lead of the producer over
//! the slow stage, measured while it runs, stays at 57 or below; every
//! reading is delivered exactly once.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use sluicegate_core::{AckCounter, Graph, StageSpec, map, sources, then};
use sluicegate_examples::init_tracing;

const READINGS: u64 = 2_000;
const CHANNEL: usize = 16;
const SLOW_MAILBOX: usize = 32;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let outcomes = AckCounter::new();
    let sent = Arc::new(AtomicU64::new(0));
    let recorded = Arc::new(AtomicU64::new(0));
    let max_lead = Arc::new(AtomicU64::new(0));

    let (tx, source) = sources::channel::<u64>(CHANNEL);
    let mut g = Graph::builder("channel-source");
    g.source("readings", source.acks(outcomes.clone()))
        .via(StageSpec::new("square", map(|n: u64| n * n)).capacity(8))
        .to(StageSpec::new(
            "record",
            then({
                let recorded = recorded.clone();
                move |_squared: u64| {
                    let recorded = recorded.clone();
                    async move {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        recorded.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(())
                    }
                }
            }),
        )
        .capacity(SLOW_MAILBOX));
    let running = g.build()?.start().await?;

    let producer = tokio::spawn({
        let (sent, recorded, max_lead) = (sent.clone(), recorded.clone(), max_lead.clone());
        async move {
            for n in 0..READINGS {
                if tx.send(n).await.is_err() {
                    break;
                }
                let lead =
                    sent.fetch_add(1, Ordering::SeqCst) + 1 - recorded.load(Ordering::SeqCst);
                max_lead.fetch_max(lead, Ordering::SeqCst);
            }
            // Dropping the sender ends the source once the channel is empty.
        }
    });
    producer.await?;
    let report = running.wait().await;

    println!(
        "sent {} readings, recorded {}; the producer was at most {} ahead of the slow stage \
         (channel {CHANNEL} + square's mailbox 8 + record's mailbox {SLOW_MAILBOX} + 1 in hand = {} at most)",
        sent.load(Ordering::SeqCst),
        recorded.load(Ordering::SeqCst),
        max_lead.load(Ordering::SeqCst),
        CHANNEL + 8 + SLOW_MAILBOX + 1,
    );
    println!(
        "outcomes: {} delivered, {} resolved in all",
        outcomes.delivered(),
        outcomes.resolved()
    );
    if !report.is_clean() {
        bail!("the run did not end cleanly: {report:?}");
    }
    if outcomes.delivered() != READINGS || outcomes.resolved() != READINGS {
        bail!("expected {READINGS} readings delivered once each");
    }
    if max_lead.load(Ordering::SeqCst) > (CHANNEL + 8 + SLOW_MAILBOX + 1) as u64 {
        bail!("the producer ran further ahead than the bounds allow");
    }
    Ok(())
}
