//! Codecs: bytes to typed values and back, behind one trait.
//!
//! [`Codec`] is object safe, so a pipeline can hold an `Arc<dyn Codec<T>>`
//! chosen from configuration. Two implementations:
//!
//! - [`Json`] (serde_json): text, self-describing, decodes into any
//!   `DeserializeOwned` type including [`serde_json::Value`].
//! - [`Bincode`] (bincode 2.0.1 through its serde support): compact binary for
//!   concrete types. bincode is pinned at 2.0.1 (its 3.0.0 release is a
//!   deliberate compile error and the crate is unmaintained); nothing outside
//!   this module names it, so it can be swapped for another binary format.
//!
//! A decode failure is a [`CodecError`] whose text says exactly what was
//! wrong and where (`json decode: invalid UTF-8 at byte 3`, `json decode:
//! invalid JSON at line 1 column 7: EOF while parsing an object`); as a
//! stage's error it fails that one item, which goes to the dead-letter route
//! with that text. Decoders never panic on any input (property-tested).
//!
//! [`decode`] and [`encode`] turn a codec into a [`Stage`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sluicegate_core::{Origin, Outputs, SyncStage};

/// The deepest nesting of arrays and objects JSON decoding accepts
/// (serde_json's built-in recursion limit of 128 allows 127 levels); deeper
/// input is rejected with [`PayloadError::TooDeep`] instead of overflowing
/// the stack.
pub const MAX_JSON_DEPTH: usize = 127;

/// Why a payload could not be decoded. The `Display` text is the reason a
/// dead letter carries; [`rule`](PayloadError::rule) is a short stable label
/// for counting.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadError {
    /// Zero bytes, or only whitespace.
    Empty,
    /// Larger than the configured maximum.
    TooLarge {
        /// The payload's size in bytes.
        size: usize,
        /// The maximum allowed.
        max: usize,
    },
    /// Not UTF-8 (JSON must be).
    InvalidUtf8 {
        /// The offset of the first byte that is not valid UTF-8.
        at: usize,
    },
    /// Not JSON: a syntax error or a truncated document.
    InvalidJson {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser expected or found.
        message: String,
    },
    /// Nested deeper than [`MAX_JSON_DEPTH`].
    TooDeep {
        /// 1-based line where the limit was hit.
        line: usize,
        /// 1-based column where the limit was hit.
        column: usize,
    },
    /// Well-formed, but not the shape the target type needs (a missing
    /// field, a string where a number belongs).
    Mismatch {
        /// 1-based line of the error (0 when the format has no lines).
        line: usize,
        /// 1-based column of the error (0 when the format has no lines).
        column: usize,
        /// What did not fit.
        message: String,
    },
    /// A binary format's decoder rejected the bytes.
    InvalidBinary {
        /// The decoder's message.
        message: String,
    },
    /// The value ended before the payload did.
    TrailingBytes {
        /// Where the value ended.
        at: usize,
        /// The payload's length.
        len: usize,
    },
}

impl PayloadError {
    /// A short, stable label for the kind of failure: `empty`, `max_size`,
    /// `utf8`, `json`, `depth`, `shape`, `binary` or `trailing`.
    pub fn rule(&self) -> &'static str {
        match self {
            PayloadError::Empty => "empty",
            PayloadError::TooLarge { .. } => "max_size",
            PayloadError::InvalidUtf8 { .. } => "utf8",
            PayloadError::InvalidJson { .. } => "json",
            PayloadError::TooDeep { .. } => "depth",
            PayloadError::Mismatch { .. } => "shape",
            PayloadError::InvalidBinary { .. } => "binary",
            PayloadError::TrailingBytes { .. } => "trailing",
        }
    }
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadError::Empty => f.write_str("empty payload"),
            PayloadError::TooLarge { size, max } => {
                write!(f, "payload of {size} bytes > max {max}")
            }
            PayloadError::InvalidUtf8 { at } => write!(f, "invalid UTF-8 at byte {at}"),
            PayloadError::InvalidJson {
                line,
                column,
                message,
            } => write!(f, "invalid JSON at line {line} column {column}: {message}"),
            PayloadError::TooDeep { line, column } => write!(
                f,
                "nesting deeper than {MAX_JSON_DEPTH} levels at line {line} column {column}"
            ),
            PayloadError::Mismatch {
                line,
                column,
                message,
            } => {
                if *line == 0 {
                    write!(f, "does not fit the type: {message}")
                } else {
                    write!(
                        f,
                        "does not fit the type at line {line} column {column}: {message}"
                    )
                }
            }
            PayloadError::InvalidBinary { message } => write!(f, "invalid binary: {message}"),
            PayloadError::TrailingBytes { at, len } => {
                write!(f, "trailing bytes: the value ends at byte {at} of {len}")
            }
        }
    }
}

