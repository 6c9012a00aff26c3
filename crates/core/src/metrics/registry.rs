//! The registry of a graph's metrics, and snapshots of it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::mailbox::MailboxStats;

use super::snapshot::{MailboxSnapshot, Snapshot, StageSnapshot};
use super::stage::{StageMetrics, now};

/// The registry of a graph's metrics.
#[derive(Debug)]
pub struct Metrics {
    pub(super) graph: String,
    pub(super) started: Mutex<Instant>,
    pub(super) stages: Mutex<Vec<Arc<StageMetrics>>>,
    pub(super) mailboxes: Mutex<Vec<(Arc<MailboxStats>, Vec<String>)>>,
}

impl Metrics {
    pub(crate) fn new(graph: &str) -> Self {
        Metrics {
            graph: graph.to_string(),
            started: Mutex::new(now()),
            stages: Mutex::new(Vec::new()),
            mailboxes: Mutex::new(Vec::new()),
        }
    }

    /// Restarts the uptime clock (when the graph starts).
    pub(crate) fn mark_started(&self) {
        *self.started.lock().unwrap_or_else(|e| e.into_inner()) = now();
    }

    pub(crate) fn register_stage(&self, m: Arc<StageMetrics>) {
        self.stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(m);
    }

    pub(crate) fn register_mailbox(&self, stats: Arc<MailboxStats>, from: Vec<String>) {
        self.mailboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((stats, from));
    }

    /// A consistent-enough copy of every counter (each value is read
    /// atomically; the set is not one atomic cut).
    pub fn snapshot(&self) -> Snapshot {
        let started = *self.started.lock().unwrap_or_else(|e| e.into_inner());
        let stages = self
            .stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|m| {
                let [busy_ns, blocked_ns, idle_ns] = m.time_ns();
                StageSnapshot {
                    name: m.name.to_string(),
                    kind: m.kind,
                    concurrency: m.concurrency,
                    items_in: m.items_in.load(Ordering::Relaxed),
                    items_out: m.items_out.load(Ordering::Relaxed),
                    filtered: m.filtered.load(Ordering::Relaxed),
                    failed: m.failed.load(Ordering::Relaxed),
                    panics: m.panics.load(Ordering::Relaxed),
                    abandoned: m.abandoned.load(Ordering::Relaxed),
                    busy_ns,
                    blocked_ns,
                    idle_ns,
                    latency: m.latency.snapshot(),
                    first_in_ns: m.stamp_since(&m.first_in, started),
                    last_out_ns: m.stamp_since(&m.last_out, started),
                }
            })
            .collect();
        let mailboxes = self
            .mailboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(s, from)| MailboxSnapshot {
                stage: s.stage.to_string(),
                from: from.clone(),
                capacity: s.capacity,
                depth: s.depth.load(Ordering::Relaxed),
                peak_depth: s.peak_depth.load(Ordering::Relaxed),
                max_bytes: s.max_bytes,
                bytes: s.bytes.load(Ordering::Relaxed),
                overflow: s.overflow,
                accepted: s.accepted.load(Ordering::Relaxed),
                dropped: s.dropped.load(Ordering::Relaxed),
            })
            .collect();
        Snapshot {
            graph: self.graph.clone(),
            uptime_ns: now().saturating_duration_since(started).as_nanos() as u64,
            stages,
            mailboxes,
        }
    }
}
