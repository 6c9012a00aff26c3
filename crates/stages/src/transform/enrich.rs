//! The reference pipeline's CPU-heavy transform: pseudonymise and fingerprint.

use std::fmt;
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
#[derive(Clone)]
pub struct EnrichAndHash {
    config: Arc<EnrichConfig>,
    /// The HMAC with the key already absorbed: each round clones it
    /// instead of hashing the key again (two SHA-256 blocks a round saved).
    keyed: Hmac<Sha256>,
}

impl fmt::Debug for EnrichAndHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrichAndHash")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EnrichAndHash {
    /// A transform with `config`.
    pub fn new(config: EnrichConfig) -> Self {
        // HMAC takes a key of any length, so this cannot fail.
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(&config.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        EnrichAndHash {
            config: Arc::new(config),
            keyed,
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
        let mut text = Vec::with_capacity(256);
        write_canonical_object(&record, &mut text);
        let digest = Sha256::digest(&text);
        record.insert(c.fingerprint_field.clone(), Value::String(hex(&digest)));
        record
    }

    /// HMAC-SHA-256 of `data` under the key, iterated `rounds` times, as hex.
    fn keyed_hash(&self, data: &[u8]) -> String {
        let mut m = self.keyed.clone();
        m.update(data);
        let mut out = m.finalize().into_bytes();
        for _ in 1..self.config.rounds.max(1) {
            let mut m = self.keyed.clone();
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
/// // `cores` at once (the stage says so itself), two per core waiting.
/// let spec = StageSpec::new(
///     "enrich",
///     enrich_and_hash(EnrichConfig::new(*b"secret", ["email"]).rounds(100), cores),
/// )
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
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Canonical JSON text of a value: object keys sorted at every level.
fn canonical(v: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(v, &mut out);
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => write_canonical_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // A scalar's JSON text, as `Value`'s `Display` writes it (writing
        // into a `Vec` cannot fail).
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn write_canonical_object(map: &Record, out: &mut Vec<u8>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    // A `Map` without serde_json's `preserve_order` iterates sorted already.
    if !entries.is_sorted_by(|a, b| a.0 <= b.0) {
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // The key as a JSON string, escaped as `Value::String` displays it.
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        write_canonical(v, out);
    }
    out.push(b'}');
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

    /// The pseudonym and the fingerprint are pinned: iterated HMAC-SHA-256
    /// (each round over the previous digest) and SHA-256 of the canonical
    /// text, as computed independently (Python's `hmac`, `hashlib` and
    /// `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`).
    #[test]
    fn pseudonym_and_fingerprint_are_stable() {
        let t = EnrichAndHash::new(EnrichConfig::new(*b"k", ["email"]).rounds(3));
        let out = t.apply(record(
            r#"{"x":{"b":2,"a":[1,"q\"\n"]},"name":"Zoë","n":1,"email":"a@example.com"}"#,
        ));
        assert_eq!(
            out.get("email").and_then(Value::as_str),
            Some("82d116e901b71a20c63250ec2899ad3042695989574f2dd09695755f42a7df72")
        );
        assert_eq!(
            out.get("fingerprint").and_then(Value::as_str),
            Some("42e7c1a26f303a2f3f147c91f700a6f55e40db00ea816f341fb33cab24e6381b")
        );
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
