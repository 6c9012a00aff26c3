//! Records checked against a JSON Schema of your own:
//!
//! ```text
//! ingest (JSON bytes) -> decode -> validate (JSON Schema, draft 2020-12) -> store (SQLite, batched)
//! every failure -> dead letters (printed with its reason: instance path and keyword)
//! ```
//!
//! It prints each dead letter's reason, the rejections per keyword and per
//! path, and the reconciliation: every record stored or dead-lettered.
//!
//! Run: `cargo run -p sluicegate-stages --example json_schema`
//! (or give it a schema file and a file of records, one JSON document a
//! line: `cargo run -p sluicegate-stages --example json_schema -- SCHEMA RECORDS`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use sluicegate_core::testing::{AckLog, CollectSink, VecSource};
use sluicegate_core::{BatchConfig, BatchSpec, DeadLetter, Graph, StageSpec};
use sluicegate_stages::codec::{Json, decode};
use sluicegate_stages::store::{SqliteStore, Store, StoreStage};
use sluicegate_stages::validate::SchemaValidator;

/// An order: an id, a non-negative amount in a known currency, and lines
/// each with a SKU and a positive quantity; nothing else.
const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["id", "amount", "currency"],
  "properties": {
    "id": {"type": "string", "pattern": "^o-[0-9]+$"},
    "amount": {"type": "number", "minimum": 0},
    "currency": {"enum": ["EUR", "USD", "GBP"]},
    "lines": {
      "type": "array",
      "items": {
        "type": "object",
        "required": ["sku", "qty"],
        "properties": {
          "sku": {"type": "string"},
          "qty": {"type": "integer", "exclusiveMinimum": 0}
        }
      }
    }
  },
  "additionalProperties": false
}"#;

const RECORDS: &[&str] = &[
    r#"{"id": "o-1", "amount": 12.5, "currency": "EUR"}"#,
    r#"{"id": "o-2", "amount": -3, "currency": "EUR"}"#,
    r#"{"id": "o-3", "amount": 7, "currency": "USD", "lines": [{"sku": "a", "qty": 1}]}"#,
    r#"{"id": "o-4", "amount": 7, "currency": "USD", "lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 0}]}"#,
    r#"{"amount": 1, "currency": "GBP"}"#,
    r#"{"id": "o-6", "amount": 1, "currency": "JPY"}"#,
    r#"{"id": "o-7", "amount": 1, "currency": "EUR", "coupon": "FREE"}"#,
    r#"["not", "an", "order"]"#,
    r#"{"id": "o-9", "amount": "#,
    r#"{"id": "o-10", "amount": 99.99, "currency": "GBP", "lines": []}"#,
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (validator, input): (SchemaValidator, Vec<Bytes>) = match args.as_slice() {
        [] => (
            SchemaValidator::builder().build_str(SCHEMA)?,
            RECORDS
                .iter()
                .map(|r| Bytes::from_static(r.as_bytes()))
                .collect(),
        ),
        [schema, records] => (
            SchemaValidator::from_file(schema)?,
            std::fs::read_to_string(records)?
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| Bytes::from(l.to_string()))
                .collect(),
        ),
        _ => anyhow::bail!("usage: json_schema [SCHEMA RECORDS]"),
    };
    println!("validating against a draft {} schema", validator.draft());

    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path().join("orders.db"), "orders").await?);
    let dead = CollectSink::<DeadLetter>::new();

    let acks = AckLog::new();
    let n = input.len();
    let mut g = Graph::builder("json_schema");
    g.dead_letters(StageSpec::new("dead_letters", dead.clone()));
    g.source("ingest", VecSource::new(input, acks.clone()))
        .via(StageSpec::new("decode", decode::<Value, _>(Json)))
        .via(StageSpec::new("validate", validator.clone()))
        .to_batch(BatchSpec::new(
            "store",
            StoreStage::<Value>::new(store.clone()),
            BatchConfig::new(500, Duration::from_millis(20)),
        ));
    common::run_to_end(g).await?;

    common::print_dead_letters(&dead);
    let stats = validator.stats();
    println!("\nrejections by keyword:");
    for (keyword, count) in &stats.by_keyword {
        println!("  {keyword:<34}{count:>4}");
    }
    println!("rejections by path and keyword (array indices as *):");
    for (path, keywords) in &stats.by_path {
        for (keyword, count) in keywords {
            println!("  {:<34}{count:>4}", format!("{path:?} {keyword}"));
        }
    }

    let stored = store.count().await?;
    let dead_lettered = acks.dead_lettered() as u64;
    println!("\nreconciliation: in {n} = stored {stored} + dead-lettered {dead_lettered}");
    anyhow::ensure!(
        n as u64 == stored + dead_lettered,
        "counts do not reconcile"
    );
    if args.is_empty() {
        // The built-in records: 3 orders, 6 rejected by the schema, 1 not JSON.
        anyhow::ensure!(
            (stored, stats.rejected, dead_lettered) == (3, 6, 7),
            "the built-in records did not end as expected"
        );
    }
    println!("every record accounted for");
    Ok(())
}
