//! Field rules: what one field of a record must look like.

use std::fmt;
use std::sync::atomic::AtomicU64;

use regex::Regex;
use serde_json::Value;

use crate::Record;

/// A JSON type a field can be required to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A string.
    String,
    /// A number without fraction or exponent that fits `i64` or `u64`
    /// (`1.0` is not an integer).
    Integer,
    /// Any number.
    Number,
    /// `true` or `false`.
    Bool,
    /// An object.
    Object,
    /// An array.
    Array,
}

impl Kind {
    fn matches(self, v: &Value) -> bool {
        match self {
            Kind::String => v.is_string(),
            Kind::Integer => v.is_i64() || v.is_u64(),
            Kind::Number => v.is_number(),
            Kind::Bool => v.is_boolean(),
            Kind::Object => v.is_object(),
            Kind::Array => v.is_array(),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::String => "string",
            Kind::Integer => "integer",
            Kind::Number => "number",
            Kind::Bool => "bool",
            Kind::Object => "object",
            Kind::Array => "array",
        })
    }
}

/// The JSON type name of a value, for messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A rule on one field; its [`name`](FieldRule::name) is what rejections and
/// counters call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldRule {
    /// The field must be present and not null.
    Required,
    /// The field must have a JSON type.
    Type,
    /// A number within bounds.
    Range,
    /// A string's length in characters (or an array's in items) within bounds.
    Length,
    /// A string matching a regular expression.
    Pattern,
    /// One of a set of values.
    Enum,
}

impl FieldRule {
    /// Every field rule, in the order they are checked.
    pub const ALL: [FieldRule; 6] = [
        FieldRule::Required,
        FieldRule::Type,
        FieldRule::Range,
        FieldRule::Length,
        FieldRule::Pattern,
        FieldRule::Enum,
    ];

