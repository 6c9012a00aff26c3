//! Declaring a [`Validator`]'s rules: [`ValidatorBuilder`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use regex::Regex;
use serde_json::Value;

use super::field::{CompiledField, Field, excerpt};
use super::validator::{DEFAULT_MAX_PAYLOAD, Inner, Validator};
use crate::Record;

/// A custom rule: a name and a check.
pub(super) type CustomFn = dyn Fn(&Record) -> Result<(), String> + Send + Sync;

pub(super) struct Custom {
    pub(super) name: String,
    pub(super) check: Box<CustomFn>,
    pub(super) count: AtomicU64,
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
    /// No rules yet; payloads up to [`DEFAULT_MAX_PAYLOAD`].
    pub(super) fn new() -> Self {
        ValidatorBuilder {
            max_payload: DEFAULT_MAX_PAYLOAD,
            fields: Vec::new(),
            custom: Vec::new(),
        }
    }

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
