//! Validation against a JSON Schema: the validator, its rejections, its
//! counters and its errors (documented in the parent module).
//!
//! Nothing is fetched over the network or from other files: a schema is
//! one self-contained document (`$defs` hold what it shares), so an
//! external `$ref` is a [`SchemaError::Reference`].

mod error;
mod rejection;
mod stats;
mod validator;

pub use error::SchemaError;
pub use rejection::{SchemaRejection, Violation};
pub use stats::{OTHER_PATHS, SchemaStats};
pub use validator::{DEFAULT_MAX_COUNTED_PATHS, SchemaValidator, SchemaValidatorBuilder};
