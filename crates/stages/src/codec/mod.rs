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
//! [`decode`] and [`encode`] turn a codec into a [`Stage`](sluicegate_core::Stage).

mod binary;
mod error;
mod format;
mod json;
mod payload;
mod stage;

pub use binary::{Bincode, DEFAULT_BINCODE_LIMIT};
pub use error::CodecError;
pub use format::Codec;
pub use json::Json;
pub(crate) use payload::parse_json;
pub use payload::{MAX_JSON_DEPTH, PayloadError};
pub use stage::{Decode, Encode, decode, encode};
