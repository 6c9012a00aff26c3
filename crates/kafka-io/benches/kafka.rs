//! Kafka throughput on a real broker: consume → trivial transform → produce,
//! on sluicegate and on the seeds' pattern, with a bare consumer as the
//! practical limit. Figures and their reading: docs/BENCHMARKS.md, section D.
//!
//! ```text
//! cargo bench -p sluicegate-kafka-io --bench kafka
//! cargo bench -p sluicegate-kafka-io --bench kafka -- --records 200000 --rounds 3
//! cargo bench -p sluicegate-kafka-io --bench kafka -- --only a --sink 1024x2048,4096x8192
//! ```
//!
//! Once per run, `--records` JSON records of exactly 100 bytes
//! (`{"id":7,"payload":"xxx…"}`) are produced into a fresh input topic of 4
//! partitions. Then, `--rounds` times (the order rotating each round, so a
//! noisy spell does not always hit the same variant), each variant reads the
//! whole topic with a fresh consumer group, in a process of its own (this
//! benchmark started again with `--child`; `--in-process` runs them all in
//! one process instead, where a variant inherits the heap and the blocking
//! threads the one before it left):
//!
//! - **a, sluicegate**: `KafkaSource` → `map` (uppercase, into a
//!   `ProducerRecord`) → `KafkaSink` to a fresh output topic, with the sink's
//!   `concurrency x capacity` from `--sink` (several settings: one row each).
//!   Source and sink keep their defaults unless an option below says
//!   otherwise; offsets are committed for finished records, as in production.
//! - **b, seed**: the seeds' pattern (rdkafka's `asynchronous_processing`
//!   example) written plainly: `StreamConsumer::stream().try_for_each`,
//!   `tokio::spawn` per message, the transform in `spawn_blocking`,
//!   `FutureProducer::send` awaited in the spawned task. Auto-commit off and
//!   no offset commits, as in the seed; its per-message `println!` and its
//!   constant key (which would send every output record to one partition,
//!   unlike a) are left out; it reads from `earliest`, not `latest`.
//! - **c, bare consumer**: a `BaseConsumer` polling in a loop and reading
//!   each payload's length: no transform, no produce, no commits.
//!
//! **What is timed.** Records divided by the time from the first record
//! seen to the last output acknowledged by the broker (a, b) or the last
//! record polled (c). Joining the group is not timed (it is shown as
//! `join`), and neither is the producer's start: a and b create their
//! producer `--warmup-ms` (default 1500) before they start consuming. With
//! `--warmup-ms 0` the first records of a wait for librdkafka's idempotent
//! producer to get its producer id (about 0.6 s here), which the run then
//! includes.
//!
//! **What is checked**, outside the timing: the output topic, read back,
//! holds exactly `--records` records (nothing lost, nothing doubled); for
//! a, the group's committed offsets cover the whole input.
//!
//! **What else is shown** per run: CPU seconds of this process and of the
//! broker (when one Apache Kafka broker runs on this machine), from
//! `/proc/PID/stat`; the time to the first delivery; for a, each stage's
//! busy / blocked / idle split, peak mailbox depths and the source's commit
//! count.
//!
//! Options: `--records N` (default 200000), `--rounds R` (default 3),
//! `--sink CxK[,CxK…]` (default `8192x16384`), `--only a,b,c`,
//! `--warmup-ms MS`, and for a: `--commit-every N`, `--pause-after-ms MS`,
//! `--keep-raw true|false` (the source's settings of those names),
//! `--sink-set KEY=VALUE` (a librdkafka property for the sink's producer,
//! repeatable); `--in-process`; `--brokers HOST:PORT` (or
//! `SLUICEGATE_BROKERS`; default 127.0.0.1:9092); `--topic NAME` reads an
//! existing input topic holding exactly `--records` records (one that
//! `sluicegate produce` filled, so the variants read what the binary reads)
//! instead of producing one, and keeps it. Topics are created through the
//! admin API and deleted at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::TryStreamExt;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluicegate_core::{Graph, StageSpec, map};
use sluicegate_kafka_io::{KafkaConfig, KafkaSink, KafkaSource, ProducerRecord};

#[path = "../examples/common/mod.rs"]
mod common;

/// Bytes per input record.
const RECORD_BYTES: usize = 100;
/// Partitions of the input and output topics.
const PARTITIONS: i32 = 4;
/// A run that makes no progress for this long fails.
const STALL: Duration = Duration::from_secs(30);

