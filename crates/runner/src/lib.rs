//! # sluicegate-runner
//!
//! The `sluicegate` binary, and the library behind it, in two parts:
//!
//! - [`host`]: hosts any graph composed in code. [`Runner`] gives it the
//!   binary's plumbing: signal handling with a bounded drain, the HTTP
//!   status server ([`http`]: `/metrics`, `/status`, `/health` and a live
//!   graph page), the live terminal view ([`view`]) and an exit code as a
//!   value ([`exit`]); given the graph's Kafka sources, it shows their
//!   commit frontier ([`frontier`]) in all of them. It does not use the
//!   command line or the settings below.
//! - [`app`]: the binary's application. [`pipeline`] builds the reference
//!   pipeline (Kafka → decode → validate → transform → store and produce,
//!   failures to a dead-letter topic); [`app::run`] runs it the way
//!   `sluicegate run` does; [`transform`] is its transform (a batch per
//!   hop to the blocking pool); [`cli`], [`settings`] and [`defaults`]
//!   are what it can be told.
//!
//! The `app` feature (on by default) brings the application; without it
//! the crate is the host alone, with no command-line parser.
//!
//! The modules of both are also at the crate's root ([`http`],
//! [`settings`], ...), where they were before the split.

#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
// Errors here come once, at start-up, from the Kafka client (whose error
// type is large); boxing them would buy nothing on a hot path.
#![allow(clippy::result_large_err)]

#[cfg(feature = "app")]
pub mod app;
pub mod host;
#[cfg(feature = "app")]
pub mod pipeline;
#[cfg(feature = "app")]
pub mod transform;

#[cfg(feature = "app")]
pub use app::settings::Settings;
#[cfg(feature = "app")]
pub use app::{cli, defaults, embedded, generate, retries, settings, summary, validation};
pub use host::{
    LiveView, Outcome, RunError, Runner, RunnerOptions, Stopped, exit, frontier, http, phase, rate,
    runner, view,
};
