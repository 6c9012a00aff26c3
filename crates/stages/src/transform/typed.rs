//! Between JSON records and typed values.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sluicegate_core::{Origin, Outputs, SyncStage};

use super::TransformError;
use crate::Record;

/// The last path segment of a type's name (`Order`, not `my_app::model::Order`).
fn short_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// A stage from [`Record`] to `T`. See [`typed`].
pub struct Typed<T> {
    _types: PhantomData<fn() -> T>,
}

/// A stage converting each [`Record`] into `T` with serde; a record that
/// does not fit fails alone with
/// `record does not fit Order: missing field `amount``.
pub fn typed<T: DeserializeOwned + Send + 'static>() -> Typed<T> {
    Typed {
        _types: PhantomData,
    }
}

impl<T: DeserializeOwned + Send + 'static> SyncStage for Typed<T> {
    type In = Record;
    type Out = T;
    type Error = TransformError;

    fn process_sync(&self, input: Record, _origin: &Origin) -> Result<Outputs<T>, TransformError> {
        serde_json::from_value(Value::Object(input))
            .map(Outputs::one)
            .map_err(|e| TransformError::Convert {
                target: short_name::<T>(),
                message: e.to_string(),
            })
    }
}

/// A stage from `T` to [`Record`]. See [`untyped`].
pub struct Untyped<T> {
    _types: PhantomData<fn(T)>,
}

/// A stage converting each `T` into a [`Record`] with serde; a value that
/// does not serialize to a JSON object fails alone.
pub fn untyped<T: Serialize + Send + 'static>() -> Untyped<T> {
    Untyped {
        _types: PhantomData,
    }
}

impl<T: Serialize + Send + 'static> SyncStage for Untyped<T> {
    type In = T;
    type Out = Record;
    type Error = TransformError;

    fn process_sync(&self, input: T, _origin: &Origin) -> Result<Outputs<Record>, TransformError> {
        let fail = |message: String| TransformError::NotARecord {
            source_type: short_name::<T>(),
            message,
        };
        match serde_json::to_value(&input) {
            Ok(Value::Object(record)) => Ok(Outputs::one(record)),
            Ok(other) => Err(fail(format!(
                "serializes to {}",
                crate::validate::type_name(&other)
            ))),
            Err(e) => Err(fail(e.to_string())),
        }
    }
}