/// Record `i`: `{"id":i,"payload":"xxx…"}`, padded to [`RECORD_BYTES`].
fn record(i: usize) -> Vec<u8> {
    let head = format!(r#"{{"id":{i},"payload":""#);
    let pad = RECORD_BYTES.saturating_sub(head.len() + 2);
    let mut out = Vec::with_capacity(RECORD_BYTES);
    out.extend_from_slice(head.as_bytes());
    out.resize(head.len() + pad, b'x');
    out.extend_from_slice(b"\"}");
    out
}

/// The transform every variant applies: trivial on purpose, so the figures
/// measure the pipeline, not the work.
fn transform(payload: &[u8]) -> Vec<u8> {
    payload.to_ascii_uppercase()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Sluicegate { concurrency: usize, capacity: usize },
    Seed,
    Bare,
}

impl Variant {
    fn label(&self) -> String {
        match self {
            Variant::Sluicegate {
                concurrency,
                capacity,
            } => format!("a sluicegate (sink {concurrency}x{capacity})"),
            Variant::Seed => "b seed pattern".to_string(),
            Variant::Bare => "c bare BaseConsumer".to_string(),
        }
    }
}

struct Args {
    records: usize,
    rounds: usize,
    variants: Vec<Variant>,
    commit_every: Option<usize>,
    pause_after: Option<Duration>,
    sink_props: Vec<(String, String)>,
    warmup: Duration,
    keep_raw: Option<bool>,
    /// Run every variant in this process instead of a child process each.
    in_process: bool,
    /// Set in a child: the variant (index into `variants`) and input topic.
    child: Option<(usize, String)>,
    /// An existing input topic to read instead of producing one (kept).
    topic: Option<String>,
    brokers: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut records = 200_000;
    let mut rounds = 3;
    let mut sinks = vec![(8192, 16384)];
    let mut only = "a,b,c".to_string();
    let mut commit_every = None;
    let mut pause_after = None;
    let mut sink_props = Vec::new();
    let mut warmup = Duration::from_millis(1500);
    let mut keep_raw = None;
    let mut in_process = false;
    let mut child_variant = None;
    let mut child_input = None;
    let mut topic = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--records" => records = value("--records")?.parse()?,
            "--rounds" => rounds = value("--rounds")?.parse()?,
            "--commit-every" => commit_every = Some(value("--commit-every")?.parse()?),
            "--pause-after-ms" => {
                pause_after = Some(Duration::from_millis(value("--pause-after-ms")?.parse()?))
            }
            "--sink-set" => {
                let kv = value("--sink-set")?;
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--sink-set takes KEY=VALUE, got {kv}"))?;
                sink_props.push((k.to_string(), v.to_string()));
            }
            "--warmup-ms" => warmup = Duration::from_millis(value("--warmup-ms")?.parse()?),
            "--keep-raw" => keep_raw = Some(value("--keep-raw")?.parse()?),
            "--in-process" => in_process = true,
            "--child" => child_variant = Some(value("--child")?.parse::<usize>()?),
            "--input" => child_input = Some(value("--input")?),
            "--only" => only = value("--only")?,
            "--topic" => topic = Some(value("--topic")?),
            "--brokers" => {
                value("--brokers")?; // read by common::brokers()
            }
            "--sink" => {
                sinks = value("--sink")?
                    .split(',')
                    .map(|s| {
                        let (c, k) = s.split_once('x').with_context(|| {
                            format!("--sink takes CONCURRENCYxCAPACITY, got {s}")
                        })?;
                        Ok((c.parse()?, k.parse()?))
                    })
                    .collect::<anyhow::Result<_>>()?;
            }
            // `cargo bench` passes `--bench` to every bench target.
            "--bench" => {}
            other => bail!(
                "unknown option {other}; options: --records N --rounds R --sink CxK[,CxK] \
                 --only a,b,c --warmup-ms MS --commit-every N --pause-after-ms MS \
                 --keep-raw BOOL --sink-set KEY=VALUE --in-process --brokers HOST:PORT \
                 --topic NAME"
            ),
        }
    }
    let mut variants = Vec::new();
    for v in only.split(',') {
        match v.trim() {
            "a" => {
                variants.extend(
                    sinks
                        .iter()
                        .map(|&(concurrency, capacity)| Variant::Sluicegate {
                            concurrency,
                            capacity,
                        }),
                )
            }
            "b" => variants.push(Variant::Seed),
            "c" => variants.push(Variant::Bare),
            other => bail!("--only takes a, b and c, got {other}"),
        }
    }
    if records == 0 || rounds == 0 || variants.is_empty() {
        bail!("nothing to measure");
    }
    Ok(Args {
        records,
        rounds,
        variants,
        commit_every,
        pause_after,
        sink_props,
        warmup,
        keep_raw,
        in_process,
        child: child_variant.zip(child_input),
        topic,
        brokers: common::brokers(),
    })
}

