//! The runner's lifecycle [`Phase`]: starting, running, draining, stopped
//! or failed, as the status server (`/health`, `/status`, `/metrics`, the
//! page) reports it.

use std::fmt;

/// The runner's lifecycle, as `/health` and the page report it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Phase {
    /// Building the graph, connecting to services, running start hooks.
    #[default]
    Starting,
    /// The graph is running.
    Running,
    /// Shutdown was requested: sources stopped taking input, the graph drains.
    Draining,
    /// The graph stopped; the process is about to exit.
    Stopped,
    /// The graph stopped on a fatal error (the message says which).
    Failed(String),
}

impl Phase {
    /// Every phase's name, in lifecycle order (the `phase` label values of
    /// the `sluicegate_phase` gauge).
    pub const NAMES: [&'static str; 5] = ["starting", "running", "draining", "stopped", "failed"];

    /// The phase's name in lower case: `starting`, `running`, `draining`,
    /// `stopped` or `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Draining => "draining",
            Phase::Stopped => "stopped",
            Phase::Failed(_) => "failed",
        }
    }

    /// Whether `/health` answers `200`: starting, running or draining.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Phase::Starting | Phase::Running | Phase::Draining)
    }

    /// The error of a failed phase.
    pub fn error(&self) -> Option<&str> {
        match self {
            Phase::Failed(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Phase::Failed(e) => write!(f, "failed: {e}"),
            other => f.write_str(other.name()),
        }
    }
}
