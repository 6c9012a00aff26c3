//! A small record pipeline on sluicegate-stages:
//!
//! ```text
//! ingest (JSON bytes, some bad) -> validate (decode + rules) -> transform
//!   -> enrich (HMAC + SHA-256 on the blocking pool) -> store (SQLite, batched)
//! every failure -> dead letters (printed with its reason)
//! ```
//!
//! It ends with the reconciliation: every record that came in is stored,
//! dead-lettered with a reason, or filtered, and the numbers add up.
//!
//! Run: `cargo run -p sluicegate-stages --example validate_and_store`

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluicegate_core::testing::{AckLog, CollectSink, VecSource};
use sluicegate_core::{BatchConfig, BatchSpec, DeadLetter, Graph, StageSpec};
use sluicegate_stages::store::{SqliteStore, Store, StoreStage};
use sluicegate_stages::{Record, orders};

const INPUT: &[&[u8]] = &[
    br#"{"id":"o-1","amount":12.5,"currency":"EUR","email":"ann@example.com"}"#,
    br#"{"id":"o-2","amount":1500,"currency":"EUR"}"#,
    br#"{"id":"o-3","amount":3,"currency":"USD","email":"bob@example.com"}"#,
    br#"{"id":"o-4","amount":"7","currency":"EUR"}"#,
    br#"{"id":"o-5","amount":8,"currency":"JPY"}"#,
    br#"{"id":"o-6","amount":1,"currency":"EUR","test":true}"#,
    br#"{"id":"o-7","amount":"#,
    b"{\"id\":\"o-8\xff\"}",
    b"",
    b"null",
    br#"{"id":"o-9","amount":99.99,"currency":"GBP"}"#,
    br#"{"amount":5,"currency":"EUR"}"#,
    br#"{"id":"o-10","amount":0.001,"currency":"EUR"}"#,
    br#"{"id":"o-11","amount":42,"currency":"EUR","email":"cy@example.com"}"#,
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("orders.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path, "orders").await?);
    println!("storing into {}", store.describe());

    // The order rules of `sluicegate_stages::orders`.
    let validator = orders::rules().max_payload_bytes(64 * 1024).build()?;
    let store_stage = StoreStage::<Record>::new(store.clone());
    let store_stats = store_stage.stats();

    let dead = CollectSink::<DeadLetter>::new();

    let acks = AckLog::new();
    let input: Vec<Bytes> = INPUT.iter().map(|b| Bytes::from_static(b)).collect();
    let n = input.len();
    let mut g = Graph::builder("validate_and_store");
    g.dead_letters(StageSpec::new("dead_letters", dead.clone()));
    // decode + validate -> transform -> enrich (see `sluicegate_stages::orders`)
    orders::stages(
        g.source("ingest", VecSource::new(input, acks.clone())),
        validator.clone(),
        *b"demo-key",
        1000,
    )
    .to_batch(BatchSpec::new(
        "store",
        store_stage,
        BatchConfig::new(500, Duration::from_millis(20)),
    ));
    common::run_to_end(g).await?;

    common::print_dead_letters(&dead);
    let stats = validator.stats();
    println!("\nvalidation rejections by rule: {:?}", stats.by_rule);

    let stored = store.count().await?;
    let dead_lettered = acks.dead_lettered();
    let filtered = acks.dropped();
    println!(
        "\nreconciliation: in {n} = stored {stored} + dead-lettered {dead_lettered} + filtered {filtered}"
    );
    println!(
        "store: {} rows in {} commit(s), {} retries",
        store_stats.inserted(),
        store_stats.commits(),
        store_stats.retries()
    );
    anyhow::ensure!(
        n as u64 == stored + dead_lettered as u64 + filtered as u64,
        "counts do not reconcile"
    );
    anyhow::ensure!(acks.failed() == 0, "records failed with nowhere to go");
    println!("every record accounted for");
    Ok(())
}
