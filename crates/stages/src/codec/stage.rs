//! The [`decode`] and [`encode`] stages.

use std::marker::PhantomData;

use bytes::Bytes;
use sluicegate_core::{Origin, Outputs, SyncStage};

use super::{Codec, CodecError};

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
