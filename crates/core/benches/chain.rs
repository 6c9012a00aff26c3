//! Throughput of an in-memory chain `source → validate → process → store`:
//! sluicegate against a hand-written chain of `tokio::sync::mpsc` channels.
//!
//! Both run the same trivial work on `u64` payloads (validate = `x + 1`,
//! process = `x * 2`, store = count) on a multi-thread Tokio runtime with two
//! worker threads, at queue capacity 1024 and at the seed's capacity 5.
//!
//! - **sluicegate**: a [`Graph`] of a generator [`Source`] and three stages;
//!   every envelope carries an [`Ack`] to a counting [`AckReceiver`] (acks
//!   on), and the metrics are on (they always are).
//! - **hand**: the seed's "End-to-End Backpressure" program without its
//!   sleeps: ingest, validate, process and store tasks joined by three
//!   bounded `mpsc` channels, no acknowledgements, no metrics.
//!
//! Run with `cargo bench -p sluicegate-core --bench chain`. Criterion prints
//! its usual report per benchmark; at the end a table gives the median
//! messages per second of each and the sluicegate/hand ratio.
//!
//! `SLUICEGATE_BENCH_N` changes the messages per iteration (default 1,000,000).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use sluicegate_core::{
    Ack, AckReceiver, BoxError, Envelope, Graph, Origin, Outcome, Outputs, Source, SourceContext,
    Stage, StageSpec, map,
};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

/// Messages per benchmark iteration unless `SLUICEGATE_BENCH_N` says otherwise.
const DEFAULT_N: u64 = 1_000_000;
/// The queue capacities compared: a roomy one and the seed's.
const CAPACITIES: [usize; 2] = [1024, 5];
/// Samples per benchmark (criterion's minimum).
const SAMPLES: usize = 10;

