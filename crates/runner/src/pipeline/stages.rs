//! The pipeline's own stages: decoding, and the steps every record takes
//! before the store (decode, validate, transform).

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use sluicegate_core::{BatchConfig, BatchSpec, Stream, try_map};
use sluicegate_stages::codec::{Codec, Json};
use sluicegate_stages::validate::SchemaValidator;

use super::spec;
use crate::settings::Settings;
use crate::transform::Encoded;

/// Decode, validate and transform `input`, the stages named with `prefix`
/// (the retry topics' records take the same steps as `retry-…`).
pub(super) fn prepare(
    input: Stream<Bytes>,
    prefix: &str,
    validator: SchemaValidator,
    settings: &Settings,
) -> Stream<Encoded> {
    let st = &settings.stages;
    input
        .via(spec(
            &format!("{prefix}decode"),
            decode(settings.validate.max_payload_bytes),
            &st.decode,
        ))
        .via(spec(&format!("{prefix}validate"), validator, &st.validate))
        .via_batch(
            // Whatever waits, up to half the mailbox (fewer when records
            // are slow to hash), in one hop to the blocking pool.
            // Results keep the input order: a
            // transaction, or a store batch keeping the offsets,
            // commits offsets up to the records it carries, so they
            // must reach it in each partition's order.
            BatchSpec::new(
                format!("{prefix}transform"),
                crate::transform::stage(hash_key(), settings),
                BatchConfig::new(crate::transform::batch_items(settings), Duration::ZERO),
            )
            .capacity(st.transform.capacity)
            .overflow(st.transform.overflow.into()),
        )
}

/// The decode stage: JSON, refusing payloads over `max_payload` bytes
/// unparsed.
pub(super) fn decode(max_payload: usize) -> impl sluicegate_core::Stage<In = Bytes, Out = Value> {
    try_map(move |payload: Bytes| {
        if payload.len() > max_payload {
            return Err(format!(
                "payload of {} bytes is over the limit of {max_payload} bytes",
                payload.len()
            ));
        }
        Codec::<Value>::decode(&Json, &payload).map_err(|e| e.to_string())
    })
}

/// The pseudonymisation key: `SLUICEGATE_HASH_KEY`, or a fixed development
/// key (pseudonyms are then only as secret as this source file).
pub(super) fn hash_key() -> Vec<u8> {
    match std::env::var("SLUICEGATE_HASH_KEY") {
        Ok(k) if !k.is_empty() => k.into_bytes(),
        _ => b"sluicegate-development-key".to_vec(),
    }
}