    /// `required`, `type`, `range`, `length`, `pattern` or `enum`.
    pub fn name(self) -> &'static str {
        match self {
            FieldRule::Required => "required",
            FieldRule::Type => "type",
            FieldRule::Range => "range",
            FieldRule::Length => "length",
            FieldRule::Pattern => "pattern",
            FieldRule::Enum => "enum",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FieldRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one field must look like: declare it with [`Field::new`] and the
/// rule methods, then add it to a
/// [`ValidatorBuilder`](crate::validate::ValidatorBuilder).
///
/// Rules are checked in the order of [`FieldRule::ALL`]; the first that
/// fails rejects the record. A field that is absent or null passes every
/// rule but `required`. Range applies to numbers, length to strings and
/// arrays, pattern to strings: a value of another type fails the `type`
/// rule.
///
/// # Example
///
/// ```
/// use sluicegate_stages::validate::{Field, Kind};
///
/// let amount = Field::new("amount").required().kind(Kind::Number).range(0.0, 1000.0);
/// let sku = Field::new("item.sku").length(1, 32).pattern("^[A-Z0-9-]+$");
/// ```
#[derive(Debug, Clone)]
pub struct Field {
    pub(crate) path: String,
    required: bool,
    kind: Option<Kind>,
    min: Option<f64>,
    max: Option<f64>,
    min_len: Option<usize>,
    max_len: Option<usize>,
    pub(crate) pattern: Option<String>,
    pub(crate) one_of: Option<Vec<Value>>,
}

impl Field {
    /// A field at `path`: a key, or dot-separated keys into nested objects
    /// (`customer.email`).
    pub fn new(path: impl Into<String>) -> Self {
        Field {
            path: path.into(),
            required: false,
            kind: None,
            min: None,
            max: None,
            min_len: None,
            max_len: None,
            pattern: None,
            one_of: None,
        }
    }

    /// The field must be present and not null.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// The field must have JSON type `kind`.
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// A number in `min..=max`.
    pub fn range(self, min: f64, max: f64) -> Self {
        self.min(min).max(max)
    }

    /// A number `>= min`.
    pub fn min(mut self, min: f64) -> Self {
        self.min = Some(min);
        self
    }

    /// A number `<= max`.
    pub fn max(mut self, max: f64) -> Self {
        self.max = Some(max);
        self
    }

    /// A string of `min..=max` characters (or an array of that many items).
    pub fn length(mut self, min: usize, max: usize) -> Self {
        self.min_len = Some(min);
        self.max_len = Some(max);
        self
    }

    /// A string of at most `max` characters (or an array of at most `max` items).
    pub fn max_length(mut self, max: usize) -> Self {
        self.max_len = Some(max);
        self
    }

    /// A string matching the regular expression `pattern` (unanchored unless
    /// it says `^...$`). Checked when the validator is built.
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.pattern = Some(pattern.into());
        self
    }

    /// One of `values` (compared as JSON values: `1` is not `"1"`).
    pub fn one_of<V: Into<Value>>(mut self, values: impl IntoIterator<Item = V>) -> Self {
        self.one_of = Some(values.into_iter().map(Into::into).collect());
        self
    }
}

/// A field ready to check: the declaration, its compiled pattern and its counters.
#[derive(Debug)]
pub(crate) struct CompiledField {
    pub(crate) field: Field,
    pub(crate) regex: Option<Regex>,
    /// The allowed values as text, for messages.
    pub(crate) one_of_text: String,
    pub(crate) counts: [AtomicU64; 6],
}

/// One field's failure: the rule and the detail text.
pub(crate) struct Violation {
    pub(crate) rule: FieldRule,
    pub(crate) detail: String,
}

fn violation(rule: FieldRule, detail: String) -> Result<(), Violation> {
    Err(Violation { rule, detail })
}

/// Looks up a dotted path; `None` when a step is missing or not an object.
pub(crate) fn lookup<'a>(record: &'a Record, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let first = parts.next()?;
    let mut current = record.get(first)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// At most 64 characters of a value's JSON text, for messages.
pub(crate) fn excerpt(v: &Value) -> String {
    const MAX: usize = 64;
    let text = v.to_string();
    if text.chars().count() <= MAX {
        return text;
    }
    let mut cut: String = text.chars().take(MAX).collect();
    cut.push_str("...");
    cut
}

/// A bound as text: `1000` rather than `1000.0`.
fn bound(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

impl CompiledField {
    pub(crate) fn check(&self, record: &Record) -> Result<(), Violation> {
        let f = &self.field;
        let value = match lookup(record, &f.path) {
            None if f.required => return violation(FieldRule::Required, "missing".into()),
            Some(Value::Null) if f.required => {
                return violation(FieldRule::Required, "null".into());
            }
            None | Some(Value::Null) => return Ok(()),
            Some(v) => v,
        };
        let expected = f.kind.or(if f.min.is_some() || f.max.is_some() {
            Some(Kind::Number)
        } else if f.pattern.is_some() {
            Some(Kind::String)
        } else {
            None
        });
        if let Some(kind) = expected.filter(|k| !k.matches(value)) {
            return violation(
                FieldRule::Type,
                format!("expected {kind}, found {}", type_name(value)),
            );
        }
        if let Some(n) = value.as_f64() {
            if let Some(min) = f.min.filter(|min| n < *min) {
                return violation(FieldRule::Range, format!("{value} < min {}", bound(min)));
            }
            if let Some(max) = f.max.filter(|max| n > *max) {
                return violation(FieldRule::Range, format!("{value} > max {}", bound(max)));
            }
        }
        if f.min_len.is_some() || f.max_len.is_some() {
            let (len, unit) = match value {
                Value::String(s) => (s.chars().count(), "chars"),
                Value::Array(a) => (a.len(), "items"),
                other => {
                    return violation(
                        FieldRule::Type,
                        format!("expected string or array, found {}", type_name(other)),
                    );
                }
            };
            if let Some(min) = f.min_len.filter(|min| len < *min) {
                return violation(FieldRule::Length, format!("{len} {unit} < min {min}"));
            }
            if let Some(max) = f.max_len.filter(|max| len > *max) {
                return violation(FieldRule::Length, format!("{len} {unit} > max {max}"));
            }
        }
        if let (Some(re), Some(s)) = (&self.regex, value.as_str()) {
            if !re.is_match(s) {
                return violation(
                    FieldRule::Pattern,
                    format!("{} does not match {}", excerpt(value), re.as_str()),
                );
            }
        }
        if f.one_of.as_ref().is_some_and(|a| !a.contains(value)) {
            return violation(
                FieldRule::Enum,
                format!("{} not in {}", excerpt(value), self.one_of_text),
            );
        }
        Ok(())
    }
}
