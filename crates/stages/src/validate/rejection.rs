//! Why a record was rejected, and the payload rules it is counted under.

use super::field::FieldRule;
use crate::codec::PayloadError;

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
pub(super) const RECORD_RULES: [&str; 9] = [
    "empty", "max_size", "utf8", "json", "depth", "shape", "binary", "trailing", "object",
];

pub(super) fn record_rule_index(rule: &str) -> usize {
    RECORD_RULES
        .iter()
        .position(|r| *r == rule)
        .unwrap_or(RECORD_RULES.len() - 1)
}
