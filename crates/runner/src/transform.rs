//! The reference pipeline's transform, on the blocking pool a batch per hop:
//! each record gets its cents field, its personal fields pseudonymised and
//! a fingerprint ([`EnrichAndHash`]), as the settings' `transform` section
//! says, and is encoded to JSON once ([`Encoded`]).
//!
//! Both branches after the transform take the encoded record: the store
//! writes its text, the output topic gets its bytes. The broadcast between
//! them copies a reference count, not the record, and the record is
//! serialized once instead of once per branch.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use sluicegate_core::{BatchStage, BoxError, blocking_batch};
use sluicegate_stages::transform::{EnrichAndHash, EnrichConfig};

use crate::settings::Settings;

/// A record encoded as JSON text, shared: cloning it copies a reference
/// count. It serializes as the JSON it holds (so a store writes that text),
/// and its bytes are what the output topic receives.
#[derive(Clone)]
pub struct Encoded(Arc<Box<RawValue>>);

impl Encoded {
    /// `record` as JSON (the text `serde_json::to_string` gives).
    ///
    /// # Errors
    ///
    /// Never for a [`Value`] in practice (its keys are strings); serde's
    /// error otherwise.
    pub fn new(record: &(impl Serialize + ?Sized)) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(record).map(|raw| Encoded(Arc::new(raw)))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The JSON text as [`Bytes`], sharing this value's buffer (no copy).
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from_owner(self.clone())
    }
}

impl AsRef<[u8]> for Encoded {
    fn as_ref(&self) -> &[u8] {
        self.as_str().as_bytes()
    }
}

impl Serialize for Encoded {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self.0).serialize(serializer)
    }
}

impl fmt::Debug for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Encoded").field(&self.as_str()).finish()
    }
}

/// The transform of one record, as the settings say: the field
/// `transform.cents` converted to integer cents (× 100, rounded) into its
/// cents field, then [`EnrichAndHash`] (the fields of
/// `transform.pseudonymise` pseudonymised with `key` in `run.hash_rounds`
/// HMAC rounds, the fingerprint added), then encoded. A record that is not
/// an object is encoded unchanged. With a non-empty
/// `run.panic_on_id_suffix` it panics on records whose `id` ends with it
/// (fault injection for tests).
pub fn transform_one(
    key: Vec<u8>,
    settings: &Settings,
) -> impl Fn(Value) -> Result<Encoded, serde_json::Error> + Send + Sync + use<> {
    let enrich = EnrichAndHash::new(
        EnrichConfig::new(key, settings.transform.pseudonymise.clone())
            .rounds(settings.run.hash_rounds),
    );
    let cents = settings
        .transform
        .cents()
        .map(|(from, to)| (from.to_string(), to));
    let panic_suffix = settings.run.panic_on_id_suffix.clone();
    move |record: Value| {
        if !panic_suffix.is_empty()
            && record
                .get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id.ends_with(&panic_suffix))
        {
            panic!("fault injection: id ends with {panic_suffix:?}");
        }
        let Value::Object(mut r) = record else {
            return Encoded::new(&record);
        };
        if let Some((from, to)) = &cents {
            if let Some(amount) = r.get(from).and_then(Value::as_f64) {
                r.insert(to.clone(), Value::from((amount * 100.0).round() as i64));
            }
        }
        Encoded::new(&enrich.apply(r))
    }
}

/// HMAC rounds one worker runs in one batch, at most (some 50 ms on the
/// machine of docs/BENCHMARKS.md): see [`batch_items`].
const ROUNDS_PER_BATCH: u64 = 100_000;

/// The most records the transform takes in one batch: half its mailbox,
/// or fewer when records are slow to hash (`run.hash_rounds` per
/// pseudonymised field), so that a worker's part of a batch is at most
/// [`ROUNDS_PER_BATCH`] rounds. A batch's records leave together, when its
/// last one is done: at a million rounds a record (a second or so), a batch
/// of 256 would hold the first record back for minutes; it takes one record
/// per worker instead.
pub fn batch_items(settings: &Settings) -> usize {
    let fields = settings.transform.pseudonymise.len().max(1) as u64;
    let per_record = u64::from(settings.run.hash_rounds.max(1)).saturating_mul(fields);
    let per_worker = (ROUNDS_PER_BATCH / per_record).max(1);
    let workers = settings.stages.transform.workers.max(1) as u64;
    let half = (settings.stages.transform.capacity / 2).max(1) as u64;
    per_worker.saturating_mul(workers).min(half) as usize
}