/// CPU time (user + system) of a process so far, in seconds, from
/// `/proc/PID/stat` (Linux; `None` elsewhere).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0) // USER_HZ is 100 on Linux
}

/// The broker's process id when one Apache Kafka broker (`kafka.Kafka`,
/// as scripts/kafka-up starts it) runs on this machine, so its CPU time can
/// be shown next to ours.
fn broker_pid() -> Option<String> {
    let mut found = std::fs::read_dir("/proc").ok()?.filter_map(|e| {
        let e = e.ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let is_kafka = cmdline.split(|b| *b == 0).any(|arg| arg == b"kafka.Kafka");
        is_kafka.then(|| e.file_name().to_string_lossy().into_owned())
    });
    let pid = found.next()?;
    found.next().is_none().then_some(pid)
}

/// One variant's run.
struct Run {
    /// From the first record seen to the last output acknowledged (or the
    /// last record polled).
    elapsed: Duration,
    /// From starting the consumer to the first record (group join, fetch).
    join: Duration,
    /// What else the run saw, for the reading.
    notes: String,
}

impl Run {
    fn rate(&self, records: usize) -> f64 {
        records as f64 / self.elapsed.as_secs_f64()
    }
}

/// Waits until `done()` returns true, failing if `progress()` stays the same
/// for [`STALL`]. Checks every millisecond; returns when it saw `done`.
async fn wait_until(
    what: &str,
    progress: impl Fn() -> u64,
    done: impl Fn() -> bool,
) -> anyhow::Result<Instant> {
    let mut last = (progress(), Instant::now());
    loop {
        if done() {
            return Ok(Instant::now());
        }
        let now = progress();
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > STALL {
            bail!("{what}: no progress for {STALL:?} (at {now})");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// a: KafkaSource → map → KafkaSink.
async fn run_sluicegate(
    args: &Args,
    input: &str,
    output: &str,
    concurrency: usize,
    capacity: usize,
) -> anyhow::Result<Run> {
    let n = args.records as u64;
    let kafka = KafkaConfig::new(&args.brokers);
    // The producer is created here; give it the warm-up (see `--warmup-ms`).
    let sink_config = args
        .sink_props
        .iter()
        .fold(kafka.clone(), |c, (k, v)| c.set(k, v));
    let sink = KafkaSink::new(&sink_config, output)?;
    tokio::time::sleep(args.warmup).await;
    let group = common::unique("bench-a");
    let mut source = KafkaSource::new(kafka.clone(), &group, [input]);
    if let Some(every) = args.commit_every {
        source = source.commit_every(every);
    }
    if let Some(keep) = args.keep_raw {
        source = source.keep_raw(keep);
    }
    if let Some(after) = args.pause_after {
        source = source.pause_after(after);
    }
    let handle = source.handle();
    let stats = sink.stats();
    let first: Arc<OnceLock<Instant>> = Arc::default();
    let seen = first.clone();

    let mut g = Graph::builder("bench-kafka");
    g.source("kafka", source)
        .via(StageSpec::new(
            "upper",
            map(move |payload: Bytes| {
                seen.get_or_init(Instant::now);
                ProducerRecord::new(transform(&payload))
            }),
        ))
        .to(StageSpec::new("out", sink)
            .concurrency(concurrency)
            .capacity(capacity));
    let graph = g.build()?;
    let metrics = graph.metrics().clone();
    let started = Instant::now();
    let running = graph.start().await?;
    let first_delivery = {
        let stats = stats.clone();
        tokio::spawn(async move {
            while stats.delivered.load(Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Instant::now()
        })
    };
    let last = match wait_until(
        "sluicegate",
        || stats.delivered.load(Ordering::Relaxed),
        || stats.delivered.load(Ordering::Relaxed) >= n,
    )
    .await
    {
        Ok(last) => last,
        Err(e) => {
            let snap = metrics.snapshot();
            for st in &snap.stages {
                eprintln!(
                    "  stalled: {} in {} out {} failed {}",
                    st.name, st.items_in, st.items_out, st.failed
                );
            }
            for m in &snap.mailboxes {
                eprintln!("  stalled: mailbox {} depth {}", m.stage, m.depth);
            }
            eprintln!(
                "  stalled: source {:?} partitions {:?}",
                handle.stats(),
                handle.partitions()
            );
            return Err(e);
        }
    };
    let snapshot = metrics.snapshot();
    let report = running.shutdown(Duration::from_secs(30)).await;
    if !report.is_clean() {
        bail!("sluicegate graph did not end cleanly: {report:?}");
    }
    let first = *first.get().context("no record seen")?;
    // The handle forgets partitions once the consumer leaves; ask the broker.
    let committed: i64 = common::committed_offsets(&args.brokers, &group, input, PARTITIONS)?
        .into_iter()
        .flatten()
        .sum();
    if committed != n as i64 {
        bail!("sluicegate committed offsets cover {committed} records, expected {n}");
    }
    let split = |name: &str| {
        snapshot.stage(name).map_or_else(String::new, |s| {
            let (busy, blocked, idle) = s.time_split(None);
            format!(
                "{name} busy {:.0}% blocked {:.0}% idle {:.0}%",
                busy * 100.0,
                blocked * 100.0,
                idle * 100.0
            )
        })
    };
    let depth = |name: &str| {
        snapshot
            .mailbox(name)
            .map_or(0, |m| m.peak_depth)
            .to_string()
    };
    let s = handle.stats();
    let first_delivery = first_delivery.await? - first;
    let notes = format!(
        "first delivery after {:.0} ms; {}; {}; {}; peak depth upper {} out {}; commits {}, pauses {}, producer queue full {}",
        first_delivery.as_secs_f64() * 1000.0,
        split("kafka"),
        split("upper"),
        split("out"),
        depth("upper"),
        depth("out"),
        s.commits.load(Ordering::Relaxed),
        s.pauses.load(Ordering::Relaxed),
        stats.queue_full.load(Ordering::Relaxed),
    );
    Ok(Run {
        elapsed: last - first,
        join: first - started,
        notes,
    })
}

/// b: the seeds' pattern (rdkafka's `asynchronous_processing` example).
async fn run_seed(args: &Args, input: &str, output: &str) -> anyhow::Result<Run> {
    let n = args.records as u64;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("message.timeout.ms", "5000")
        .create()
        .context("creating the seed's producer")?;

    // The same warm-up as a: the producer connects before any record arrives.
    tokio::time::sleep(args.warmup).await;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("group.id", common::unique("bench-b"))
        .set("bootstrap.servers", &args.brokers)
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "6000")
        .set("enable.auto.commit", "false")
        // The seed reads from `latest`; the benchmark reads the whole topic.
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the seed's consumer")?;
    consumer.subscribe(&[input])?;
    let delivered = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first: Arc<OnceLock<Instant>> = Arc::default();
    let first_delivery: Arc<OnceLock<Instant>> = Arc::default();
    let output = Arc::new(output.to_string());
    let started = Instant::now();
    let processor = consumer.stream().try_for_each(|borrowed| {
        first.get_or_init(Instant::now);
        let producer = producer.clone();
        let output = output.clone();
        let (delivered, failed) = (delivered.clone(), failed.clone());
        let first_delivery = first_delivery.clone();
        async move {
            let owned = borrowed.detach();
            tokio::spawn(async move {
                let result =
                    tokio::task::spawn_blocking(move || transform(owned.payload().unwrap_or(&[])))
                        .await
                        .expect("the transform does not panic");
                let produce = producer.send(
                    FutureRecord::<(), _>::to(&output).payload(&result),
                    Duration::from_secs(0),
                );
                match produce.await {
                    Ok(_) => {
                        first_delivery.get_or_init(Instant::now);
                        delivered.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            });
            Ok(())
        }
    });
    let settled = || delivered.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed);
    let last = tokio::select! {
        end = processor => bail!("the seed's stream ended: {end:?}"),
        last = wait_until("seed", settled, || settled() >= n) => last?,
    };
    let lost = failed.load(Ordering::Relaxed);
    if lost > 0 {
        bail!("seed pattern: {lost} of {n} records failed to produce (lost)");
    }
    let first = *first.get().context("no record seen")?;
    Ok(Run {
        elapsed: last - first,
        join: first - started,
        notes: format!(
            "first delivery after {:.0} ms; no offset commits",
            first_delivery
                .get()
                .map_or(0.0, |d| (*d - first).as_secs_f64() * 1000.0)
        ),
    })
}

/// c: a bare `BaseConsumer` polling in a loop, on a thread of its own.
async fn run_bare(args: &Args, input: &str) -> anyhow::Result<Run> {
    let n = args.records;
    let brokers = args.brokers.clone();
    let input = input.to_string();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Run> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("group.id", common::unique("bench-c"))
            .set("bootstrap.servers", &brokers)
            .set("enable.partition.eof", "false")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .context("creating the bare consumer")?;
        consumer.subscribe(&[&input])?;
        let started = Instant::now();
        let mut first = None;
        let mut count = 0;
        let mut bytes = 0usize;
        let mut last_progress = Instant::now();
        while count < n {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    first.get_or_insert_with(Instant::now);
                    bytes += m.payload().map_or(0, <[u8]>::len);
                    count += 1;
                    last_progress = Instant::now();
                }
                Some(Err(e)) => eprintln!("bare consumer: {e}"),
                None if last_progress.elapsed() > STALL => {
                    bail!("bare consumer: no progress for {STALL:?} at {count}")
                }
                None => {}
            }
        }
        let last = Instant::now();
        let first = first.context("no record seen")?;
        Ok(Run {
            elapsed: last - first,
            join: first - started,
            notes: format!("{bytes} payload bytes"),
        })
    })
    .await?
}

