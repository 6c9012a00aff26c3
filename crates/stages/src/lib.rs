//! # sluicegate-stages
//!
//! The stages of a record pipeline, built on
//! [`sluicegate-core`](sluicegate_core): decode, validate, transform, store.
//!
//! - [`codec`]: the [`Codec`](codec::Codec) trait with JSON and bincode
//!   implementations, and [`decode`](codec::decode) / [`encode`](codec::encode)
//!   stages. A payload that does not decode fails alone with a precise reason.
//! - [`validate`]: validation of JSON records against a JSON Schema
//!   ([`SchemaValidator`](validate::SchemaValidator), draft 2020-12, with
//!   counters per keyword and per instance path; a reason names the path and
//!   the keyword), or with declarative rules in code
//!   ([`Validator`](validate::Validator): required fields, types, ranges,
//!   lengths, patterns, enumerations, payload size, custom rules, with
//!   per-rule counters). Rejected records go to the dead-letter route with
//!   their reason.
//! - [`transform`]: fused combinators over typed records, conversions between
//!   records and your types, and a CPU-heavy built-in (keyed pseudonymisation
//!   and fingerprinting) on the blocking pool.
//! - [`store`]: the [`Store`](store::Store) trait with SQLite (embedded, the
//!   default) and PostgreSQL backends, and the
//!   [`StoreStage`](store::StoreStage) batch stage: idempotent writes on the
//!   record's origin, acknowledgements only after commit, one bad row failing
//!   alone, transient errors retried with backoff.
//! - [`orders`]: the order records of the examples and tests, defined once:
//!   their validation rules, transform and personal fields.
//!
//! # Example
//!
//! Bytes in, validated and stored, bad records dead-lettered with a reason:
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use sluicegate_core::testing::{AckLog, CollectSink, VecSource};
//! use sluicegate_core::{BatchConfig, BatchSpec, DeadLetter, Graph, StageSpec};
//! use sluicegate_stages::Record;
//! use sluicegate_stages::store::{SqliteStore, StoreStage};
//! use sluicegate_stages::validate::{Field, Validator};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("db.sqlite"), "orders").await?;
//! let validator = Validator::builder()
//!     .field(Field::new("amount").required().range(0.0, 1000.0))
//!     .build()?;
//! let input: Vec<Bytes> = [r#"{"amount": 5}"#, r#"{"amount": 5000}"#, "{oops"]
//!     .into_iter()
//!     .map(Bytes::from)
//!     .collect();
//! let acks = AckLog::new();
//! let dead = CollectSink::<DeadLetter>::new();
//! let mut g = Graph::builder("orders");
//! g.dead_letters(StageSpec::new("dlq", dead.clone()));
//! g.source("input", VecSource::new(input, acks.clone()))
//!     .via(StageSpec::new("validate", validator.clone()))
//!     .to_batch(BatchSpec::new(
//!         "store",
//!         StoreStage::<Record>::new(std::sync::Arc::new(store)),
//!         BatchConfig::new(500, Duration::from_millis(20)),
//!     ));
//! let report = g.build()?.start().await?.wait().await;
//! assert!(report.is_clean());
//! assert_eq!((acks.delivered(), acks.dead_lettered()), (1, 2));
//! let reasons: Vec<String> = dead.items().iter().map(|d| d.error.message().to_string()).collect();
//! assert_eq!(reasons, [
//!     r#"field "amount": rule range: 5000 > max 1000"#,
//!     "payload: rule json: invalid JSON at line 1 column 2: key must be a string",
//! ]);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod codec;
pub mod orders;
pub mod store;
pub mod transform;
pub mod validate;

/// A JSON record: an object's fields. What [`validate::Validator`] emits and
/// the built-in transforms work on.
pub type Record = serde_json::Map<String, serde_json::Value>;
