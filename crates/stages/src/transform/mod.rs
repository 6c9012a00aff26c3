//! Transforms: combinators over typed records, and a CPU-heavy built-in on
//! the blocking pool.
//!
//! - [`Transform`]: `map`, `filter` and `try_map` steps fused into one stage
//!   (one mailbox and one task for the whole chain instead of one per step).
//! - [`typed`] and [`untyped`]: from a JSON [`Record`](crate::Record) to your
//!   own `Deserialize` type and back, so the steps in between are typed.
//! - [`enrich_and_hash`]: the reference pipeline's transform: keyed
//!   pseudonymisation (HMAC-SHA-256) of personal fields and a SHA-256
//!   fingerprint of each record, on Tokio's blocking pool with bounded
//!   parallelism (core's [`blocking`](sluicegate_core::blocking)).

mod chain;
mod enrich;
mod typed;

pub use chain::{Transform, TransformError};
pub use enrich::{EnrichAndHash, EnrichConfig, enrich_and_hash};
pub use typed::{Typed, Untyped, typed, untyped};
