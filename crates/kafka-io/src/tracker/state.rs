//! Where a partition stands, as reported.

use std::time::Duration;

/// Where a partition stands, for metrics and status pages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionState {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset last committed (the next to consume after a restart).
    pub committed: Option<i64>,
    /// The offset that could be committed now: every record before it is
    /// finished (the finished frontier).
    pub committable: Option<i64>,
    /// Records handed out and not resolved yet.
    pub in_flight: usize,
    /// One past the highest offset handed out (the fetched frontier).
    pub next: Option<i64>,
    /// Records in the window: handed out from the first unfinished offset on.
    pub window: usize,
    /// The first record handed out and not finished (in flight, or ended
    /// without finishing): what holds the commits back.
    pub oldest_unfinished: Option<i64>,
    /// How long ago that record was handed out.
    #[serde(rename = "oldest_unfinished_age_s", serialize_with = "seconds")]
    pub oldest_unfinished_age: Option<Duration>,
    /// Whether the window limit paused the partition.
    pub window_paused: bool,
    /// Times the window limit paused the partition since it was assigned.
    pub window_pauses: u64,
}

fn seconds<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}
