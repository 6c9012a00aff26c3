//! The JSON codec.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Codec, CodecError, parse_json};

/// JSON through serde_json.
///
/// Decoding checks for an empty payload and for UTF-8 first, so those get
/// their own reasons; nesting is limited to [`MAX_JSON_DEPTH`](super::MAX_JSON_DEPTH) levels.
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
}
