//! The [`Codec`] trait: a format that turns values into bytes and back.

use std::sync::Arc;

use super::CodecError;

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
