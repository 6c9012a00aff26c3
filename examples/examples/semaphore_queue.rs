//! Rebuilds the seed's semaphore work queue (strategy 4): 20 jobs of 200 ms
//! async work, at most 5 in flight.
//!
//! The seed guards each spawned task with a `Semaphore` permit. Here the
//! limit is the stage's `.concurrency(5)`: the stage runs at most 5 items at
//! once, and its mailbox (capacity 10, twice the concurrency as the seed
//! suggests) holds the rest back, so the source waits instead of spawning
//! 20 tasks that queue on a semaphore.
//!
//! What to look at in the output: the in-flight count measured inside the
//! work itself never exceeds 5, the jobs start in waves of 5, and the whole
//! run takes about 4 waves x 200 ms = 0.8 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::bail;
use sluicegate_core::testing::{AckLog, CollectSink, VecSource};
use sluicegate_core::{Graph, StageSpec, then};
use sluicegate_examples::{check_nothing_lost, init_tracing};
use tokio::time::Instant;

const JOBS: u64 = 20;
const MAX_IN_FLIGHT: usize = 5;

/// Counts jobs running right now and the most ever running at once.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let acks = AckLog::new();
    let results = CollectSink::new();
    let in_flight = Arc::new(InFlight::default());
    let start = Instant::now();

    let tracker = in_flight.clone();
    let work = then(move |i: u64| {
        let tracker = tracker.clone();
        async move {
            let running = tracker.now.fetch_add(1, Ordering::SeqCst) + 1;
            tracker.max.fetch_max(running, Ordering::SeqCst);
            let t = start.elapsed().as_secs_f64();
            println!("[{t:.2}s] processing {i:>2} (in flight: {running}/{MAX_IN_FLIGHT})");
            tokio::time::sleep(Duration::from_millis(200)).await;
            tracker.now.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>((i, i * 2))
        }
    });

    let mut g = Graph::builder("semaphore-queue");
    g.source("jobs", VecSource::new((0..JOBS).collect(), acks.clone()))
        .via(
            StageSpec::new("work", work)
                .concurrency(MAX_IN_FLIGHT)
                .capacity(2 * MAX_IN_FLIGHT),
        )
        .to(StageSpec::new("results", results.clone()));
    let report = g.build()?.start().await?.wait().await;

    let mut done = results.items();
    done.sort_unstable();
    let max = in_flight.max.load(Ordering::SeqCst);
    let pairs: Vec<String> = done.iter().map(|(i, r)| format!("{i}->{r}")).collect();
    println!("results: {}", pairs.join(" "));
    println!(
        "{} jobs done, max observed in flight {max} (limit {MAX_IN_FLIGHT}), elapsed {:.2}s",
        done.len(),
        report.elapsed.as_secs_f64()
    );
    check_nothing_lost(&report, &acks, JOBS as usize, false)?;
    if max != MAX_IN_FLIGHT {
        bail!("expected exactly {MAX_IN_FLIGHT} jobs in flight at the peak, saw {max}");
    }
    println!("ok: all {JOBS} jobs delivered, never more than {MAX_IN_FLIGHT} at once");
    Ok(())
}
