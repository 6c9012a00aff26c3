//! Exit codes, as values: a hosted run's [`Outcome::exit_code`] and the
//! `sluicegate` binary's errors map to these; only the binary's `main`
//! ends the process with one.
//!
//! [`Outcome::exit_code`]: crate::host::Outcome::exit_code

/// Everything finished, drained and committed.
pub const OK: i32 = 0;
/// The pipeline stopped on an error, did not drain in time, or left
/// records failed (they are read again at the next start).
pub const FAILED: i32 = 1;
/// Bad command line (unknown flag, bad value).
pub const USAGE: i32 = 2;
/// Bad or unreadable configuration file, or an invalid setting.
pub const CONFIG: i32 = 3;
/// A service could not be reached or is missing something: broker,
/// topic, database.
pub const UNAVAILABLE: i32 = 4;
/// A second signal forced the exit before the drain finished.
pub const FORCED: i32 = 130;
