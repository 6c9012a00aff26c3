//! The generated input stream: order-like events, with a deterministic share
//! of malformed records of every kind the pipeline must survive.
//!
//! Record `i` is the same on every run, so a test can reconcile what went in
//! with what came out: [`is_malformed`] tells which numbers are bad.

use bytes::Bytes;

/// How a malformed record is broken; the generator rotates through these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// JSON cut off in the middle.
    Truncated,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// An empty payload.
    Empty,
    /// The JSON `null`.
    Null,
    /// `amount` as a string.
    WrongType,
    /// A negative `amount`.
    OutOfRange,
    /// No `id`.
    MissingField,
    /// Nested far deeper than any JSON parser here accepts.
    DeeplyNested,
    /// Larger than the pipeline's payload limit.
    Oversize,
}

impl Malformed {
    const ALL: [Malformed; 9] = [
        Malformed::Truncated,
        Malformed::InvalidUtf8,
        Malformed::Empty,
        Malformed::Null,
        Malformed::WrongType,
        Malformed::OutOfRange,
        Malformed::MissingField,
        Malformed::DeeplyNested,
        Malformed::Oversize,
    ];
}

/// The pipeline's payload limit; [`Malformed::Oversize`] records exceed it.
pub const MAX_PAYLOAD_BYTES: usize = 8 * 1024;

/// A well-mixed 64-bit hash of `i` (splitmix64), so bad records are spread
/// evenly and reproducibly.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether record `i` is malformed, and how, for a malformed `share`.
pub fn is_malformed(i: u64, share: f64) -> Option<Malformed> {
    let unit = (mix(i) >> 11) as f64 / (1u64 << 53) as f64;
    (unit < share).then(|| Malformed::ALL[(mix(i ^ 0xA5A5) % Malformed::ALL.len() as u64) as usize])
}

/// Record `i`'s id (the `id` field of a good record).
pub fn id(i: u64) -> String {
    format!("e-{i}")
}

/// Record `i`: its Kafka key and payload.
pub fn record(i: u64, share: f64) -> (Bytes, Bytes) {
    let key = Bytes::from(format!("u-{}", i % 1_000));
    let good = || {
        format!(
            r#"{{"id":"{}","user":"u-{}","email":"user{}@example.com","amount":{}.{:02},"currency":"{}","ts":{}}}"#,
            id(i),
            i % 1_000,
            i % 1_000,
            i % 900,
            i % 100,
            ["EUR", "USD", "GBP"][(i % 3) as usize],
            1_700_000_000_000u64 + i
        )
    };
    let payload: Vec<u8> = match is_malformed(i, share) {
        None => good().into_bytes(),
        Some(Malformed::Truncated) => {
            let g = good();
            g.as_bytes()[..g.len() / 2].to_vec()
        }
        Some(Malformed::InvalidUtf8) => {
            let mut v = format!(r#"{{"id":"{}","user":""#, id(i)).into_bytes();
            v.extend_from_slice(&[0xff, 0xfe, b'"', b'}']);
            v
        }
        Some(Malformed::Empty) => Vec::new(),
        Some(Malformed::Null) => b"null".to_vec(),
        Some(Malformed::WrongType) => format!(
            r#"{{"id":"{}","user":"u-1","amount":"12.50","currency":"EUR","ts":1}}"#,
            id(i)
        )
        .into_bytes(),
        Some(Malformed::OutOfRange) => format!(
            r#"{{"id":"{}","user":"u-1","amount":-5,"currency":"EUR","ts":1}}"#,
            id(i)
        )
        .into_bytes(),
        Some(Malformed::MissingField) => {
            br#"{"user":"u-1","amount":5,"currency":"EUR","ts":1}"#.to_vec()
        }
        Some(Malformed::DeeplyNested) => {
            let mut v = Vec::with_capacity(2_000);
            v.extend(std::iter::repeat_n(b'[', 1_000));
            v.extend(std::iter::repeat_n(b']', 1_000));
            v
        }
        Some(Malformed::Oversize) => {
            let pad = "x".repeat(MAX_PAYLOAD_BYTES);
            format!(
                r#"{{"id":"{}","user":"u-1","amount":1,"currency":"EUR","ts":1,"pad":"{pad}"}}"#,
                id(i)
            )
            .into_bytes()
        }
    };
    (key, Bytes::from(payload))
}

/// How many of records `start..start + n` are malformed.
pub fn count_malformed(start: u64, n: u64, share: f64) -> u64 {
    (start..start + n)
        .filter(|&i| is_malformed(i, share).is_some())
        .count() as u64
}

/// Bytes (keys and payloads) of records `start..start + n`.
pub fn total_bytes(start: u64, n: u64, share: f64) -> u64 {
    (start..start + n)
        .map(|i| {
            let (k, p) = record(i, share);
            (k.len() + p.len()) as u64
        })
        .sum()
}
