//! Memory under overload: a producer of 1 KiB payloads, as fast as it can,
//! into a stage that handles about 1,000 items per second (an async 1 ms
//! sleep per item), for a fixed time. Prints the resident set over time and
//! the peak: `VmHWM` from `/proc/self/status`, or the highest `VmRSS`
//! sampled every 20 ms when that is higher (the kernel updates `VmHWM`
//! lazily).
//!
//! ```text
//! cargo bench -p sluicegate-core --bench overload -- --seconds 5
//! cargo bench -p sluicegate-core --bench overload -- --seconds 60
//! cargo bench -p sluicegate-core --bench overload -- --seconds 5 --mode unbounded
//! ```
//!
//! Options: `--seconds N` (default 5), `--mode bounded|unbounded` (default
//! bounded), `--capacity N` (mailbox capacity, default 1024).
//!
//! - `bounded`: a sluicegate graph, source → sink stage with a mailbox of
//!   `--capacity`, acknowledgements on. Its peak RSS must stay within
//!   `capacity × payload + 32 MiB` and be the same at 5 s and at 60 s.
//! - `unbounded`: the seeds' program on `tokio::sync::mpsc::unbounded_channel`
//!   with the same producer and consumer, for comparison only (see
//!   [`unbounded`]). It grows by hundreds of MiB per second, so it refuses to
//!   run longer than 5 s.
//!
//! Linux only (reads `/proc/self/status`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sluicegate_core::{
    Ack, AckReceiver, BoxError, Envelope, FailureKind, Graph, ItemError, Origin, Outcome, Source,
    SourceContext, StageSpec, sink,
};

/// Bytes per payload.
const PAYLOAD: usize = 1024;
/// The consumer's work per item: about 1,000 items per second.
const WORK: Duration = Duration::from_millis(1);
/// Headroom over `capacity × payload` allowed for the runtime, allocator and
/// everything else in the process.
const HEADROOM: usize = 32 << 20;
/// Longest run allowed for the unbounded comparison (it grew by 0.3 to 0.65
/// GiB/s here, depending on how fast the producer ran).
const UNBOUNDED_MAX_SECONDS: u64 = 5;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Bounded,
    Unbounded,
}

struct Args {
    seconds: u64,
    mode: Mode,
    capacity: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 5,
        mode: Mode::Bounded,
        capacity: 1024,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--seconds" => {
                args.seconds = value("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?;
            }
            "--capacity" => {
                args.capacity = value("--capacity")?
                    .parse()
                    .map_err(|e| format!("--capacity: {e}"))?;
            }
            "--mode" => {
                args.mode = match value("--mode")?.as_str() {
                    "bounded" => Mode::Bounded,
                    "unbounded" => Mode::Unbounded,
                    other => {
                        return Err(format!("--mode: expected bounded|unbounded, got {other}"));
                    }
                };
            }
            // Added by `cargo bench`.
            "--bench" => {}
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: overload [--seconds N] [--mode bounded|unbounded] [--capacity N]"
                ));
            }
        }
    }
    if args.seconds == 0 || args.capacity == 0 {
        return Err("--seconds and --capacity must be at least 1".into());
    }
    if args.mode == Mode::Unbounded && args.seconds > UNBOUNDED_MAX_SECONDS {
        return Err(format!(
            "--mode unbounded grows without limit (up to ~0.65 GiB/s here); it runs for at most {UNBOUNDED_MAX_SECONDS} s"
        ));
    }
    Ok(args)
}

/// `VmRSS` and `VmHWM` (peak) of this process, in bytes.
fn memory() -> (usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Counters shared by the producer, the consumer and the sampler.
#[derive(Default)]
struct Progress {
    produced: AtomicU64,
    processed: AtomicU64,
    /// The highest `VmRSS` the sampler saw.
    max_rss: AtomicUsize,
}

/// Samples `VmRSS` every 20 ms (the kernel updates `VmHWM` lazily, so it
/// can miss a peak) and prints RSS and progress once a second until `stop`.
fn sampler(progress: Arc<Progress>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut next = Duration::from_secs(1);
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
            let (rss, hwm) = memory();
            progress.max_rss.fetch_max(rss, Ordering::Relaxed);
            if start.elapsed() >= next {
                let produced = progress.produced.load(Ordering::Relaxed);
                let processed = progress.processed.load(Ordering::Relaxed);
                println!(
                    "  t={:>3}s  rss={:>11}  VmHWM={:>11}  produced={produced:>9}  processed={processed:>6}  queued={:>9}",
                    next.as_secs(),
                    mib(rss),
                    mib(hwm),
                    produced.saturating_sub(processed),
                );
                next += Duration::from_secs(1);
            }
        }
    })
}

fn payload() -> Vec<u8> {
    // Non-zero so the allocator cannot hand back untouched zero pages.
    vec![0xA5; PAYLOAD]
}

// ------------------------------------------------------------------ bounded

/// Counts acknowledgements that did not end as delivered.
#[derive(Default)]
struct Acks {
    delivered: AtomicU64,
    other: AtomicU64,
}

