//! How a hosted run ended ([`Outcome`]), why it stopped ([`Stopped`]),
//! and the exit code that follows.

use sluicegate_core::Report;

use crate::host::exit;

/// Why the graph stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// Its sources ended (or a fatal error stopped it).
    Finished,
    /// The caller's stop condition completed.
    Condition,
    /// A signal, by name.
    Signal(&'static str),
    /// A further signal, by name, while the graph drained after a first
    /// one: the drain was abandoned (what was still in the graph is read
    /// again at the next start; it is never committed).
    Forced(&'static str),
}

/// How a hosted run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The graph's report.
    pub report: Report,
    /// Why it stopped.
    pub stopped: Stopped,
}

impl Outcome {
    /// The process exit code: [`exit::FORCED`] when a second signal ended
    /// the drain, [`exit::OK`] when the graph drained with no fatal error
    /// and nothing abandoned, else [`exit::FAILED`].
    pub fn exit_code(&self) -> i32 {
        if matches!(self.stopped, Stopped::Forced(_)) {
            exit::FORCED
        } else if self.report.is_clean() {
            exit::OK
        } else {
            exit::FAILED
        }
    }
}
