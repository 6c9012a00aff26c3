//! The error of a codec.

use super::PayloadError;

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
