//! Why a payload could not be decoded, and the JSON parse that says so.

use std::fmt;

use serde::de::DeserializeOwned;

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
