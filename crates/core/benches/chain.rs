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
//! its usual report per benchmark. Then a paired pass prints the table:
//! sluicegate and hand runs alternate round by round, so a slow spell of the
//! (shared, noisy) machine hits both alike, and the ratio is the median of
//! the per-round ratios.
//!
//! `SLUICEGATE_BENCH_N` changes the messages per run (default 1,000,000),
//! `SLUICEGATE_BENCH_ROUNDS` the rounds of the paired pass (default 10).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
/// Rounds of the paired table unless `SLUICEGATE_BENCH_ROUNDS` says otherwise.
const DEFAULT_ROUNDS: usize = 10;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
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
///
/// The counters sit on their own cache line: the `Arc` around the receiver
/// has its reference count bumped by the source for every envelope, and
/// the bench should not measure false sharing between the two.
#[derive(Default)]
struct CountAcks {
    _pad: [u64; 16],
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
        // Batches of 64 per `emit_batch`: one mailbox lock per batch, as a
        // Kafka source handing on a fetched batch would.
        let receiver: Arc<dyn AckReceiver> = self.acks;
        let mut batch = std::collections::VecDeque::with_capacity(64);
        let mut i = 0;
        while i < self.n {
            let end = (i + 64).min(self.n);
            batch
                .extend((i..end).map(|i| {
                    Envelope::new(i, Ack::new(Origin::at(0, i as i64), receiver.clone()))
                }));
            i = end;
            if let Err(stop) = cx.emit_batch(&mut batch).await {
                for env in batch.drain(..) {
                    env.into_parts()
                        .1
                        .resolve(Outcome::Failed(sluicegate_core::ItemError::new(
                            "generator",
                            sluicegate_core::FailureKind::Abandoned,
                            "graph stopped taking input",
                        )));
                }
                return Err(stop.into());
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

async fn run_one(which: Which, n: u64, capacity: usize) {
    match which {
        Which::Sluicegate => sluicegate_chain(n, capacity).await,
        Which::Hand => hand_chain(n, capacity).await,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Sluicegate,
    Hand,
}

impl Which {
    fn id(self) -> &'static str {
        match self {
            Which::Sluicegate => "sluicegate",
            Which::Hand => "hand",
        }
    }
}

fn bench_chain(c: &mut Criterion, rt: &Runtime, n: u64) {
    let mut group = c.benchmark_group("chain");
    group
        .throughput(Throughput::Elements(n))
        .sample_size(SAMPLES)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for capacity in CAPACITIES {
        for which in [Which::Sluicegate, Which::Hand] {
            group.bench_with_input(
                BenchmarkId::new(which.id(), format!("cap{capacity}")),
                &capacity,
                |b, &capacity| {
                    b.iter_custom(|iters| {
                        rt.block_on(async {
                            let start = Instant::now();
                            for _ in 0..iters {
                                run_one(which, n, capacity).await;
                            }
                            start.elapsed()
                        })
                    });
                },
            );
        }
    }
    group.finish();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

/// The table: sluicegate and hand runs alternate (the first of each pair
/// alternates too), so a slow spell of the machine hits both alike; the
/// ratio is the median of the per-round ratios.
fn paired_table(rt: &Runtime, n: u64, rounds: usize, capacities: &[usize]) {
    if capacities.is_empty() {
        return;
    }
    let rate = |which: Which, capacity: usize| {
        rt.block_on(async {
            let start = Instant::now();
            run_one(which, n, capacity).await;
            n as f64 / start.elapsed().as_secs_f64()
        })
    };
    let m = |v: f64| format!("{:.2}M", v / 1e6);
    println!();
    println!(
        "chain, paired: {rounds} rounds of {n} messages each way, 2 worker threads; median msg/s [min..max]"
    );
    println!(
        "{:>8} | {:>24} | {:>24} | {:>22}",
        "capacity", "sluicegate msg/s", "hand mpsc msg/s", "sluicegate/hand"
    );
    for &capacity in capacities {
        let (mut sg, mut hand, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let (a, b) = if round % 2 == 0 {
                let a = rate(Which::Sluicegate, capacity);
                (a, rate(Which::Hand, capacity))
            } else {
                let b = rate(Which::Hand, capacity);
                (rate(Which::Sluicegate, capacity), b)
            };
            sg.push(a);
            hand.push(b);
            ratio.push(a / b);
        }
        let cell = |v: &mut Vec<f64>| {
            let med = median(v);
            format!("{} [{}..{}]", m(med), m(v[0]), m(v[v.len() - 1]))
        };
        let r = median(&mut ratio);
        println!(
            "{capacity:>8} | {:>24} | {:>24} | {:>22}",
            cell(&mut sg),
            cell(&mut hand),
            format!("{r:.2}x [{:.2}..{:.2}]", ratio[0], ratio[ratio.len() - 1])
        );
    }
}

fn main() {
    let n = env_or("SLUICEGATE_BENCH_N", DEFAULT_N);
    let rounds = env_or("SLUICEGATE_BENCH_ROUNDS", DEFAULT_ROUNDS as u64) as usize;
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`)
    // criterion runs each benchmark once as a test, and the table is skipped.
    let benching = args.iter().any(|a| a == "--bench");
    // A criterion filter (a plain argument) also narrows the table.
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let rt = runtime();
    let mut c = Criterion::default()
        .sample_size(SAMPLES)
        .configure_from_args();
    bench_chain(&mut c, &rt, n);
    c.final_summary();
    if benching {
        let capacities: Vec<usize> = CAPACITIES
            .into_iter()
            .filter(|cap| {
                filter.as_deref().is_none_or(|f| {
                    ["sluicegate", "hand"]
                        .iter()
                        .any(|w| format!("chain/{w}/cap{cap}").contains(f))
                })
            })
            .collect();
        paired_table(&rt, n, rounds, &capacities);
    }
}
