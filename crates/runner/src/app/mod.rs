//! The `sluicegate` binary's application: the reference pipeline's
//! command line, settings and defaults, and its `run` and `produce`
//! commands, built on the [host](crate::host).
//!
//! - [`cli`]: flags (each with an environment variable), parsed with
//!   [`Cli::parse_args`](cli::Cli::parse_args); [`settings`]: what a run
//!   can be told, from flags and the optional TOML file; [`defaults`]: the
//!   one table of their defaults.
//! - [`run()`]: `sluicegate run`, in named steps; [`produce()`]:
//!   `sluicegate produce`, from plain [`ProduceOptions`]; [`AppError`]:
//!   why a command could not run, and its exit code.
//! - [`embedded`]: the default with no `--brokers` (librdkafka's mock
//!   cluster in-process, filled with the [`generate`]d stream), and
//!   watching a group catch up.
//! - [`summary`]: what a run did, reconciled; [`validation`] and
//!   [`retries`]: the schema's rejections and the retry levels in
//!   `/status` and `/metrics`.
//!
//! The pipeline itself ([`pipeline`](crate::pipeline),
//! [`transform`](crate::transform)) sits beside this module.

mod catch_up;
pub mod cli;
pub mod defaults;
pub mod embedded;
mod error;
pub mod generate;
mod produce;
pub mod retries;
mod run;
pub mod settings;
pub mod summary;
pub mod validation;

pub use error::AppError;
pub use produce::{ProduceOptions, produce};
pub use run::{RunOptions, run};
