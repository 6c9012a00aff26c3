//! The validator: payload checks, field rules, custom rules, counters, stage.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde_json::Value;
use sluicegate_core::{Origin, Outputs, SyncStage};

use super::builder::{Custom, ValidatorBuilder};
use super::field::{CompiledField, FieldRule, type_name};
use super::rejection::{RECORD_RULES, Rejection, record_rule_index};
use super::stats::ValidationStats;
use crate::Record;
use crate::codec::{PayloadError, parse_json};

/// The default [`ValidatorBuilder::max_payload_bytes`]: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

pub(super) struct Inner {
    pub(super) max_payload: usize,
    pub(super) fields: Vec<CompiledField>,
    pub(super) custom: Vec<Custom>,
    pub(super) checked: AtomicU64,
    pub(super) passed: AtomicU64,
    pub(super) record_counts: [AtomicU64; RECORD_RULES.len()],
}

/// Declarative validation of JSON records, and a [`Stage`](sluicegate_core::Stage) from bytes to
/// [`Record`]s.
///
/// Checks, in order, stopping at the first failure: the payload's size,
/// that it is not empty, UTF-8, JSON (at most
/// [`MAX_JSON_DEPTH`](crate::codec::MAX_JSON_DEPTH) levels deep), a JSON
/// object; then each field's rules in the order the fields were added; then
/// the custom rules. A rejected record fails alone: the graph sends it to the
/// dead-letter route with the [`Rejection`]'s text as its reason.
///
/// Counters per rule and per field are kept in atomics; read them with
/// [`stats`](Validator::stats). Clones share the rules and the counters, so
/// keep a clone to read them while the stage runs.
///
/// # Example
///
/// ```
/// use sluicegate_stages::validate::{Field, Kind, Validator};
///
/// let v = Validator::builder()
///     .max_payload_bytes(64 * 1024)
///     .field(Field::new("id").required().kind(Kind::String).pattern("^[a-z0-9-]{1,36}$"))
///     .field(Field::new("amount").required().range(0.0, 1000.0))
///     .field(Field::new("currency").one_of(["EUR", "USD"]))
///     .custom("refund_has_reason", |r| {
///         if r.get("refund") == Some(&true.into()) && r.get("reason").is_none() {
///             Err("a refund needs a reason".into())
///         } else {
///             Ok(())
///         }
///     })
///     .build()?;
/// let err = v.validate(br#"{"id": "a-1", "amount": 1500}"#).unwrap_err();
/// assert_eq!(err.to_string(), r#"field "amount": rule range: 1500 > max 1000"#);
/// assert_eq!(v.stats().rule("range"), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Validator {
    pub(super) inner: Arc<Inner>,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("max_payload", &self.inner.max_payload)
            .field("fields", &self.inner.fields.len())
            .field("custom", &self.inner.custom.len())
            .finish()
    }
}

impl Validator {
    /// Starts declaring rules.
    pub fn builder() -> ValidatorBuilder {
        ValidatorBuilder::new()
    }

    /// Validates raw bytes and returns the record, counting the outcome.
    ///
    /// # Errors
    ///
    /// The [`Rejection`] of the first rule the payload breaks.
    pub fn validate(&self, payload: &[u8]) -> Result<Record, Rejection> {
        let result = self.parse(payload).and_then(|record| {
            self.check_rules(&record)?;
            Ok(record)
        });
        self.count(&result);
        result
    }

    /// Validates an already decoded value, counting the outcome.
    ///
    /// # Errors
    ///
    /// [`Rejection::NotAnObject`] or the first rule the record breaks.
    pub fn validate_value(&self, value: Value) -> Result<Record, Rejection> {
        let result = into_record(value).and_then(|record| {
            self.check_rules(&record)?;
            Ok(record)
        });
        self.count(&result);
        result
    }

    fn parse(&self, payload: &[u8]) -> Result<Record, Rejection> {
        if payload.len() > self.inner.max_payload {
            return Err(Rejection::Payload(PayloadError::TooLarge {
                size: payload.len(),
                max: self.inner.max_payload,
            }));
        }
        let value: Value = parse_json(payload).map_err(Rejection::Payload)?;
        into_record(value)
    }

    /// Checks the field and custom rules without counting.
    fn check_rules(&self, record: &Record) -> Result<(), Rejection> {
        for f in &self.inner.fields {
            if let Err(v) = f.check(record) {
                f.counts[v.rule.index()].fetch_add(1, Ordering::Relaxed);
                return Err(Rejection::Field {
                    field: f.field.path.clone(),
                    rule: v.rule,
                    detail: v.detail,
                });
            }
        }
        for c in &self.inner.custom {
            if let Err(message) = (c.check)(record) {
                c.count.fetch_add(1, Ordering::Relaxed);
                return Err(Rejection::Custom {
                    name: c.name.clone(),
                    message,
                });
            }
        }
        Ok(())
    }

    fn count(&self, result: &Result<Record, Rejection>) {
        let inner = &self.inner;
        inner.checked.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(_) => {
                inner.passed.fetch_add(1, Ordering::Relaxed);
            }
            Err(Rejection::Payload(p)) => {
                inner.record_counts[record_rule_index(p.rule())].fetch_add(1, Ordering::Relaxed);
            }
            Err(Rejection::NotAnObject { .. }) => {
                inner.record_counts[record_rule_index("object")].fetch_add(1, Ordering::Relaxed);
            }
            // Field and custom counters are bumped where the rule fails.
            Err(Rejection::Field { .. } | Rejection::Custom { .. }) => {}
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ValidationStats {
        let inner = &self.inner;
        let mut stats = ValidationStats {
            checked: inner.checked.load(Ordering::Relaxed),
            passed: inner.passed.load(Ordering::Relaxed),
            ..ValidationStats::default()
        };
        let mut add = |rule: &'static str, n: u64| {
            if n > 0 {
                *stats.by_rule.entry(rule).or_insert(0) += n;
            }
        };
        for (rule, n) in RECORD_RULES.iter().zip(&inner.record_counts) {
            add(rule, n.load(Ordering::Relaxed));
        }
        for f in &inner.fields {
            for rule in FieldRule::ALL {
                add(rule.name(), f.counts[rule.index()].load(Ordering::Relaxed));
            }
        }
        for c in &inner.custom {
            add("custom", c.count.load(Ordering::Relaxed));
        }
        for f in &inner.fields {
            for rule in FieldRule::ALL {
                let n = f.counts[rule.index()].load(Ordering::Relaxed);
                if n > 0 {
                    *stats
                        .by_field
                        .entry(f.field.path.clone())
                        .or_default()
                        .entry(rule.name())
                        .or_insert(0) += n;
                }
            }
        }
        for c in &inner.custom {
            let n = c.count.load(Ordering::Relaxed);
            if n > 0 {
                *stats.by_custom.entry(c.name.clone()).or_insert(0) += n;
            }
        }
        stats.rejected = stats.by_rule.values().sum();
        stats
    }
}

fn into_record(value: Value) -> Result<Record, Rejection> {
    match value {
        Value::Object(record) => Ok(record),
        other => Err(Rejection::NotAnObject {
            found: type_name(&other),
        }),
    }
}

impl SyncStage for Validator {
    type In = Bytes;
    type Out = Record;
    type Error = Rejection;

    fn process_sync(&self, input: Bytes, _origin: &Origin) -> Result<Outputs<Record>, Rejection> {
        self.validate(&input).map(Outputs::one)
    }
}