/// Runs one variant; for a and b with a fresh output topic, read back and
/// deleted afterwards.
async fn run_variant(args: &Args, input: &str, variant: Variant) -> anyhow::Result<Run> {
    let n = args.records as u64;
    match variant {
        Variant::Bare => with_cpu(run_bare(args, input)).await,
        Variant::Seed | Variant::Sluicegate { .. } => {
            let output = common::unique("bench-out");
            common::ensure_topic(&args.brokers, &output, PARTITIONS).await?;
            let run = match variant {
                Variant::Sluicegate {
                    concurrency,
                    capacity,
                } => with_cpu(run_sluicegate(args, input, &output, concurrency, capacity)).await,
                _ => with_cpu(run_seed(args, input, &output)).await,
            };
            let written = match &run {
                Ok(_) => {
                    common::count_records(&args.brokers, &output, n, Duration::from_millis(500))
                        .await
                }
                Err(_) => Ok(0),
            };
            common::delete_topics(&args.brokers, &[&output]).await;
            let run = run?;
            let written = written?;
            if written != n {
                bail!(
                    "{}: the output topic holds {written} records, expected {n}",
                    variant.label()
                );
            }
            Ok(run)
        }
    }
}

/// Adds the CPU time `run` took, ours and the broker's (from starting the
/// consumer to the end of the shutdown), to its notes.
async fn with_cpu(run: impl Future<Output = anyhow::Result<Run>>) -> anyhow::Result<Run> {
    let broker = broker_pid();
    let me = Some(std::process::id().to_string());
    let cpu = |pid: &Option<String>| pid.as_deref().and_then(cpu_seconds);
    let before = (cpu(&me), cpu(&broker));
    let mut run = run.await?;
    let after = (cpu(&me), cpu(&broker));
    let delta = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", b - a),
        _ => "?".to_string(),
    };
    run.notes = format!(
        "cpu s: bench {} broker {}; {}",
        delta(before.0, after.0),
        delta(before.1, after.1),
        run.notes
    );
    Ok(run)
}