/// The transform stage: [`transform_one`] on each record of a batch, the
/// batch split across `stages.transform.workers` threads of the blocking
/// pool ([`blocking_batch`]). Results keep the input order; a record that
/// panics fails alone, with the panic's message.
pub fn stage(
    key: Vec<u8>,
    settings: &Settings,
) -> impl BatchStage<In = Value, Out = Encoded, Error = BoxError> + use<> {
    blocking_batch(
        settings.stages.transform.workers,
        transform_one(key, settings),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(json: &str) -> Value {
        serde_json::from_str(json).expect("JSON")
    }

    #[test]
    fn encoded_is_the_records_json_and_serializes_as_it() {
        let r = value(r#"{"b":[1,2.5,"x\"y"],"a":{"d":null,"c":true}}"#);
        let e = Encoded::new(&r).expect("encodes");
        let want = serde_json::to_string(&r).expect("encodes");
        assert_eq!(e.as_str(), want);
        assert_eq!(&e.to_bytes()[..], want.as_bytes());
        assert_eq!(serde_json::to_string(&e).expect("serializes"), want);
        let copy = e.clone();
        assert!(Arc::ptr_eq(&copy.0, &e.0), "a clone shares the text");
    }

    #[test]
    fn the_transform_adds_cents_hashes_and_fingerprints() {
        let f = transform_one(b"k".to_vec(), &Settings::default());
        let out = f(value(
            r#"{"id":"a1","email":"x@y.z","amount":12.345,"user":"u"}"#,
        ))
        .expect("transforms");
        let back = value(out.as_str());
        assert_eq!(back.get("amount_cents"), Some(&Value::from(1235)));
        let email = back.get("email").and_then(Value::as_str).unwrap_or("");
        assert_eq!(email.len(), 64);
        assert_eq!(back.get("user"), Some(&Value::from("u")));
        assert!(back.get("fingerprint").is_some());
    }

    #[test]
    fn the_transform_takes_its_fields_from_the_settings() {
        let mut settings = Settings::default();
        settings.transform.pseudonymise = vec!["user".into()];
        settings.transform.cents = "price".into();
        settings.transform.cents_field = "pence".into();
        let f = transform_one(b"k".to_vec(), &settings);
        let back = value(
            f(value(
                r#"{"email":"x@y.z","price":1.5,"amount":2,"user":"u"}"#,
            ))
            .expect("transforms")
            .as_str(),
        );
        assert_eq!(back.get("pence"), Some(&Value::from(150)));
        assert_eq!(back.get("amount_cents"), None);
        assert_eq!(back.get("email"), Some(&Value::from("x@y.z")));
        assert_eq!(
            back.get("user").and_then(Value::as_str).map(str::len),
            Some(64)
        );
    }

    #[test]
    fn slow_records_go_in_small_batches() {
        let mut settings = Settings::default();
        settings.stages.transform.capacity = 512;
        settings.stages.transform.workers = 2;
        settings.run.hash_rounds = 1;
        assert_eq!(batch_items(&settings), 256, "half the mailbox");
        settings.run.hash_rounds = 2_000;
        assert_eq!(batch_items(&settings), 2 * 50, "100,000 rounds a worker");
        settings.transform.pseudonymise = vec!["a".into(), "b".into()];
        assert_eq!(batch_items(&settings), 2 * 25, "two fields a record");
        settings.run.hash_rounds = 2_000_000;
        assert_eq!(batch_items(&settings), 2, "one record a worker");
    }

    #[test]
    fn a_record_that_is_not_an_object_passes_through_encoded() {
        let f = transform_one(b"k".to_vec(), &Settings::default());
        assert_eq!(f(value("[1,2]")).expect("encodes").as_str(), "[1,2]");
    }
}
