//! A record's idempotency key, and the row it is written as.

use std::sync::Arc;

use serde::Serialize;
use sluicegate_core::Origin;

use super::StoreStage;
use crate::store::{Row, StoreError};

/// Makes a row's idempotency key from the value and its origin.
pub(super) type KeyFn<T> = Arc<dyn Fn(&T, &Origin) -> Option<String> + Send + Sync>;

/// The origin a row is keyed and labelled by, from the record's.
pub(super) type OriginFn = Arc<dyn Fn(&Origin) -> Origin + Send + Sync>;

/// The idempotency key of a record from its origin:
/// `"{topic}/{partition}/{offset}"` (topic empty when unknown), or `None`
/// when the origin has no partition or no offset.
pub fn origin_key(origin: &Origin) -> Option<String> {
    let (partition, offset) = (origin.partition?, origin.offset?);
    Some(format!(
        "{}/{partition}/{offset}",
        origin.topic.as_deref().unwrap_or("")
    ))
}

impl<T: Serialize + Send + 'static> StoreStage<T> {
    /// `value`'s row: its key (see [`StoreStage`]), origin and JSON.
    pub(super) fn row(&self, value: &T, origin: &Origin) -> Result<Row, StoreError> {
        let mapped;
        let origin = match &self.origin_by {
            Some(f) => {
                mapped = f(origin);
                &mapped
            }
            None => origin,
        };
        let id = match &self.key_by {
            Some(f) => f(value, origin).map(|k| format!("key:{k}")),
            None => origin_key(origin).or_else(|| {
                self.key_fallback
                    .as_ref()
                    .and_then(|f| f(value, origin))
                    .map(|k| format!("key:{k}"))
            }),
        }
        .ok_or(StoreError::NoKey)?;
        let payload =
            serde_json::to_string(value).map_err(|e| StoreError::Encode(e.to_string()))?;
        Ok(Row {
            id,
            topic: origin.topic.as_deref().map(str::to_string),
            partition: origin.partition,
            offset: origin.offset,
            payload,
        })
    }
}
