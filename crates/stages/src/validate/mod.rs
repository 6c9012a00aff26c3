//! Validation of JSON records, two ways.
//!
//! **Against a JSON Schema**: a [`SchemaValidator`] compiles a schema once
//! (draft 2020-12 by default; a `$schema` naming draft 4, 6, 7 or 2019-09
//! is honoured) with the maintained [`jsonschema`] crate and checks each
//! record against it. It is a [`Stage`](sluicegate_core::Stage) from
//! [`Value`](serde_json::Value) to `Value`: a record the schema rejects
//! fails alone and goes to the dead-letter route with a [`SchemaRejection`]
//! naming the instance path (a JSON Pointer) and the failed keyword, for
//! example `path "/amount": keyword minimum: -5 is less than the minimum of
//! 0`. Counters per keyword and per (path, keyword) are read with
//! [`SchemaValidator::stats`]. A schema that cannot be used is a
//! [`SchemaError`] naming the place in the schema that is wrong. This is
//! what the `sluicegate` binary validates with.
//!
//! **With rules in code**: a [`Validator`] checks raw payloads (size,
//! empty, UTF-8, JSON, nesting depth, object) and then the declared
//! [`Field`] rules: required, type, numeric range, string length, pattern,
//! enumeration; then custom rules (closures). It is a
//! [`Stage`](sluicegate_core::Stage) from [`Bytes`](bytes::Bytes) to
//! [`Record`](crate::Record): a record that breaks a rule fails alone with a
//! [`Rejection`] that names the field and the rule, for example
//! `field "amount": rule range: 1500 > max 1000`. Counters per rule, per
//! field and per custom rule are read with [`Validator::stats`].
//!
//! Core's metrics count failures per stage; these counters say which rule
//! or keyword failed.

mod builder;
mod field;
mod rejection;
mod schema;
mod stats;
mod validator;

pub use builder::{PatternError, ValidatorBuilder};
pub(crate) use field::type_name;
pub use field::{Field, FieldRule, Kind};
pub use rejection::Rejection;
pub use schema::{
    DEFAULT_MAX_COUNTED_PATHS, OTHER_PATHS, SchemaError, SchemaRejection, SchemaStats,
    SchemaValidator, SchemaValidatorBuilder, Violation,
};
pub use stats::ValidationStats;
pub use validator::{DEFAULT_MAX_PAYLOAD, Validator};
