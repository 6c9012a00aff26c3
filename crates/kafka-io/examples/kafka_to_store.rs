//! At-least-once from Kafka into a database: offsets are committed only
//! after the rows are, and the store is idempotent, so a record read twice
//! is stored once.
//!
//! ```text
//! orders (Kafka) -> decode (JSON into Order) -> store (SQLite, batches of 500)
//!                         └── bad records ──> dead letters (printed)
//! ```
//!
//! What to look at:
//!
//! - `StoreStage` writes each batch in one transaction and acknowledges its
//!   records only after the commit; the `KafkaSource` commits an offset only
//!   when every record before it is acknowledged. A crash between the two
//!   means records are read again, never skipped.
//! - Reading again is harmless: each row's key is the record's origin
//!   (`topic/partition/offset`), and the store inserts or ignores on it. The
//!   second pass below reads the whole topic again with a fresh consumer
//!   group (as after losing the committed offsets): every record comes back
//!   as a duplicate and the table does not grow.
//! - Records that do not decode go to the dead-letter route with the reason;
//!   they count as finished, so the commit passes them.
//! - The committed offsets come from the source's handle (`handle()`), live
//!   while the pipeline runs.
//!
//! It makes a fresh topic of 4 partitions, produces its input (with a few
//! bad records among it), stores into a temporary SQLite file, and exits
//! non-zero if a good record is not in the table, a bad one was not
//! dead-lettered, or an offset was not committed.
//!
//! ```text
//! cargo run -p sluicegate-kafka-io --example kafka_to_store [-- --records N --brokers HOST:PORT]
//! ```
//!
//! The broker defaults to 127.0.0.1:9092 (`scripts/kafka-up` starts one);
//! `--brokers` or `SLUICEGATE_BROKERS` points elsewhere.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use sluicegate_core::{
    BatchConfig, BatchSpec, DeadLetter, Graph, Origin, Outputs, Stage, StageSpec,
};
use sluicegate_kafka_io::{KafkaConfig, KafkaSource, PartitionLag};
use sluicegate_stages::codec::{Json, decode};
use sluicegate_stages::store::{SqliteStore, Store, StoreStage, StoreStats};

mod common;

/// Partitions of the input topic.
const PARTITIONS: i32 = 4;
/// How long any one wait may take before the example gives up.
const PATIENCE: Duration = Duration::from_secs(60);
/// Input positions that get a bad payload, and what it is.
const BAD: [(usize, &str); 3] = [
    (100, r#"{"id":"o-100","amount":"#),
    (2_000, r#"{"id":"o-2000","currency":"EUR"}"#),
    (4_000, "not json at all"),
];

/// An order as the topic carries it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Order {
    id: String,
    amount: f64,
    currency: String,
}

fn payload(i: usize) -> Vec<u8> {
    match BAD.iter().find(|(at, _)| *at == i) {
        Some((_, bad)) => bad.as_bytes().to_vec(),
        None => format!(
            r#"{{"id":"o-{i}","amount":{}.{:02},"currency":"EUR"}}"#,
            i % 500,
            i % 100
        )
        .into_bytes(),
    }
}

fn records_arg() -> anyhow::Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--records") {
        Some(i) => args
            .get(i + 1)
            .context("--records needs a value")?
            .parse()
            .context("--records takes a number"),
        None => Ok(5_000),
    }
}

/// The dead-letter route: keeps one line per failed record, naming where it
/// came from and why it failed.
#[derive(Clone, Default)]
struct DeadLog(Arc<Mutex<Vec<String>>>);

