//! The bincode codec.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, CodecError, PayloadError};

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

#[cfg(test)]
mod tests {
    use super::*;

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
