//! What the retry topics hold and did, for `/status` and `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::host::exposition::family;
use crate::pipeline::Retries;

/// `/status`'s `retries`: per level, its topic, delay and the records sent
/// to it; the records that ran out of levels; what reached the dead-letter
/// topic.
pub fn status(r: &Retries) -> serde_json::Value {
    let levels: Vec<serde_json::Value> = r
        .topics
        .levels()
        .iter()
        .zip(&r.stats.scheduled)
        .map(|((topic, delay), n)| {
            serde_json::json!({
                "topic": topic,
                "delay_ms": delay.as_millis() as u64,
                "scheduled": n.load(Ordering::Relaxed),
            })
        })
        .collect();
    serde_json::json!({
        "levels": levels,
        "exhausted": r.stats.exhausted.load(Ordering::Relaxed),
        "dead_lettered": r.stats.dead_lettered.load(Ordering::Relaxed),
        "held_until_due": r.source.stats().delayed.load(Ordering::Relaxed),
    })
}

/// The same as Prometheus counters of `graph`.
pub fn prometheus(r: &Retries, graph: &str) -> String {
    let g = graph.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::new();
    // Writing to a String cannot fail.
    family(
        &mut out,
        "sluicegate_retry_scheduled_total",
        "counter",
        "Records sent to a retry topic (one per delay level) after a transient failure.",
    );
    for ((topic, _), n) in r.topics.levels().iter().zip(&r.stats.scheduled) {
        let _ = writeln!(
            out,
            "sluicegate_retry_scheduled_total{{graph=\"{g}\",topic=\"{topic}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    family(
        &mut out,
        "sluicegate_retry_exhausted_total",
        "counter",
        "Records dead-lettered after the last retry level failed too.",
    );
    let _ = writeln!(
        out,
        "sluicegate_retry_exhausted_total{{graph=\"{g}\"}} {}",
        r.stats.exhausted.load(Ordering::Relaxed)
    );
    family(
        &mut out,
        "sluicegate_retry_held_total",
        "counter",
        "Retried records the retry consumer held until their due time, their partition paused.",
    );
    let _ = writeln!(
        out,
        "sluicegate_retry_held_total{{graph=\"{g}\"}} {}",
        r.source.stats().delayed.load(Ordering::Relaxed)
    );
    out
}
