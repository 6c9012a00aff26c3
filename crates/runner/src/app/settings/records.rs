//! What a valid record is ([`ValidateSettings`]) and which of its fields
//! the transform works on ([`TransformSettings`]).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::app::defaults;

/// What a valid record is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ValidateSettings {
    /// A JSON Schema file (draft 2020-12 unless its `$schema` names draft
    /// 4, 6, 7 or 2019-09), relative to the working directory. `None`: the
    /// built-in schema of the generated events
    /// ([`EVENT_SCHEMA`](crate::pipeline::EVENT_SCHEMA)). The schema is one
    /// self-contained document: nothing is fetched, so a `$ref` to another
    /// file or URL is a configuration error.
    pub schema: Option<PathBuf>,
    /// Whether `format` is an assertion (a string that is not a valid
    /// `email`, `date-time`, `uuid`, ... is rejected) rather than an
    /// annotation (the draft 2020-12 default).
    pub formats: bool,
    /// Records larger than this are dead-lettered before they are parsed.
    pub max_payload_bytes: usize,
}

impl Default for ValidateSettings {
    fn default() -> Self {
        ValidateSettings {
            schema: None,
            formats: false,
            max_payload_bytes: defaults::MAX_PAYLOAD_BYTES,
        }
    }
}

/// Which fields the transform works on. Fields are top-level keys of a
/// record; a record without them (or one that is not an object) passes
/// through without that step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TransformSettings {
    /// Fields whose values are replaced by their keyed HMAC-SHA-256 (hex;
    /// the key is `SLUICEGATE_HASH_KEY`, `run.hash_rounds` rounds): personal
    /// data such as e-mail addresses. Empty for none.
    pub pseudonymise: Vec<String>,
    /// A numeric field converted to integer cents (× 100, rounded) into
    /// [`cents_field`](Self::cents_field); empty for none. A record whose
    /// field is missing or not a number gets no cents field.
    pub cents: String,
    /// Where the cents go; empty for `<cents>_cents`.
    pub cents_field: String,
}

impl Default for TransformSettings {
    fn default() -> Self {
        TransformSettings {
            pseudonymise: defaults::PSEUDONYMISE
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect(),
            cents: defaults::CENTS.into(),
            cents_field: String::new(),
        }
    }
}

impl TransformSettings {
    /// The field converted to cents and the field the cents go to, if any.
    pub fn cents(&self) -> Option<(&str, String)> {
        if self.cents.is_empty() {
            return None;
        }
        let to = if self.cents_field.is_empty() {
            format!("{}_cents", self.cents)
        } else {
            self.cents_field.clone()
        };
        Some((&self.cents, to))
    }
}
