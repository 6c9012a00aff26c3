//! Shared helpers for the examples: logging setup, memory readings from
//! `/proc/self/status`, offset ranges for
//! printing, and the end-of-run checks that nothing was lost.

use anyhow::{Result, bail};
use sluicegate_core::Report;
use sluicegate_core::testing::{AckCounter, AckLog};

/// Sends sluicegate's own warnings (a deadline hit, an abandoned item) to
/// stderr. `RUST_LOG=debug` shows more.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // A second call (or another subscriber) is harmless for an example.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Reads one `kB` field of `/proc/self/status` (Linux only), in KiB.
fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The peak resident set size so far (`VmHWM`), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    proc_status_kib("VmHWM")
}

/// The resident set size now (`VmRSS`), in KiB.
pub fn rss_kib() -> Option<u64> {
    proc_status_kib("VmRSS")
}

/// Formats an optional KiB reading as MiB.
pub fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "n/a".to_string(),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    )
}

/// Fails unless the graph drained cleanly and all `sent` records were
/// delivered (and none resolved twice or leaked), from a constant-memory
/// [`AckCounter`].
///
/// # Errors
///
/// Says what was lost.
pub fn check_all_delivered(acks: &AckCounter, report: &Report, sent: u64) -> Result<()> {
    check_clean(report)?;
    let (delivered, dropped) = (acks.delivered(), acks.dropped());
    let (dead, failed) = (acks.dead_lettered(), acks.failed());
    let leaked = sluicegate_core::ack::leaked_total();
    if delivered != sent || dropped + dead + failed + leaked > 0 {
        bail!(
            "{sent} sent: {delivered} delivered, {dropped} dropped, {dead} dead-lettered, {failed} failed, {leaked} leaked"
        );
    }
    Ok(())
}

fn check_clean(report: &Report) -> Result<()> {
    if !report.is_clean() {
        bail!(
            "graph `{}` did not stop cleanly: drained={}, abandoned={}, errors={:?}",
            report.graph,
            report.drained,
            report.abandoned,
            report.errors
        );
    }
    Ok(())
}

/// Fails unless the graph drained cleanly and every one of the `sent`
/// records resolved exactly once, as delivered or (when `drops_allowed`)
/// deliberately dropped: no failure, no dead letter, no duplicate, no gap.
///
/// # Errors
///
/// Says what was lost.
pub fn check_nothing_lost(
    report: &Report,
    acks: &AckLog,
    sent: usize,
    drops_allowed: bool,
) -> Result<()> {
    check_clean(report)?;
    let outcomes = acks.outcomes();
    let twice: Vec<i64> = outcomes
        .iter()
        .filter(|(_, v)| v.len() != 1)
        .map(|(k, _)| *k)
        .collect();
    if !twice.is_empty() {
        bail!("offsets resolved more than once: {twice:?}");
    }
    let (delivered, dropped) = (acks.delivered(), acks.dropped());
    let (failed, dead) = (acks.failed(), acks.dead_lettered());
    if failed > 0 || dead > 0 {
        bail!("{failed} records failed and {dead} were dead-lettered");
    }
    if dropped > 0 && !drops_allowed {
        bail!("{dropped} records were dropped");
    }
    if delivered + dropped != sent || outcomes.len() != sent {
        bail!(
            "{sent} sent but {delivered} delivered + {dropped} dropped ({} offsets resolved)",
            outcomes.len()
        );
    }
    Ok(())
}

/// Sorted offsets as compact ranges: `0, 2-100, 4100-4999`.
pub fn ranges(offsets: &[i64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = offsets.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while let Some(next) = iter.next_if_eq(&(end + 1)) {
            end = next;
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(", ")
}
