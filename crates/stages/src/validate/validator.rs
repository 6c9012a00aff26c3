//! The validator: payload checks, field rules, custom rules, counters, stage.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use regex::Regex;
use serde_json::Value;
use sluicegate_core::{Origin, Outputs, SyncStage};

use super::field::{CompiledField, Field, FieldRule, excerpt, type_name};
use crate::Record;
use crate::codec::{PayloadError, parse_json};

/// The default [`ValidatorBuilder::max_payload_bytes`]: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// Why a record was rejected. The `Display` text is the dead letter's reason:
///
/// - `payload: rule utf8: invalid UTF-8 at byte 3`
/// - `payload: rule json: invalid JSON at line 1 column 7: EOF while parsing an object`
/// - `payload: rule object: expected a JSON object, found null`
/// - `field "amount": rule range: 1500 > max 1000`
/// - `rule custom "refund_has_reason": refunds need a reason`
///
/// The grammar is `<subject>: rule <rule>: <detail>`, so a dead-letter
/// store can be grepped by field and rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The payload is not a JSON document (empty, too large, not UTF-8, not
    /// JSON, nested too deep).
    #[error("payload: rule {rule}: {0}", rule = .0.rule())]
    Payload(PayloadError),
    /// The payload is JSON but not an object.
    #[error("payload: rule object: expected a JSON object, found {found}")]
    NotAnObject {
        /// The JSON type found instead.
        found: &'static str,
    },
    /// A field broke a rule.
    #[error("field {field:?}: rule {rule}: {detail}")]
    Field {
        /// The field's path.
        field: String,
        /// The rule it broke.
        rule: FieldRule,
        /// What was wrong (`1500 > max 1000`, `missing`, `expected number, found string`).
        detail: String,
    },
    /// A custom rule said no.
    #[error("rule custom {name:?}: {message}")]
    Custom {
        /// The custom rule's name.
        name: String,
        /// Its message.
        message: String,
    },
}

impl Rejection {
    /// The rule's label: a [`PayloadError::rule`], `object`, a
    /// [`FieldRule::name`], or `custom`.
    pub fn rule(&self) -> &'static str {
        match self {
            Rejection::Payload(p) => p.rule(),
            Rejection::NotAnObject { .. } => "object",
            Rejection::Field { rule, .. } => rule.name(),
            Rejection::Custom { .. } => "custom",
        }
    }

    /// The field the rejection names, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Rejection::Field { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// The payload rules, in the order of [`RECORD_RULES`] (their counters).
const RECORD_RULES: [&str; 9] = [
    "empty", "max_size", "utf8", "json", "depth", "shape", "binary", "trailing", "object",
];

fn record_rule_index(rule: &str) -> usize {
    RECORD_RULES
        .iter()
        .position(|r| *r == rule)
        .unwrap_or(RECORD_RULES.len() - 1)
}

/// A custom rule: a name and a check.
type CustomFn = dyn Fn(&Record) -> Result<(), String> + Send + Sync;

struct Custom {
    name: String,
    check: Box<CustomFn>,
    count: AtomicU64,
}

/// A pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("field {field:?}: invalid pattern: {source}")]
pub struct PatternError {
    /// The field whose pattern is invalid.
    pub field: String,
    /// The regex error.
    #[source]
    pub source: regex::Error,
}

/// Builds a [`Validator`]. See [`Validator::builder`].
pub struct ValidatorBuilder {
    max_payload: usize,
    fields: Vec<Field>,
    custom: Vec<Custom>,
}

impl fmt::Debug for ValidatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidatorBuilder")
            .field("max_payload", &self.max_payload)
            .field("fields", &self.fields)
            .field(
                "custom",
                &self.custom.iter().map(|c| &c.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ValidatorBuilder {
    /// Rejects payloads larger than `max` bytes before parsing them (default
    /// [`DEFAULT_MAX_PAYLOAD`]), so an oversize record costs a length check,
    /// not a parse.
    pub fn max_payload_bytes(mut self, max: usize) -> Self {
        self.max_payload = max;
        self
    }

    /// Adds a field's rules. Fields are checked in the order they are added.
    pub fn field(mut self, field: Field) -> Self {
        self.fields.push(field);
        self
    }

    /// Adds a rule of your own, checked after every field rule, in the order
    /// added: `Err(message)` rejects the record with
    /// `rule custom "<name>": <message>`.
    pub fn custom(
        mut self,
        name: impl Into<String>,
        check: impl Fn(&Record) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.custom.push(Custom {
            name: name.into(),
            check: Box::new(check),
            count: AtomicU64::new(0),
        });
        self
    }

    /// Compiles the patterns and freezes the rules.
    ///
    /// # Errors
    ///
    /// [`PatternError`] naming the first field whose pattern does not compile.
    pub fn build(self) -> Result<Validator, PatternError> {
        let fields = self
            .fields
            .into_iter()
            .map(|field| {
                let regex = match &field.pattern {
                    Some(p) => Some(Regex::new(p).map_err(|source| PatternError {
                        field: field.path.clone(),
                        source,
                    })?),
                    None => None,
                };
                let one_of_text = field
                    .one_of
                    .as_ref()
                    .map(|v| excerpt(&Value::Array(v.clone())))
                    .unwrap_or_default();
                Ok(CompiledField {
                    field,
                    regex,
                    one_of_text,
                    counts: Default::default(),
                })
            })
            .collect::<Result<Vec<_>, PatternError>>()?;
        Ok(Validator {
            inner: Arc::new(Inner {
                max_payload: self.max_payload,
                fields,
                custom: self.custom,
                checked: AtomicU64::new(0),
                passed: AtomicU64::new(0),
                record_counts: Default::default(),
            }),
        })
    }
}

struct Inner {
    max_payload: usize,
    fields: Vec<CompiledField>,
    custom: Vec<Custom>,
    checked: AtomicU64,
    passed: AtomicU64,
    record_counts: [AtomicU64; RECORD_RULES.len()],
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
    inner: Arc<Inner>,
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

/// A snapshot of a validator's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationStats {
    /// Records checked.
    pub checked: u64,
    /// Records that passed every rule.
    pub passed: u64,
    /// Records rejected (each counted once, under the first rule it broke).
    pub rejected: u64,
    /// Rejections by rule label ([`Rejection::rule`]); rules with none are left out.
    pub by_rule: BTreeMap<&'static str, u64>,
    /// Rejections by field path, then rule; only non-zero counts.
    pub by_field: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// Rejections by custom rule name; only non-zero counts.
    pub by_custom: BTreeMap<String, u64>,
}

impl ValidationStats {
    /// Rejections under rule label `rule` (0 if none).
    pub fn rule(&self, rule: &str) -> u64 {
        self.by_rule.get(rule).copied().unwrap_or(0)
    }

    /// Rejections of field `field` under rule `rule` (0 if none).
    pub fn field_rule(&self, field: &str, rule: &str) -> u64 {
        self.by_field
            .get(field)
            .and_then(|m| m.get(rule))
            .copied()
            .unwrap_or(0)
    }
}

impl Validator {
    /// Starts declaring rules.
    pub fn builder() -> ValidatorBuilder {
        ValidatorBuilder {
            max_payload: DEFAULT_MAX_PAYLOAD,
            fields: Vec::new(),
            custom: Vec::new(),
        }
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
