//! Declarative validation of JSON records.
//!
//! A [`Validator`] checks raw payloads (size, empty, UTF-8, JSON, nesting
//! depth, object) and then the declared [`Field`] rules: required, type,
//! numeric range, string length, pattern, enumeration; then custom rules
//! (closures). It is a [`Stage`](sluicegate_core::Stage) from
//! [`Bytes`](bytes::Bytes) to [`Record`](crate::Record): a record that
//! breaks a rule fails alone and goes to the dead-letter route with a
//! [`Rejection`] that names the field and the rule, for example
//! `field "amount": rule range: 1500 > max 1000`.
//!
//! Counters per rule, per field and per custom rule are read with
//! [`Validator::stats`] (core's metrics count per stage, not per rule).

mod field;
mod validator;

pub(crate) use field::type_name;
pub use field::{Field, FieldRule, Kind};
pub use validator::{
    DEFAULT_MAX_PAYLOAD, PatternError, Rejection, ValidationStats, Validator, ValidatorBuilder,
};
