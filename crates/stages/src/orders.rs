//! The order records of this crate's examples and tests, defined once: their
//! validation rules, their transform and their personal fields.
//!
//! An order is a JSON object:
//!
//! | field              | rule                                                   |
//! |--------------------|--------------------------------------------------------|
//! | `id`               | required string, `^[a-z0-9-]{1,36}$`                   |
//! | `amount`           | required number, 0 to 1000 (currency units)            |
//! | `currency`         | required, one of `EUR`, `GBP`, `USD`                   |
//! | `email`            | string of at most 254 chars with one `@`; personal     |
//! | `qty`              | integer, at least 1                                    |
//! | `tags`             | array of at most 5 items                               |
//! | `customer.country` | exactly 2 chars                                        |
//! | `refund`, `reason` | a refund (`"refund": true`) needs a non-null `reason`  |
//! | `test`             | `true` marks a test order, which the transform drops   |
//!
//! Other fields are kept. Missing or `null` optional fields pass.
//!
//! [`stages`] puts them together after a source of raw payloads: decode
//! and validate, transform, enrich and hash; a store goes after it
//! (`examples/validate_and_store.rs`). The test corpus
//! (`tests/common/corpus.rs`) runs malformed orders of every kind through
//! the same stages. The `sluicegate` binary's generated events are a different schema
//! (a JSON Schema with `user` and `ts`, in the runner crate).
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use sluicegate_core::{Origin, Stage};
//! use sluicegate_stages::orders;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let validator = orders::rules().build()?;
//! let origin = Origin::default();
//! let ok = Bytes::from(r#"{"id":"o-1","amount":12.5,"currency":"EUR"}"#);
//! let record = validator.process(ok, &origin).await?.into_iter().next();
//! assert!(record.is_some());
//!
//! let bad = Bytes::from(r#"{"id":"o-2","amount":1500,"currency":"EUR"}"#);
//! let err = validator.process(bad, &origin).await.err().map(|e| e.to_string());
//! assert_eq!(err.as_deref(), Some(r#"field "amount": rule range: 1500 > max 1000"#));
//! # Ok(())
//! # }
//! ```

use bytes::Bytes;
use serde_json::Value;
use sluicegate_core::{StageSpec, Stream};

use crate::Record;
use crate::transform::{EnrichConfig, Transform, enrich_and_hash};
use crate::validate::{Field, Kind, Validator, ValidatorBuilder};

/// The fields of an order that are personal data: what
/// [`EnrichConfig`] pseudonymises.
pub const PERSONAL_FIELDS: [&str; 1] = ["email"];

/// The field the [`transform`] adds: `amount` in integer cents.
pub const CENTS_FIELD: &str = "amount_cents";

/// An order's rules (see the [module docs](self)), ready for
/// [`max_payload_bytes`](ValidatorBuilder::max_payload_bytes) (the default
/// otherwise) and [`build`](ValidatorBuilder::build), which cannot fail on
/// these patterns.
pub fn rules() -> ValidatorBuilder {
    Validator::builder()
        .field(
            Field::new("id")
                .required()
                .kind(Kind::String)
                .pattern("^[a-z0-9-]{1,36}$"),
        )
        .field(
            Field::new("amount")
                .required()
                .kind(Kind::Number)
                .range(0.0, 1000.0),
        )
        .field(
            Field::new("currency")
                .required()
                .one_of(["EUR", "GBP", "USD"]),
        )
        .field(
            Field::new("email")
                .kind(Kind::String)
                .max_length(254)
                .pattern(r"^[^@\s]+@[^@\s]+$"),
        )
        .field(Field::new("qty").kind(Kind::Integer).min(1.0))
        .field(Field::new("tags").kind(Kind::Array).max_length(5))
        .field(Field::new("customer.country").length(2, 2))
        .custom("refund_has_reason", |r| {
            let refund = r.get("refund") == Some(&Value::Bool(true));
            if refund && r.get("reason").is_none_or(Value::is_null) {
                Err("a refund needs a reason".into())
            } else {
                Ok(())
            }
        })
}

/// An order's transform: drops test orders (`"test": true`), then adds
/// [`CENTS_FIELD`], `amount` × 100 as an integer.
///
/// # Errors
///
/// The `amount_cents` step fails an order whose amount has more than two
/// decimals (`amount 10.005 has more than 2 decimals`): rounding it would
/// change the amount.
pub fn transform() -> Transform<Record> {
    Transform::<Record>::new()
        .filter(|r| r.get("test") != Some(&Value::Bool(true)))
        .try_map(CENTS_FIELD, |mut r: Record| {
            let amount = r.get("amount").and_then(Value::as_f64).unwrap_or(0.0);
            let cents = (amount * 100.0).round();
            if (amount * 100.0 - cents).abs() > 1e-6 {
                return Err(format!("amount {amount} has more than 2 decimals"));
            }
            r.insert(CENTS_FIELD.into(), Value::from(cents as i64));
            Ok(r)
        })
}

/// How many records the enrich stage hashes at once, on as many threads of
/// the blocking pool.
const ENRICH_PARALLELISM: usize = 2;

/// The order stages after a source of raw payloads, in a graph: `validate`
/// (`validator`: decode and check, see [`rules`]), `transform` ([`transform`])
/// and `enrich` ([`enrich_and_hash`] of [`PERSONAL_FIELDS`] with `key`, in
/// `rounds` HMAC rounds, two records at a time). Returns the enriched
/// records, for a store.
///
/// # Backpressure
///
/// Each stage's mailbox is bounded (16 records before `validate` and
/// `transform`, 4 before `enrich`, whose records are the slow ones): a slow
/// store holds the source back through them.
pub fn stages(
    from: Stream<Bytes>,
    validator: Validator,
    key: impl Into<Vec<u8>>,
    rounds: u32,
) -> Stream<Record> {
    from.via(StageSpec::new("validate", validator).capacity(16))
        .via(StageSpec::new("transform", transform()).capacity(16))
        .via(
            StageSpec::new(
                "enrich",
                enrich_and_hash(
                    EnrichConfig::new(key, PERSONAL_FIELDS).rounds(rounds),
                    ENRICH_PARALLELISM,
                ),
            )
            .concurrency(ENRICH_PARALLELISM)
            .capacity(4),
        )
}