impl std::error::Error for PayloadError {}

/// Parses JSON text into `T`, classifying every failure.
///
/// Checks, in order: empty (or whitespace only), UTF-8, then the parse
/// (syntax, truncation, nesting depth, shape).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PayloadError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| PayloadError::InvalidUtf8 {
        at: e.valid_up_to(),
    })?;
    serde_json::from_str(text).map_err(|e| classify_json(&e))
}

fn classify_json(e: &serde_json::Error) -> PayloadError {
    let (line, column) = (e.line(), e.column());
    let full = e.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
    match e.classify() {
        serde_json::error::Category::Data => PayloadError::Mismatch {
            line,
            column,
            message,
        },
        _ if message == "recursion limit exceeded" => PayloadError::TooDeep { line, column },
        _ => PayloadError::InvalidJson {
            line,
            column,
            message,
        },
    }
}

/// A codec failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes could not be decoded: an item failure with a reason, never a panic.
    #[error("{codec} decode: {reason}")]
    Decode {
        /// The codec's name (`json`, `bincode`).
        codec: &'static str,
        /// What was wrong.
        reason: PayloadError,
    },
    /// The value could not be encoded (a map with non-string keys in JSON,
    /// a type bincode cannot represent).
    #[error("{codec} encode: {message}")]
    Encode {
        /// The codec's name.
        codec: &'static str,
        /// The encoder's message.
        message: String,
    },
}

impl CodecError {
    /// The decode reason, when this is a decode failure.
    pub fn reason(&self) -> Option<&PayloadError> {
        match self {
            CodecError::Decode { reason, .. } => Some(reason),
            CodecError::Encode { .. } => None,
        }
    }
}

/// Turns values of `T` into bytes and back.
///
/// Object safe: `Arc<dyn Codec<T>>` is itself a codec, so the format can be
/// chosen at run time.
pub trait Codec<T>: Send + Sync + 'static {
    /// A short name for messages and metrics (`json`, `bincode`).
    fn name(&self) -> &'static str;

    /// Encodes `value`.
    ///
    /// # Errors
    ///
    /// [`CodecError::Encode`] when the format cannot represent the value.
    fn encode(&self, value: &T) -> Result<Vec<u8>, CodecError>;

    /// Decodes one value from all of `bytes`.
    ///
    /// # Errors
    ///
    /// [`CodecError::Decode`] with the reason; never panics, whatever the bytes.
    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

impl<T, C> Codec<T> for Arc<C>
where
    C: Codec<T> + ?Sized,
{
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn encode(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        (**self).encode(value)
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        (**self).decode(bytes)
    }
}

/// JSON through serde_json.
///
/// Decoding checks for an empty payload and for UTF-8 first, so those get
/// their own reasons; nesting is limited to [`MAX_JSON_DEPTH`] levels.
/// Encoding writes compact JSON. Floats round trip exactly.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl<T> Codec<T> for Json
where
    T: Serialize + DeserializeOwned + 'static,
{
    fn name(&self) -> &'static str {
        "json"
    }

    fn encode(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(|e| CodecError::Encode {
            codec: "json",
            message: e.to_string(),
        })
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        parse_json(bytes).map_err(|reason| CodecError::Decode {
            codec: "json",
            reason,
        })
    }
}

/// The default decode limit of [`Bincode`]: 16 MiB.
pub const DEFAULT_BINCODE_LIMIT: usize = 16 << 20;

/// bincode 2 (standard configuration: little endian, variable-length
/// integers) through its serde support.
///
/// `LIMIT` bounds how many bytes one decode may claim, so a corrupt length
/// prefix cannot make the decoder allocate gigabytes; a payload must decode
/// to exactly one value with no bytes left over.
///
/// bincode is not self-describing: it cannot decode [`serde_json::Value`] or
/// other types that ask the format what comes next (`deserialize_any`), and
/// `#[serde(skip_serializing_if)]` breaks it. Use it for concrete types.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode<const LIMIT: usize = DEFAULT_BINCODE_LIMIT>;

