//! [`StatusBoard`]: what the status server reports, shared with the runner.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use sluicegate_core::Metrics;

use super::Phase;
use super::window::Samples;
use crate::host::frontier::Frontier;

/// Computes the `extra` member of `/status`.
type ExtraFn = Arc<dyn Fn() -> Value + Send + Sync>;

/// Computes extra Prometheus text for `/metrics`, given the graph's name.
type ExtraMetricsFn = Arc<dyn Fn(&str) -> String + Send + Sync>;

pub(super) struct Inner {
    pub(super) metrics: Arc<Metrics>,
    pub(super) phase: Mutex<Phase>,
    pub(super) extra: Mutex<Option<ExtraFn>>,
    pub(super) extra_metrics: Mutex<Option<ExtraMetricsFn>>,
    pub(super) frontier: Mutex<Option<Frontier>>,
    /// The recent snapshots rates are measured against.
    pub(super) samples: Mutex<Samples>,
}

/// What the server reports; cheap to clone (clones share everything), shared
/// with the runner, which updates the phase as the graph goes through its
/// lifecycle.
#[derive(Clone)]
pub struct StatusBoard {
    pub(super) inner: Arc<Inner>,
}

impl fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusBoard")
            .field("phase", &self.phase())
            .field("samples", &lock(&self.inner.samples).len())
            .finish_non_exhaustive()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StatusBoard {
    /// A board reporting `metrics`, in [`Phase::Starting`], with no extra.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        StatusBoard {
            inner: Arc::new(Inner {
                metrics,
                phase: Mutex::new(Phase::Starting),
                extra: Mutex::new(None),
                extra_metrics: Mutex::new(None),
                frontier: Mutex::new(None),
                samples: Mutex::new(Samples::default()),
            }),
        }
    }

    /// The metrics this board reports.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Sets the JSON merged into `/status` under `"extra"` (settings, or
    /// anything else a host wants to show). `f` runs at request
    /// time on the server's task, so it must be quick and must not block;
    /// never put secrets in it. Replaces an earlier one.
    pub fn set_extra(&self, f: impl Fn() -> Value + Send + Sync + 'static) {
        *lock(&self.inner.extra) = Some(Arc::new(f));
    }

    /// Sets a function whose Prometheus text (format 0.0.4: `# HELP`,
    /// `# TYPE` and samples, each line ending in a newline) is appended to
    /// `/metrics`; it is given the graph's name for a `graph` label. It runs
    /// at request time on the server's task, so it must be quick and must
    /// not block. Replaces an earlier one.
    pub fn set_extra_metrics(&self, f: impl Fn(&str) -> String + Send + Sync + 'static) {
        *lock(&self.inner.extra_metrics) = Some(Arc::new(f));
    }

    /// Shows the commit frontier of the graph's Kafka sources: under
    /// `"kafka"` in `/status` ([`Frontier::status`]), as
    /// `sluicegate_kafka_*` series in `/metrics` ([`crate::host::frontier::prometheus`]),
    /// and as a table on the page. Replaces an earlier one.
    pub fn set_frontier(&self, frontier: Frontier) {
        *lock(&self.inner.frontier) = Some(frontier);
    }

    /// Sets the lifecycle phase reported by `/health`, `/status`, `/metrics`
    /// and the page.
    pub fn set_phase(&self, phase: Phase) {
        *lock(&self.inner.phase) = phase;
    }

    /// The current lifecycle phase.
    pub fn phase(&self) -> Phase {
        lock(&self.inner.phase).clone()
    }

    /// Records a sample for rates if the newest is at least [`SAMPLE_EVERY`](super::SAMPLE_EVERY)
    /// old (the server's sampler calls this; requests do too).
    pub fn sample(&self) {
        let _ = self.window();
        let frontier = lock(&self.inner.frontier).clone();
        if let Some(f) = frontier {
            f.sample();
        }
    }
}