impl AckReceiver for Acks {
    fn on_ack(&self, _origin: &Origin, outcome: Outcome) {
        if outcome.is_delivered() {
            self.delivered.fetch_add(1, Ordering::Relaxed);
        } else {
            self.other.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Emits 1 KiB payloads as fast as the graph takes them, until `until`.
struct Flood {
    until: Instant,
    progress: Arc<Progress>,
    acks: Arc<Acks>,
}

impl Source for Flood {
    type Out = Vec<u8>;

    async fn run(self, mut cx: SourceContext<Vec<u8>>) -> Result<(), BoxError> {
        let receiver: Arc<dyn AckReceiver> = self.acks;
        let mut offset = 0i64;
        while Instant::now() < self.until && !cx.is_shutting_down() {
            let env = Envelope::new(payload(), Ack::new(Origin::at(0, offset), receiver.clone()));
            if let Err(e) = cx.emit(env).await {
                let (_, ack) = e.into_inner().into_parts();
                ack.fail(ItemError::new(
                    "flood",
                    FailureKind::Abandoned,
                    "graph stopped",
                ));
                break;
            }
            offset += 1;
            self.progress.produced.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

async fn bounded(args: &Args, progress: Arc<Progress>) -> Result<(), String> {
    let acks = Arc::new(Acks::default());
    let counter = progress.clone();
    let mut g = Graph::builder("overload");
    g.source(
        "flood",
        Flood {
            until: Instant::now() + Duration::from_secs(args.seconds),
            progress: progress.clone(),
            acks: acks.clone(),
        },
    )
    .to(StageSpec::new(
        "slow",
        sink(move |p: Vec<u8>| {
            let counter = counter.clone();
            async move {
                tokio::time::sleep(WORK).await;
                std::hint::black_box(p);
                counter.processed.fetch_add(1, Ordering::Relaxed);
                Ok::<(), Infallible>(())
            }
        }),
    )
    .capacity(args.capacity));
    let graph = g.build().map_err(|e| e.to_string())?;
    let report = graph.start().await.map_err(|e| e.to_string())?.wait().await;
    if !report.is_clean() {
        return Err(format!("unclean run: {report:?}"));
    }
    let produced = progress.produced.load(Ordering::Relaxed);
    let delivered = acks.delivered.load(Ordering::Relaxed);
    if delivered != produced || acks.other.load(Ordering::Relaxed) != 0 {
        return Err(format!(
            "{produced} produced but {delivered} delivered acknowledgements"
        ));
    }
    if let Some(mb) = report.snapshot.mailbox("slow") {
        println!(
            "  mailbox of `slow`: capacity {}, peak depth {}",
            mb.capacity, mb.peak_depth
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- unbounded

/// The seeds' unbounded-channel program (same producer and consumer) — the
/// comparison the issue asks for. It exists only in this benchmark:
/// sluicegate itself has no unbounded queue.
///
/// Stops producing at the deadline and returns without draining (at ~1,000
/// items per second the backlog would take hours).
async fn unbounded(args: &Args, progress: Arc<Progress>) {
    // Unbounded on purpose: this is the seeds' program, the baseline whose
    // memory growth the benchmark measures against sluicegate's bounded one.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let produced = progress.clone();
    let producer = tokio::spawn(async move {
        // No backpressure: the producer never waits.
        let mut n = 0u64;
        loop {
            if n % 256 == 0 && Instant::now() >= until {
                break;
            }
            if tx.send(payload()).is_err() {
                break;
            }
            n += 1;
            produced.produced.fetch_add(1, Ordering::Relaxed);
        }
    });
    let processed = progress.clone();
    let consumer = tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            tokio::time::sleep(WORK).await;
            std::hint::black_box(p);
            processed.processed.fetch_add(1, Ordering::Relaxed);
        }
    });
    let _ = producer.await;
    // Stop here: the backlog stays queued and is freed with the process.
    consumer.abort();
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("overload: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let limit = args.capacity * PAYLOAD + HEADROOM;
    let (rss0, _) = memory();
    println!(
        "overload: mode={:?} seconds={} capacity={} payload={PAYLOAD} B, consumer ~1 ms/item; rss at start {}",
        args.mode,
        args.seconds,
        args.capacity,
        mib(rss0)
    );
    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sampling = sampler(progress.clone(), stop.clone());
    let start = Instant::now();
    let result = rt.block_on(async {
        match args.mode {
            Mode::Bounded => bounded(&args, progress.clone()).await,
            Mode::Unbounded => {
                unbounded(&args, progress.clone()).await;
                Ok(())
            }
        }
    });
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = sampling.join();
    let (rss, hwm) = memory();
    // The peak: VmHWM, or the highest VmRSS sampled if the kernel's lazy
    // high-water mark missed it.
    let peak = hwm.max(rss).max(progress.max_rss.load(Ordering::Relaxed));
    let produced = progress.produced.load(Ordering::Relaxed);
    let processed = progress.processed.load(Ordering::Relaxed);
    println!(
        "  done in {:.1} s: produced {produced}, processed {processed} ({:.0}/s), rss now {}",
        elapsed.as_secs_f64(),
        processed as f64 / elapsed.as_secs_f64(),
        mib(rss)
    );
    if let Err(e) = result {
        eprintln!("overload: {e}");
        std::process::exit(1);
    }
    match args.mode {
        Mode::Bounded => println!(
            "RESULT mode=bounded seconds={} peak_rss={} (VmHWM {}) limit(capacity*payload+32MiB)={} {}",
            args.seconds,
            mib(peak),
            mib(hwm),
            mib(limit),
            if peak <= limit { "WITHIN" } else { "OVER" }
        ),
        Mode::Unbounded => println!(
            "RESULT mode=unbounded seconds={} peak_rss={} (VmHWM {}) queued {} items, no bound",
            args.seconds,
            mib(peak),
            mib(hwm),
            produced.saturating_sub(processed)
        ),
    }
    // Skip freeing an unbounded backlog item by item.
    std::process::exit(0);
}