impl<const LIMIT: usize> Bincode<LIMIT> {
    fn config() -> impl bincode::config::Config {
        bincode::config::standard().with_limit::<LIMIT>()
    }
}

impl<T, const LIMIT: usize> Codec<T> for Bincode<LIMIT>
where
    T: Serialize + DeserializeOwned + 'static,
{
    fn name(&self) -> &'static str {
        "bincode"
    }

    fn encode(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        bincode::serde::encode_to_vec(value, Self::config()).map_err(|e| CodecError::Encode {
            codec: "bincode",
            message: e.to_string(),
        })
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let fail = |reason| CodecError::Decode {
            codec: "bincode",
            reason,
        };
        if bytes.len() > LIMIT {
            return Err(fail(PayloadError::TooLarge {
                size: bytes.len(),
                max: LIMIT,
            }));
        }
        match bincode::serde::decode_from_slice::<T, _>(bytes, Self::config()) {
            Ok((value, read)) if read == bytes.len() => Ok(value),
            Ok((_, read)) => Err(fail(PayloadError::TrailingBytes {
                at: read,
                len: bytes.len(),
            })),
            Err(e) => Err(fail(PayloadError::InvalidBinary {
                message: e.to_string(),
            })),
        }
    }
}

/// A stage decoding bytes into `T`. See [`decode`].
pub struct Decode<T, C> {
    codec: C,
    _types: PhantomData<fn() -> T>,
}

/// A stage that decodes each payload with `codec`; a payload that does not
/// decode fails alone (to the dead-letter route) with the reason.
pub fn decode<T, C: Codec<T>>(codec: C) -> Decode<T, C> {
    Decode {
        codec,
        _types: PhantomData,
    }
}

impl<T, C> SyncStage for Decode<T, C>
where
    T: Send + 'static,
    C: Codec<T>,
{
    type In = Bytes;
    type Out = T;
    type Error = CodecError;

    fn process_sync(&self, input: Bytes, _origin: &Origin) -> Result<Outputs<T>, CodecError> {
        self.codec.decode(&input).map(Outputs::one)
    }
}

/// A stage encoding `T` into bytes. See [`encode`].
pub struct Encode<T, C> {
    codec: C,
    _types: PhantomData<fn(T)>,
}

/// A stage that encodes each value with `codec`.
pub fn encode<T, C: Codec<T>>(codec: C) -> Encode<T, C> {
    Encode {
        codec,
        _types: PhantomData,
    }
}

impl<T, C> SyncStage for Encode<T, C>
where
    T: Send + 'static,
    C: Codec<T>,
{
    type In = T;
    type Out = Bytes;
    type Error = CodecError;

    fn process_sync(&self, input: T, _origin: &Origin) -> Result<Outputs<Bytes>, CodecError> {
        self.codec
            .encode(&input)
            .map(|v| Outputs::one(Bytes::from(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_reasons_are_precise() {
        let d = |b: &[u8]| {
            Codec::<serde_json::Value>::decode(&Json, b)
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(d(b"").as_deref(), Some("json decode: empty payload"));
        assert_eq!(d(b" \n").as_deref(), Some("json decode: empty payload"));
        assert_eq!(
            d(b"{\"a\xff\": 1}").as_deref(),
            Some("json decode: invalid UTF-8 at byte 3")
        );
        assert_eq!(
            d(b"{\"a\": 1").as_deref(),
            Some("json decode: invalid JSON at line 1 column 7: EOF while parsing an object")
        );
        assert_eq!(d(b"{\"a\": 1}"), None);
    }

    #[test]
    fn typed_mismatch_is_not_a_syntax_error() {
        #[derive(serde::Deserialize, serde::Serialize, Debug)]
        struct P {
            #[allow(dead_code)]
            n: u32,
        }
        let err = Codec::<P>::decode(&Json, b"{\"n\": \"x\"}").err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some(
                "json decode: does not fit the type at line 1 column 9: invalid type: string \"x\", expected u32"
            )
        );
    }

    #[test]
    fn bincode_rejects_trailing_bytes() {
        let mut bytes = Codec::<u32>::encode(&Bincode::<1024>, &7).expect("encodes");
        bytes.push(0);
        let err = Codec::<u32>::decode(&Bincode::<1024>, &bytes).err();
        assert_eq!(
            err.and_then(|e| e.reason().cloned()),
            Some(PayloadError::TrailingBytes { at: 1, len: 2 })
        );
    }
}
