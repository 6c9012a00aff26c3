//! The commit frontier's rendering and history, from fixed partition
//! states: Prometheus text, the live view's table, the trend behind the
//! page's charts.

use std::time::{Duration, Instant};

use sluicegate_kafka_io::{PartitionLag, PartitionState, PauseReason};
use sluicegate_runner::frontier::{Counters, History, Trend, prometheus};
use sluicegate_runner::view::render_frontier;

/// Partition 0 held back at offset 3 for 12.5 s (window 7 of 100, paused
/// by it); partition 1 caught up.
fn held() -> Vec<PartitionLag> {
    vec![
        PartitionLag {
            state: PartitionState {
                topic: "orders".into(),
                partition: 0,
                committed: Some(3),
                committable: Some(3),
                in_flight: 1,
                next: Some(10),
                window: 7,
                oldest_unfinished: Some(3),
                oldest_unfinished_age: Some(Duration::from_millis(12_500)),
                window_paused: true,
                window_pauses: 2,
            },
            high_watermark: Some(10),
            lag: Some(7),
            paused: Some(PauseReason::Window),
            window_limit: 100,
        },
        PartitionLag {
            state: PartitionState {
                topic: "orders".into(),
                partition: 1,
                committed: Some(10),
                committable: Some(10),
                in_flight: 0,
                next: Some(10),
                window: 0,
                oldest_unfinished: None,
                oldest_unfinished_age: None,
                window_paused: false,
                window_pauses: 0,
            },
            high_watermark: None,
            lag: None,
            paused: None,
            window_limit: 100,
        },
    ]
}

fn counters() -> Counters {
    Counters {
        records: 20,
        commits: 4,
        commit_failures: 0,
        assignments: 1,
        revocations: 0,
        graph_full_pauses: 0,
        window_pauses: 2,
    }
}

#[test]
fn prometheus_has_every_partition_series_with_its_value() {
    let text = prometheus("g", &held(), &counters());
    let p0 = "graph=\"g\",topic=\"orders\",partition=\"0\"";
    let p1 = "graph=\"g\",topic=\"orders\",partition=\"1\"";
    for line in [
        format!("sluicegate_kafka_partition_fetched_offset{{{p0}}} 10"),
        format!("sluicegate_kafka_partition_finished_offset{{{p0}}} 3"),
        format!("sluicegate_kafka_partition_committed_offset{{{p0}}} 3"),
        format!("sluicegate_kafka_partition_high_watermark{{{p0}}} 10"),
        format!("sluicegate_kafka_partition_lag{{{p0}}} 7"),
        format!("sluicegate_kafka_partition_oldest_unfinished_offset{{{p0}}} 3"),
        format!("sluicegate_kafka_partition_oldest_unfinished_age_seconds{{{p0}}} 12.5"),
        format!("sluicegate_kafka_partition_in_flight{{{p0}}} 1"),
        format!("sluicegate_kafka_partition_window_records{{{p0}}} 7"),
        format!("sluicegate_kafka_partition_window_limit{{{p0}}} 100"),
        format!("sluicegate_kafka_partition_paused{{{p0},reason=\"graph_full\"}} 0"),
        format!("sluicegate_kafka_partition_paused{{{p0},reason=\"window\"}} 1"),
        format!("sluicegate_kafka_partition_window_pauses_total{{{p0}}} 2"),
        format!("sluicegate_kafka_partition_committed_offset{{{p1}}} 10"),
        format!("sluicegate_kafka_partition_oldest_unfinished_age_seconds{{{p1}}} 0"),
        format!("sluicegate_kafka_partition_paused{{{p1},reason=\"window\"}} 0"),
        "sluicegate_kafka_records_total{graph=\"g\"} 20".to_string(),
        "sluicegate_kafka_commits_total{graph=\"g\"} 4".to_string(),
        "sluicegate_kafka_commit_failures_total{graph=\"g\"} 0".to_string(),
        "sluicegate_kafka_assignments_total{graph=\"g\"} 1".to_string(),
        "sluicegate_kafka_revocations_total{graph=\"g\"} 0".to_string(),
        "sluicegate_kafka_pauses_total{graph=\"g\",reason=\"graph_full\"} 0".to_string(),
        "sluicegate_kafka_pauses_total{graph=\"g\",reason=\"window\"} 2".to_string(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in\n{text}"
        );
    }
    // Unknown values have no sample.
    for absent in [
        format!("sluicegate_kafka_partition_oldest_unfinished_offset{{{p1}}}"),
        format!("sluicegate_kafka_partition_lag{{{p1}}}"),
        format!("sluicegate_kafka_partition_high_watermark{{{p1}}}"),
    ] {
        assert!(!text.contains(&absent), "{absent} in\n{text}");
    }
    // Every sample belongs to a declared metric, declared once.
    let mut declared = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or_default();
            assert!(declared.insert(name.to_string()), "{name} declared twice");
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            assert!(declared.contains(name), "{name} not declared: {line}");
        }
    }
}

#[test]
fn the_live_view_shows_what_holds_each_partition_back() {
    let frame = render_frontier(&held(), &counters(), 100);
    let expected = "\
kafka  commits 4  assignments 1  revocations 0  pauses: graph full 0, window 2
partition  fetched  finished  committed  lag  oldest unfinished  window  paused
orders/0        10         3          3    7  3 (12.5s)          7/100   window
orders/1        10        10         10    -  -                  0/100   -
";
    assert_eq!(frame, expected);
    let narrow = render_frontier(&held(), &counters(), 30);
    assert!(narrow.lines().all(|l| l.chars().count() <= 30), "{narrow}");
    assert_eq!(narrow.lines().count(), 4);
}

#[test]
fn the_trend_keeps_the_last_points_and_the_commit_rate_between_them() {
    let start = Instant::now();
    let mut history = History::new(Duration::from_secs(5), 3);
    let mut parts = held();
    assert!(history.record(start, &parts));
    assert!(
        !history.record(start + Duration::from_secs(4), &parts),
        "not due yet"
    );
    for (i, committed) in [(1u64, 13), (2, 23), (3, 23)] {
        parts[0].state.committed = Some(committed);
        parts[0].lag = Some(10 - committed.min(10));
        assert!(history.record(start + Duration::from_secs(5 * i), &parts));
    }
    assert_eq!(
        history.trend("orders", 0),
        Trend {
            t: vec![5.0, 10.0, 15.0],
            lag: vec![Some(0), Some(0), Some(0)],
            committed_per_s: vec![None, Some(2.0), Some(0.0)],
        },
        "three points at most: the oldest dropped"
    );
    assert_eq!(
        history.trend("orders", 1).lag,
        vec![None, None, None],
        "no high watermark yet"
    );
    // A revoked partition is forgotten at the next point.
    history.record(start + Duration::from_secs(20), &parts[..1]);
    assert_eq!(history.trend("orders", 1), Trend::default());
    assert_eq!(history.trend("orders", 0).t.len(), 3);
}
