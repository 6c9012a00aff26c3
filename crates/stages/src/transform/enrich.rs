//! The reference pipeline's CPU-heavy transform: pseudonymise and fingerprint.

use std::fmt;
use std::fmt::Write as _;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sluicegate_core::Stage;

use crate::Record;

/// Settings of [`enrich_and_hash`].
#[derive(Clone)]
pub struct EnrichConfig {
    /// Fields (top-level keys) whose values are replaced by their keyed hash:
    /// personal data such as e-mail addresses or phone numbers.
    pub pseudonymize: Vec<String>,
    /// The HMAC key. Keep it secret: with the key, a hash can be checked
    /// against guesses.
    pub key: Vec<u8>,
    /// HMAC rounds per pseudonymised value (at least 1); more rounds make
    /// guessing slower and each record more expensive.
    pub rounds: u32,
    /// The field that receives the record's fingerprint (default `fingerprint`).
    pub fingerprint_field: String,
}

impl fmt::Debug for EnrichConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrichConfig")
            .field("pseudonymize", &self.pseudonymize)
            .field("key", &"<redacted>")
            .field("rounds", &self.rounds)
            .field("fingerprint_field", &self.fingerprint_field)
            .finish()
    }
}

impl EnrichConfig {
    /// Pseudonymises `fields` with `key`, one round, fingerprint in `fingerprint`.
    pub fn new(
        key: impl Into<Vec<u8>>,
        fields: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        EnrichConfig {
            pseudonymize: fields.into_iter().map(Into::into).collect(),
            key: key.into(),
            rounds: 1,
            fingerprint_field: "fingerprint".into(),
        }
    }

    /// Sets the HMAC rounds per value (at least 1).
    pub fn rounds(mut self, rounds: u32) -> Self {
        self.rounds = rounds.max(1);
        self
    }
}

/// The enrich-and-hash function itself, usable without a graph (tests,
/// benchmarks, other stages). See [`enrich_and_hash`].
#[derive(Debug, Clone)]
pub struct EnrichAndHash {
    config: Arc<EnrichConfig>,
}

impl EnrichAndHash {
    /// A transform with `config`.
    pub fn new(config: EnrichConfig) -> Self {
        EnrichAndHash {
            config: Arc::new(config),
        }
    }

    /// Pseudonymises the configured fields (`"email": "a@b.c"` becomes
    /// `"email": "<64 hex digits>"`), then sets the fingerprint field to the
    /// SHA-256 (hex) of the record's canonical JSON (keys sorted at every
    /// level, no whitespace, the fingerprint field itself left out), so equal
    /// records get equal fingerprints whatever their key order.
    pub fn apply(&self, mut record: Record) -> Record {
        let c = &self.config;
        for field in &c.pseudonymize {
            if let Some(v) = record.get_mut(field).filter(|v| !v.is_null()) {
                let text = match &mut *v {
                    Value::String(s) => std::mem::take(s),
                    other => canonical(other),
                };
                *v = Value::String(self.keyed_hash(text.as_bytes()));
            }
        }
        record.remove(&c.fingerprint_field);
        let mut text = String::new();
        write_canonical_object(&record, &mut text);
        let digest = Sha256::digest(text.as_bytes());
        record.insert(c.fingerprint_field.clone(), Value::String(hex(&digest)));
        record
    }

    /// HMAC-SHA-256 of `data` under the key, iterated `rounds` times, as hex.
    fn keyed_hash(&self, data: &[u8]) -> String {
        let c = &self.config;
        let mac = || {
            // HMAC takes a key of any length, so this cannot fail.
            <Hmac<Sha256> as KeyInit>::new_from_slice(&c.key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
        };
        let mut m = mac();
        m.update(data);
        let mut out = m.finalize().into_bytes();
        for _ in 1..c.rounds.max(1) {
            let mut m = mac();
            m.update(&out);
            out = m.finalize().into_bytes();
        }
        hex(&out)
    }
}

/// The built-in transform of the reference pipeline, on the blocking pool:
/// [`EnrichAndHash::apply`] on each record, with at most `max_in_flight`
/// records hashed at once.
///
/// # Backpressure
///
/// Each call waits for one of `max_in_flight` permits before it is handed to
/// `spawn_blocking`, so the blocking pool's queue never grows without bound;
/// give the stage a [`concurrency`](sluicegate_core::StageSpec::concurrency)
/// of `max_in_flight` (about the number of cores) so that many run at once.
///
/// # Example
///
/// ```
/// use sluicegate_core::StageSpec;
/// use sluicegate_stages::transform::{enrich_and_hash, EnrichConfig};
///
/// let cores = 2;
/// let spec = StageSpec::new(
///     "enrich",
///     enrich_and_hash(EnrichConfig::new(*b"secret", ["email"]).rounds(100), cores),
/// )
/// .concurrency(cores)
/// .capacity(2 * cores);
/// # drop(spec);
/// ```
pub fn enrich_and_hash(
    config: EnrichConfig,
    max_in_flight: usize,
) -> impl Stage<In = Record, Out = Record, Error = std::convert::Infallible> {
    let t = EnrichAndHash::new(config);
    sluicegate_core::blocking(max_in_flight, move |record: Record| {
        Ok::<_, std::convert::Infallible>(t.apply(record))
    })
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Canonical JSON text of a value: object keys sorted at every level.
fn canonical(v: &Value) -> String {
    let mut s = String::new();
    write_canonical(v, &mut s);
    s
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => write_canonical_object(map, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn write_canonical_object(map: &Record, out: &mut String) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(k.clone()).to_string());
        out.push(':');
        write_canonical(v, out);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> Record {
        match serde_json::from_str(json) {
            Ok(Value::Object(r)) => r,
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn pseudonymises_and_fingerprints_independently_of_key_order() {
        let t = EnrichAndHash::new(EnrichConfig::new(*b"k", ["email"]));
        let a = t.apply(record(
            r#"{"email":"a@example.com","n":1,"x":{"b":2,"a":1}}"#,
        ));
        let b = t.apply(record(
            r#"{"x":{"a":1,"b":2},"n":1,"email":"a@example.com"}"#,
        ));
        assert_eq!(a, b);
        let email = a.get("email").and_then(Value::as_str).unwrap_or_default();
        assert_eq!(email.len(), 64);
        assert_ne!(email, "a@example.com");
        let fp = a
            .get("fingerprint")
            .and_then(Value::as_str)
            .unwrap_or_default();
        assert_eq!(fp.len(), 64);
        // Applying twice gives the same fingerprint field (it is left out of its own hash),
        // but the e-mail hash is hashed again.
        let again = t.apply(a.clone());
        assert_ne!(again.get("email"), a.get("email"));
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let t = EnrichAndHash::new(EnrichConfig::new(*b"Jefe", ["x"]));
        assert_eq!(
            t.keyed_hash(b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn rounds_change_the_hash() {
        let one = EnrichAndHash::new(EnrichConfig::new(*b"k", ["x"]));
        let two = EnrichAndHash::new(EnrichConfig::new(*b"k", ["x"]).rounds(2));
        assert_ne!(one.keyed_hash(b"v"), two.keyed_hash(b"v"));
    }
}
