//! The summary printed when a run ends, and its reconciliation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::Ordering;

use serde::Serialize;
use sluicegate_core::Report;

use crate::pipeline::Pipeline;

/// What a run did, reconciled.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// Records read from the input topic by this process.
    pub records_in: u64,
    /// Rows written by this run.
    pub stored: u64,
    /// Records already in the store (read again after a restart or rebalance).
    pub duplicates: u64,
    /// Records delivered to the output topic.
    pub produced: Option<u64>,
    /// Records written to the dead-letter topic.
    pub dead_lettered: u64,
    /// Records dropped by a full mailbox with a drop policy, per stage.
    pub dropped: BTreeMap<String, u64>,
    /// Records that failed with nowhere to go, or were abandoned at the
    /// drain deadline (they are read again at the next start).
    pub failed: u64,
    /// Records that failed in each stage (sent to the dead-letter topic).
    pub failed_by_stage: BTreeMap<String, u64>,
    /// Records the schema rejected, by the keyword of each one's first
    /// violation (`required`, `type`, `minimum`, ...).
    pub rejected_by_keyword: BTreeMap<String, u64>,
    /// The same records by instance path (a JSON Pointer, array indices as
    /// `*`, `""` for the whole record), then keyword.
    pub rejected_by_path: BTreeMap<String, BTreeMap<String, u64>>,
    /// Offset commits.
    pub commits: u64,
    /// Seconds from start to stop.
    pub elapsed_s: f64,
    /// Seconds from start to the first record (joining the consumer group
    /// and the first fetch); `None` when no record came.
    pub first_record_s: Option<f64>,
    /// Seconds from the first record to the last output of any stage (a
    /// row stored, a record produced or dead-lettered).
    pub active_s: f64,
    /// Records in per second over `active_s`: from the first record on,
    /// neither the group join before it nor the wait after the last output
    /// (for the commits of a caught-up run to be seen, say) counted.
    pub throughput: f64,
    /// Peak resident memory of the process, bytes (Linux; 0 elsewhere).
    pub peak_rss_bytes: u64,
    /// The stage that limited throughput most, if any.
    pub bottleneck: Option<String>,
    /// Whether the pipeline drained with no fatal error.
    pub clean: bool,
    /// Fatal errors.
    pub errors: Vec<String>,
    /// With non-blocking retries: records sent to each retry topic.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub retried: BTreeMap<String, u64>,
    /// With non-blocking retries: records dead-lettered after the last
    /// retry level (counted in `dead_lettered` too).
    pub retries_exhausted: u64,
}

impl Summary {
    /// Summarises a finished run of the reference pipeline.
    pub fn of(pipeline: &Pipeline, report: &Report) -> Summary {
        let snap = &report.snapshot;
        let records_in: u64 = pipeline
            .sources
            .iter()
            .map(|h| h.stats().records.load(Ordering::Relaxed))
            .sum();
        let commits = pipeline
            .sources
            .iter()
            .map(|h| h.stats().commits.load(Ordering::Relaxed))
            .sum();
        let dead = snap.stage("dead_letters");
        // With retries, the dead-letter route also writes to the retry
        // topics: only what reached the dead-letter topic is dead-lettered.
        let dead_lettered = match &pipeline.retry {
            Some(r) => r.stats.dead_lettered.load(Ordering::Relaxed),
            None => dead.map_or(0, |d| d.items_out),
        };
        let (retried, retries_exhausted) = match &pipeline.retry {
            Some(r) => (
                r.topics
                    .topics()
                    .into_iter()
                    .zip(&r.stats.scheduled)
                    .map(|(t, n)| (t, n.load(Ordering::Relaxed)))
                    .collect(),
                r.stats.exhausted.load(Ordering::Relaxed),
            ),
            None => (BTreeMap::new(), 0),
        };
        let dropped = snap
            .mailboxes
            .iter()
            .filter(|m| m.dropped > 0)
            .map(|m| (m.stage.clone(), m.dropped))
            .collect();
        let failed =
            snap.stages.iter().map(|s| s.abandoned).sum::<u64>() + dead.map_or(0, |d| d.failed);
        let elapsed_s = report.elapsed.as_secs_f64();
        let validation = pipeline.validator.stats();
        let active = snap.active_ns();
        let first_record_s = active.map(|(first, _)| first as f64 / 1e9);
        let active_s = active.map_or(0.0, |(first, last)| (last - first) as f64 / 1e9);
        Summary {
            records_in,
            stored: pipeline.store_stats.inserted(),
            duplicates: pipeline.store_stats.duplicates(),
            produced: pipeline
                .produced
                .as_ref()
                .map(crate::pipeline::Produced::records),
            dead_lettered,
            dropped,
            failed,
            failed_by_stage: snap
                .stages
                .iter()
                .filter(|s| s.failed > 0 && s.name != "dead_letters")
                .map(|s| (s.name.clone(), s.failed))
                .collect(),
            rejected_by_keyword: validation.by_keyword,
            rejected_by_path: validation.by_path,
            commits,
            elapsed_s,
            first_record_s,
            active_s,
            throughput: if active_s > 0.0 {
                records_in as f64 / active_s
            } else {
                0.0
            },
            peak_rss_bytes: peak_rss_bytes(),
            bottleneck: snap.bottleneck(None).map(|b| b.stage),
            clean: report.is_clean(),
            errors: report.errors.iter().map(ToString::to_string).collect(),
            retried,
            retries_exhausted,
        }
    }