fn messages() -> u64 {
    std::env::var("SLUICEGATE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_N)
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------- sluicegate

/// Counts delivered acknowledgements (and everything else, separately).
#[derive(Default)]
struct CountAcks {
    delivered: AtomicU64,
    other: AtomicU64,
}

impl AckReceiver for CountAcks {
    fn on_ack(&self, _origin: &Origin, outcome: Outcome) {
        if outcome.is_delivered() {
            self.delivered.fetch_add(1, Ordering::Relaxed);
        } else {
            self.other.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Emits `0..n` as fast as the graph takes them, each with its own
/// acknowledgement; no `Vec` of `n` items is built.
struct Generator {
    n: u64,
    acks: Arc<CountAcks>,
}

impl Source for Generator {
    type Out = u64;

    async fn run(self, mut cx: SourceContext<u64>) -> Result<(), BoxError> {
        let receiver: Arc<dyn AckReceiver> = self.acks;
        for i in 0..self.n {
            let ack = Ack::new(Origin::at(0, i as i64), receiver.clone());
            if let Err(e) = cx.emit(Envelope::new(i, ack)).await {
                let (_, ack) = e.into_inner().into_parts();
                ack.resolve(Outcome::Failed(sluicegate_core::ItemError::new(
                    "generator",
                    sluicegate_core::FailureKind::Abandoned,
                    "graph stopped taking input",
                )));
                return Err("graph stopped taking input".into());
            }
        }
        Ok(())
    }
}

/// The store: a sink that counts what reaches it.
struct CountSink {
    stored: Arc<AtomicU64>,
}

impl Stage for CountSink {
    type In = u64;
    type Out = ();
    type Error = Infallible;

    fn process(
        &self,
        input: u64,
        _origin: &Origin,
    ) -> impl Future<Output = Result<Outputs<()>, Infallible>> + Send {
        std::hint::black_box(input);
        self.stored.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok(Outputs::one(())))
    }
}

/// One run of the sluicegate chain over `n` messages.
async fn sluicegate_chain(n: u64, capacity: usize) {
    let acks = Arc::new(CountAcks::default());
    let stored = Arc::new(AtomicU64::new(0));
    let mut g = Graph::builder("chain");
    g.source(
        "source",
        Generator {
            n,
            acks: acks.clone(),
        },
    )
    .via(StageSpec::new("validate", map(|x: u64| x + 1)).capacity(capacity))
    .via(StageSpec::new("process", map(|x: u64| x * 2)).capacity(capacity))
    .to(StageSpec::new(
        "store",
        CountSink {
            stored: stored.clone(),
        },
    )
    .capacity(capacity));
    let graph = g.build().expect("valid graph");
    let report = graph.start().await.expect("graph starts").wait().await;
    assert!(report.is_clean(), "unclean run: {report:?}");
    assert_eq!(stored.load(Ordering::Relaxed), n, "store count");
    assert_eq!(acks.delivered.load(Ordering::Relaxed), n, "delivered acks");
    assert_eq!(acks.other.load(Ordering::Relaxed), 0, "undelivered acks");
}

// ---------------------------------------------------------- hand-written mpsc

async fn ingest(n: u64, tx: mpsc::Sender<u64>) {
    for i in 0..n {
        tx.send(i).await.expect("validate alive");
    }
}

async fn validate(mut rx: mpsc::Receiver<u64>, tx: mpsc::Sender<u64>) {
    while let Some(x) = rx.recv().await {
        tx.send(x + 1).await.expect("process alive");
    }
}

async fn process(mut rx: mpsc::Receiver<u64>, tx: mpsc::Sender<u64>) {
    while let Some(x) = rx.recv().await {
        tx.send(x * 2).await.expect("store alive");
    }
}

async fn store(mut rx: mpsc::Receiver<u64>) -> u64 {
    let mut count = 0;
    while let Some(x) = rx.recv().await {
        std::hint::black_box(x);
        count += 1;
    }
    count
}

/// One run of the seed's hand-written chain over `n` messages.
async fn hand_chain(n: u64, capacity: usize) {
    let (ingest_tx, validate_rx) = mpsc::channel(capacity);
    let (validate_tx, process_rx) = mpsc::channel(capacity);
    let (process_tx, store_rx) = mpsc::channel(capacity);
    let h1 = tokio::spawn(ingest(n, ingest_tx));
    let h2 = tokio::spawn(validate(validate_rx, validate_tx));
    let h3 = tokio::spawn(process(process_rx, process_tx));
    let h4 = tokio::spawn(store(store_rx));
    h1.await.expect("ingest");
    h2.await.expect("validate");
    h3.await.expect("process");
    assert_eq!(h4.await.expect("store"), n, "store count");
}

// ------------------------------------------------------------------ harness

/// Every timed call of each benchmark: (iterations, elapsed). Criterion calls
/// the routine for its warm-up first, then once per sample, so the last
/// [`SAMPLES`] calls are the measured samples.
type Timings = Arc<Mutex<BTreeMap<(usize, &'static str), Vec<(u64, Duration)>>>>;

fn bench_chain(c: &mut Criterion, n: u64, timings: &Timings) {
    let rt = runtime();
    let mut group = c.benchmark_group("chain");
    group
        .throughput(Throughput::Elements(n))
        .sample_size(SAMPLES)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for capacity in CAPACITIES {
        for which in ["sluicegate", "hand"] {
            group.bench_with_input(
                BenchmarkId::new(which, format!("cap{capacity}")),
                &capacity,
                |b, &capacity| {
                    b.iter_custom(|iters| {
                        let elapsed = rt.block_on(async {
                            let start = Instant::now();
                            for _ in 0..iters {
                                if which == "sluicegate" {
                                    sluicegate_chain(n, capacity).await;
                                } else {
                                    hand_chain(n, capacity).await;
                                }
                            }
                            start.elapsed()
                        });
                        timings
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry((capacity, which))
                            .or_default()
                            .push((iters, elapsed));
                        elapsed
                    });
                },
            );
        }
    }
    group.finish();
}

/// Median, min and max messages per second over the measured samples.
fn rates(n: u64, calls: &[(u64, Duration)]) -> Option<(f64, f64, f64)> {
    let samples = &calls[calls.len().saturating_sub(SAMPLES)..];
    let mut r: Vec<f64> = samples
        .iter()
        .filter(|(_, d)| !d.is_zero())
        .map(|(iters, d)| (n * iters) as f64 / d.as_secs_f64())
        .collect();
    if r.is_empty() {
        return None;
    }
    r.sort_by(f64::total_cmp);
    let mid = r.len() / 2;
    let median = if r.len() % 2 == 0 {
        (r[mid - 1] + r[mid]) / 2.0
    } else {
        r[mid]
    };
    Some((median, r[0], r[r.len() - 1]))
}

fn print_table(n: u64, timings: &Timings) {
    let t = timings.lock().unwrap_or_else(|e| e.into_inner());
    if t.is_empty() {
        return;
    }
    let m = |v: f64| format!("{:.2}M", v / 1e6);
    println!();
    println!(
        "chain: {n} messages per iteration, 2 worker threads; msg/s = median of the last {SAMPLES} samples [min..max]"
    );
    println!(
        "{:>8} | {:>26} | {:>26} | {:>16}",
        "capacity", "sluicegate msg/s", "hand mpsc msg/s", "sluicegate/hand"
    );
    for capacity in CAPACITIES {
        let sg = t.get(&(capacity, "sluicegate")).and_then(|c| rates(n, c));
        let hand = t.get(&(capacity, "hand")).and_then(|c| rates(n, c));
        let cell = |r: Option<(f64, f64, f64)>| match r {
            Some((med, lo, hi)) => format!("{} [{}..{}]", m(med), m(lo), m(hi)),
            None => "-".into(),
        };
        let ratio = match (sg, hand) {
            (Some((a, ..)), Some((b, ..))) => format!("{:.2}x", a / b),
            _ => "-".into(),
        };
        println!(
            "{capacity:>8} | {:>26} | {:>26} | {ratio:>16}",
            cell(sg),
            cell(hand)
        );
    }
}

fn main() {
    let n = messages();
    let timings: Timings = Arc::default();
    let mut c = Criterion::default()
        .sample_size(SAMPLES)
        .configure_from_args();
    bench_chain(&mut c, n, &timings);
    c.final_summary();
    print_table(n, &timings);
}