impl DeadLog {
    fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Stage for DeadLog {
    type In = DeadLetter;
    type Out = ();
    type Error = &'static str;

    async fn process(&self, d: DeadLetter, origin: &Origin) -> Result<Outputs<()>, Self::Error> {
        let line = format!(
            "partition {} offset {}: {} | {}",
            origin.partition.unwrap_or(-1),
            origin.offset.unwrap_or(-1),
            d.error.stage(),
            d.error.message()
        );
        self.0
            .lock()
            .map_err(|_| "dead-letter log poisoned")?
            .push(line);
        Ok(Outputs::one(()))
    }
}

/// What one pass saw.
struct Pass {
    inserted: u64,
    duplicates: u64,
    dead: Vec<String>,
    partitions: Vec<PartitionLag>,
}

/// Reads the whole topic with consumer group `group` into `store`, until
/// every record is stored or dead-lettered and its offset committed; then
/// shuts down.
async fn pass(
    brokers: &str,
    topic: &str,
    group: &str,
    store: Arc<dyn Store>,
    records: usize,
) -> anyhow::Result<Pass> {
    let source = KafkaSource::new(KafkaConfig::new(brokers), group, [topic]);
    let handle = source.handle();
    let stage = StoreStage::<Order>::new(store);
    let stats: StoreStats = stage.stats();
    let dead = DeadLog::default();
    let mut g = Graph::builder("kafka_to_store");
    g.dead_letters(StageSpec::new("dead_letters", dead.clone()));
    g.source("orders", source)
        .via(StageSpec::new("decode", decode::<Order, _>(Json)).capacity(1024))
        .to_batch(BatchSpec::new(
            "store",
            stage,
            BatchConfig::new(500, Duration::from_millis(20)),
        ));
    let running = g.build()?.start().await?;

    // Done when every record is stored (or recognised as stored) or
    // dead-lettered, and the handle shows every offset committed.
    let finished = || stats.inserted() + stats.duplicates() + dead.lines().len() as u64;
    let all_committed = || {
        let parts = handle.partitions();
        let committed: i64 = parts.iter().filter_map(|p| p.state.committed).sum();
        committed == records as i64
    };
    let deadline = Instant::now() + PATIENCE;
    while finished() < records as u64 || !all_committed() {
        if Instant::now() > deadline {
            let report = running.shutdown(Duration::from_secs(5)).await;
            bail!(
                "after {PATIENCE:?}: {} of {records} records finished, partitions {:?}; {report:?}",
                finished(),
                handle.partitions()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Read before stopping: a stopped source has left its partitions.
    let partitions = handle.partitions();
    let report = running.shutdown(Duration::from_secs(30)).await;
    if !report.is_clean() {
        bail!("the pipeline did not end cleanly: {report:?}");
    }
    Ok(Pass {
        inserted: stats.inserted(),
        duplicates: stats.duplicates(),
        dead: dead.lines(),
        partitions,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let records = records_arg()?;
    ensure!(
        records > BAD[BAD.len() - 1].0,
        "--records must be above {}",
        BAD[BAD.len() - 1].0
    );
    let good = records - BAD.len();
    let brokers = common::brokers();
    common::check_broker(&brokers)?;
    let topic = common::unique("orders");
    common::ensure_topic(&brokers, &topic, PARTITIONS).await?;
    common::produce(
        &brokers,
        &topic,
        PARTITIONS,
        records,
        |i| Some(format!("o-{i}").into_bytes()),
        payload,
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("orders.db"), "orders").await?);
    println!(
        "kafka_to_store: {records} records ({} bad) from {topic} on {brokers}\n  into {}",
        BAD.len(),
        store.describe()
    );

    let started = Instant::now();
    let group = common::unique("to-store");
    let first = pass(&brokers, &topic, &group, store.clone(), records).await?;
    let rows_after_first = store.count().await?;
    println!(
        "\nfirst pass ({:.1} s): stored {} rows, {} duplicates, {} dead letters; the table holds {rows_after_first} rows",
        started.elapsed().as_secs_f64(),
        first.inserted,
        first.duplicates,
        first.dead.len()
    );
    for line in &first.dead {
        println!("  dead letter: {line}");
    }
    println!("  committed offsets (from the source's handle):");
    for p in &first.partitions {
        println!(
            "    {}/{}: committed {:?}, read up to {:?}, in flight {}",
            p.state.topic, p.state.partition, p.state.committed, p.state.next, p.state.in_flight
        );
    }
    let on_broker = common::committed_offsets(&brokers, &group, &topic, PARTITIONS)?;
    println!("  committed offsets (from the broker, after the stop): {on_broker:?}");

    let replayed = Instant::now();
    let second = pass(
        &brokers,
        &topic,
        &common::unique("to-store-replay"),
        store.clone(),
        records,
    )
    .await?;
    let rows_after_second = store.count().await?;
    println!(
        "\nreplay with a fresh group ({:.1} s): {} new rows, {} recognised as already stored, {} dead letters; the table holds {rows_after_second} rows",
        replayed.elapsed().as_secs_f64(),
        second.inserted,
        second.duplicates,
        second.dead.len()
    );
    common::delete_topics(&brokers, &[&topic]).await;

    let committed: i64 = on_broker.iter().flatten().sum();
    let duplicate_rows = rows_after_second.saturating_sub(good as u64);
    println!(
        "\nreconciliation: in {records} = stored {rows_after_first} + dead-lettered {}; duplicate rows after the replay: {duplicate_rows}",
        first.dead.len()
    );
    ensure!(
        rows_after_first == good as u64 && first.inserted == good as u64,
        "expected {good} rows, the table holds {rows_after_first}"
    );
    ensure!(
        first.dead.len() == BAD.len() && second.dead.len() == BAD.len(),
        "expected {} dead letters per pass",
        BAD.len()
    );
    ensure!(
        rows_after_second == good as u64 && second.duplicates == good as u64,
        "the replay changed the table: {rows_after_second} rows"
    );
    ensure!(
        committed == records as i64,
        "the committed offsets cover {committed} records, not {records}"
    );
    println!("every record stored once or dead-lettered, every offset committed");
    Ok(())
}