    /// Records neither stored (nor found stored), dead-lettered, dropped nor
    /// failed. Zero when everything is accounted for.
    pub fn unaccounted(&self) -> i64 {
        let dropped: u64 = self.dropped.values().sum();
        self.records_in as i64
            - (self.stored + self.duplicates + self.dead_lettered + dropped + self.failed) as i64
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dropped: u64 = self.dropped.values().sum();
        writeln!(f, "summary")?;
        writeln!(f, "  records in      {:>12}", self.records_in)?;
        writeln!(
            f,
            "  stored          {:>12}   (+{} already stored)",
            self.stored, self.duplicates
        )?;
        if let Some(p) = self.produced {
            writeln!(f, "  produced        {p:>12}")?;
        }
        writeln!(f, "  dead-lettered   {:>12}", self.dead_lettered)?;
        for (stage, n) in &self.failed_by_stage {
            writeln!(f, "    from {stage:<17}{n:>8}")?;
            if stage == "validate" {
                for (path, keywords) in &self.rejected_by_path {
                    for (keyword, n) in keywords {
                        let what = format!("{keyword} at {path:?}");
                        writeln!(f, "      {what:<20} {n:>7}")?;
                    }
                }
            }
        }
        for (topic, n) in &self.retried {
            writeln!(f, "  retried via {topic} {n:>8}")?;
        }
        if !self.retried.is_empty() {
            writeln!(
                f,
                "  retries exhausted {:>10}   (dead-lettered with their history)",
                self.retries_exhausted
            )?;
        }
        writeln!(f, "  dropped         {dropped:>12}")?;
        for (stage, n) in &self.dropped {
            writeln!(f, "    by {stage:<19}{n:>8}")?;
        }
        writeln!(f, "  failed          {:>12}", self.failed)?;
        writeln!(f, "  unaccounted     {:>12}", self.unaccounted())?;
        writeln!(
            f,
            "  throughput      {:>12.0} records/s over {:.2} s, from the first record to the last output",
            self.throughput, self.active_s
        )?;
        match self.first_record_s {
            Some(first) => writeln!(
                f,
                "  first record    {:>12.2} s after start (group join, first fetch); {:.1} s in all",
                first, self.elapsed_s
            )?,
            None => writeln!(
                f,
                "  first record    {:>12}   ({:.1} s in all)",
                "none", self.elapsed_s
            )?,
        }
        writeln!(f, "  offset commits  {:>12}", self.commits)?;
        writeln!(
            f,
            "  peak memory     {:>12.1} MiB",
            self.peak_rss_bytes as f64 / (1024.0 * 1024.0)
        )?;
        writeln!(
            f,
            "  bottleneck      {:>12}",
            self.bottleneck.as_deref().unwrap_or("none")
        )?;
        for e in &self.errors {
            writeln!(f, "  error: {e}")?;
        }
        Ok(())
    }
}

/// The process's peak resident set size (`VmHWM`), in bytes.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