/// Runs variant `i` in a child process (this benchmark again, with the same
/// options plus `--child i --input TOPIC`), so that no variant runs in a heap
/// and a runtime that another one has just used: the seed pattern leaves
/// hundreds of idle blocking threads and their allocator arenas behind.
async fn run_child(i: usize, input: &str) -> anyhow::Result<Run> {
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe);
    child
        .args(std::env::args().skip(1))
        .args(["--child", &i.to_string(), "--input", input])
        .stderr(std::process::Stdio::inherit());
    let out = tokio::task::spawn_blocking(move || child.output()).await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("variant {i} failed ({}): {stdout}", out.status);
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .with_context(|| format!("no result from variant {i}: {stdout}"))?;
    let mut parts = line.splitn(3, ' ');
    let mut secs = || -> anyhow::Result<Duration> {
        Ok(Duration::from_secs_f64(
            parts.next().context("a short result line")?.parse()?,
        ))
    };
    let (elapsed, join) = (secs()?, secs()?);
    Ok(Run {
        elapsed,
        join,
        notes: parts.next().unwrap_or_default().to_string(),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn range(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

fn k(rate: f64) -> String {
    format!("{:.1}k", rate / 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    // The source's and librdkafka's warnings (RUST_LOG overrides).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    common::check_broker(&args.brokers)?;
    if let Some((i, input)) = &args.child {
        // A child: one measurement, reported on one line for the parent.
        let v = *args.variants.get(*i).context("--child out of range")?;
        let run = run_variant(&args, input, v).await?;
        println!(
            "RESULT {} {} {}",
            run.elapsed.as_secs_f64(),
            run.join.as_secs_f64(),
            run.notes
        );
        return Ok(());
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "kafka bench: {} records of {}, {PARTITIONS} partitions, {} round(s), brokers {}, load average at start {}",
        args.records,
        args.topic
            .as_deref()
            .map_or_else(|| format!("{RECORD_BYTES} bytes"), |t| format!("topic {t}")),
        args.rounds,
        args.brokers,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let (input, owned) = match &args.topic {
        Some(topic) => (topic.clone(), false),
        None => (common::unique("bench-in"), true),
    };
    let produced = Instant::now();
    if owned {
        common::ensure_topic(&args.brokers, &input, PARTITIONS).await?;
        common::produce(
            &args.brokers,
            &input,
            PARTITIONS,
            args.records,
            |_| None,
            record,
        )
        .await?;
    }
    let held = common::count_records(
        &args.brokers,
        &input,
        args.records as u64,
        Duration::from_millis(200),
    )
    .await?;
    if owned {
        println!(
            "input: {held} records in {input}, produced in {:.2} s",
            produced.elapsed().as_secs_f64()
        );
    } else {
        println!("input: {held} records in {input} (given with --topic)");
    }
    if held != args.records as u64 {
        bail!(
            "the input topic holds {held} records, expected {}",
            args.records
        );
    }

    // rates[variant][round]
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); args.variants.len()];
    let result: anyhow::Result<()> = async {
        for round in 0..args.rounds {
            println!("\nround {}", round + 1);
            let nv = args.variants.len();
            for j in 0..nv {
                let i = (j + round) % nv;
                let v = args.variants[i];
                let run = if args.in_process {
                    run_variant(&args, &input, v).await?
                } else {
                    run_child(i, &input).await?
                };
                let rate = run.rate(args.records);
                println!(
                    "  {:<32} {:>9} rec/s  ({:.3} s, join {:.2} s)  {}",
                    v.label(),
                    k(rate),
                    run.elapsed.as_secs_f64(),
                    run.join.as_secs_f64(),
                    run.notes
                );
                rates[i].push(rate);
            }
        }
        Ok(())
    }
    .await;
    if owned {
        common::delete_topics(&args.brokers, &[&input]).await;
    }
    result?;

    println!(
        "\n| variant | rec/s, median of {} [min..max] |\n|---|---:|",
        args.rounds
    );
    for (v, r) in args.variants.iter().zip(&rates) {
        let (lo, hi) = range(r);
        println!(
            "| {} | {} [{}..{}] |",
            v.label(),
            k(median(r.clone())),
            k(lo),
            k(hi)
        );
    }
    let find = |want: fn(&Variant) -> bool| args.variants.iter().position(want);
    let seed = find(|v| *v == Variant::Seed);
    let bare = find(|v| *v == Variant::Bare);
    for (i, v) in args.variants.iter().enumerate() {
        if !matches!(v, Variant::Sluicegate { .. }) {
            continue;
        }
        for (other, name, target) in [(seed, "b", 2.0), (bare, "c", 0.8)] {
            let Some(o) = other else { continue };
            let ratios: Vec<f64> = rates[i].iter().zip(&rates[o]).map(|(a, b)| a / b).collect();
            let (lo, hi) = range(&ratios);
            let m = median(ratios);
            println!(
                "{} / {name}: {m:.2}x [{lo:.2}..{hi:.2}] (per-round ratios; target >= {target}x: {})",
                v.label(),
                if m >= target { "met" } else { "not met" }
            );
        }
    }
    Ok(())
}
