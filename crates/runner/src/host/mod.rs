//! The host: runs any graph composed in code with the binary's plumbing,
//! and needs nothing of the binary's command line or settings.
//!
//! - [`Runner`] ([`runner`]): signal handling with a bounded drain, the
//!   status server, the live view, and the [`Outcome`] whose
//!   [`exit_code`](Outcome::exit_code) the caller exits with ([`exit`]).
//! - [`http`]: the HTTP status server (`/metrics`, `/status`, `/health`
//!   and a live graph page).
//! - [`view`]: the live terminal view.
//! - [`frontier`]: the commit frontier of the graph's Kafka sources.
//! - [`phase`]: the lifecycle the status server reports; [`rate`]: rates
//!   and the busy / blocked / idle split over a period, for the server
//!   and the view.

pub mod exit;
pub(crate) mod exposition;
pub mod frontier;
pub mod http;
mod outcome;
pub mod phase;
pub mod rate;
pub mod runner;
mod signals;
pub mod view;

pub use outcome::{Outcome, Stopped};
pub use phase::Phase;
pub use runner::{LiveView, RunError, Runner, RunnerOptions};
