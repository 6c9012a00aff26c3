//! # sluicegate-runner
//!
//! The `sluicegate` binary, and the library behind it.
//!
//! - [`Runner`] hosts any graph composed in code with the binary's plumbing:
//!   signal handling with a bounded drain, the HTTP status server
//!   ([`http`]: `/metrics`, `/status`, `/health` and a live graph page), the
//!   live terminal view ([`view`]) and the exit code; given the graph's
//!   Kafka sources, it shows their commit frontier ([`frontier`]) in all of
//!   them.
//! - [`pipeline`] builds the reference pipeline (Kafka → decode → validate →
//!   transform → store and produce, failures to a dead-letter topic);
//!   [`app::run`] runs it the way `sluicegate run` does; [`transform`] is
//!   its transform (a batch per hop to the blocking pool).
//! - [`embedded`] holds the default with no `--brokers`: librdkafka's mock
//!   cluster in-process, filled with the [`generate`]d stream.
//! - [`cli`] and [`settings`]: flags (each with an environment variable) and
//!   the optional TOML file.
//! - [`summary`]: what a run did, reconciled; [`validation`]: the schema's
//!   rejections per keyword and path in `/status` and `/metrics`.

#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
// Errors here come once, at start-up, from the Kafka client (whose error
// type is large); boxing them would buy nothing on a hot path.
#![allow(clippy::result_large_err)]

pub mod app;
pub mod cli;
pub mod defaults;
pub mod embedded;
pub mod exit;
pub mod frontier;
pub mod generate;
pub mod http;
pub mod phase;
pub mod pipeline;
pub mod rate;
pub mod retries;
pub mod runner;
pub mod settings;
pub mod summary;
pub mod transform;
pub mod validation;
pub mod view;

pub use runner::{LiveView, Outcome, RunError, Runner, RunnerOptions, Stopped};
pub use settings::Settings;
