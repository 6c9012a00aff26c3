//! Non-blocking retries through retry topics.
//!
//! A record that failed transiently (its failure says
//! [`is_transient`](sluicegate_core::ItemError::is_transient)) is not
//! retried where it failed, holding its partition's commits behind it: the
//! dead-letter route ([`DeadLetterSink::retry`](crate::DeadLetterSink::retry))
//! writes it to the retry topic of its attempt, one topic per delay level
//! (`orders.retry.1s`, `orders.retry.10s`, ...), and the original record
//! counts as finished once that write is acknowledged, so the original
//! partition's commits move on. A consumer of the retry topics
//! ([`KafkaSource::due_header`](crate::KafkaSource::due_header)) holds each
//! record until its due time, its partition paused meanwhile, and feeds it
//! back. After the last level, the record goes to the dead-letter topic
//! with the full history of its attempts.
//!
//! Each retry record carries the original record (its bytes, key and
//! headers) and [`headers`]: the last error and the stage
//! it failed in, the attempts so far, when it is due, when it first
//! failed, the history of its failures (a JSON array
//! of `{"attempt", "at", "stage", "kind", "error"}`, times in milliseconds
//! since the Unix epoch), and the original topic, partition and offset,
//! which [`original_origin`] gives back, so that a store keyed by origin
//! stores a retried record under the key of its first reading.
//!
//! The price is order: a retried record comes back after records of its
//! key that were read after it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sluicegate_core::Origin;

use crate::dead_letter::headers;

/// The retry topics of an input topic: one per delay level, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryTopics {
    levels: Vec<(String, Duration)>,
}

impl RetryTopics {
    /// One level per delay, named `{input}.retry.{delay}` (`1s`, `250ms`,
    /// `2m`). The first failure waits `delays[0]`, the second `delays[1]`,
    /// and a record that fails after the last level goes to the dead-letter
    /// topic: `delays.len() + 1` attempts in all.
    pub fn new(input_topic: &str, delays: &[Duration]) -> Self {
        RetryTopics {
            levels: delays
                .iter()
                .map(|d| (format!("{input_topic}.retry.{}", delay_name(*d)), *d))
                .collect(),
        }
    }

    /// The topics, first level first.
    pub fn topics(&self) -> Vec<String> {
        self.levels.iter().map(|(t, _)| t.clone()).collect()
    }

    /// The levels: topic and delay.
    pub fn levels(&self) -> &[(String, Duration)] {
        &self.levels
    }

    /// No levels: transient failures go to the dead-letter topic at once.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }
}

/// `1s`, `90s`, `250ms`, `2m`, `1h`: the delay as a topic name part.
pub fn delay_name(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        format!("{ms}ms")
    } else {
        let s = ms / 1000;
        if s >= 3600 && s % 3600 == 0 {
            format!("{}h", s / 3600)
        } else if s >= 60 && s % 60 == 0 {
            format!("{}m", s / 60)
        } else {
            format!("{s}s")
        }
    }
}

/// One failed attempt of a record, as the history header holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first reading, 2 for the first retry, ...
    pub attempt: u32,
    /// When it failed, milliseconds since the Unix epoch.
    pub at: i64,
    /// The stage it failed in.
    pub stage: String,
    /// The failure kind (`error`, `panic`, ...).
    pub kind: String,
    /// The failure's message.
    pub error: String,
}

/// The failed attempts a record carries in its headers (none for a record
/// that never failed).
pub fn history(origin: &Origin) -> Vec<Attempt> {
    header(origin, headers::RETRY_HISTORY)
        .and_then(|v| serde_json::from_slice(v).ok())
        .unwrap_or_default()
}

/// The origin a record was first read with: for a record from a retry
/// topic, the original topic, partition and offset of its headers; for any
/// other, the origin itself.
pub fn original_origin(origin: &Origin) -> Origin {
    let (Some(topic), Some(partition), Some(offset)) = (
        header_str(origin, headers::ORIGIN_TOPIC),
        header_str(origin, headers::ORIGIN_PARTITION).and_then(|p| p.parse().ok()),
        header_str(origin, headers::ORIGIN_OFFSET).and_then(|o| o.parse().ok()),
    ) else {
        return origin.clone();
    };
    if header(origin, headers::RETRY_ATTEMPT).is_none() {
        return origin.clone();
    }
    Origin {
        topic: Some(topic.into()),
        partition: Some(partition),
        offset: Some(offset),
        ..origin.clone()
    }
}

/// When a record from a retry topic is due: its due header, a time in
/// milliseconds since the Unix epoch.
pub fn due(value: &[u8]) -> Option<SystemTime> {
    let ms: u64 = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_millis(ms))
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn header<'a>(origin: &'a Origin, key: &str) -> Option<&'a Bytes> {
    origin
        .headers
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn header_str<'a>(origin: &'a Origin, key: &str) -> Option<&'a str> {
    header(origin, key).and_then(|v| std::str::from_utf8(v).ok())
}

/// The headers a retry or dead-letter record of `origin` carries: the
/// origin's own (less sluicegate's, which are written again), then the
/// original topic, partition and offset.
pub(crate) fn carried_headers(origin: &Origin) -> Vec<(String, Bytes)> {
    let first = original_origin(origin);
    let mut out: Vec<(String, Bytes)> = origin
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with("sluicegate."))
        .cloned()
        .collect();
    if let Some(t) = &first.topic {
        out.push((headers::ORIGIN_TOPIC.into(), Bytes::from(t.to_string())));
    }
    if let Some(p) = first.partition {
        out.push((headers::ORIGIN_PARTITION.into(), Bytes::from(p.to_string())));
    }
    if let Some(o) = first.offset {
        out.push((headers::ORIGIN_OFFSET.into(), Bytes::from(o.to_string())));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_name_their_topics() {
        let t = RetryTopics::new(
            "orders",
            &[
                Duration::from_secs(1),
                Duration::from_millis(250),
                Duration::from_secs(90),
                Duration::from_secs(120),
                Duration::from_secs(7200),
            ],
        );
        assert_eq!(
            t.topics(),
            [
                "orders.retry.1s",
                "orders.retry.250ms",
                "orders.retry.90s",
                "orders.retry.2m",
                "orders.retry.2h"
            ]
        );
    }

    #[test]
    fn the_original_origin_comes_from_the_headers_of_a_retry_record_only() {
        let retry = Origin {
            topic: Some("orders.retry.1s".into()),
            partition: Some(0),
            offset: Some(3),
            headers: vec![
                ("user".into(), Bytes::from("kept")),
                (headers::ORIGIN_TOPIC.into(), Bytes::from("orders")),
                (headers::ORIGIN_PARTITION.into(), Bytes::from("2")),
                (headers::ORIGIN_OFFSET.into(), Bytes::from("41")),
                (headers::RETRY_ATTEMPT.into(), Bytes::from("1")),
            ],
            ..Origin::default()
        };
        let first = original_origin(&retry);
        assert_eq!(
            (first.topic.as_deref(), first.partition, first.offset),
            (Some("orders"), Some(2), Some(41))
        );
        // A dead letter's headers alone (no attempt header) do not move a
        // record read back from the dead-letter topic.
        let mut dead = retry.clone();
        dead.headers.pop();
        assert_eq!(original_origin(&dead).offset, Some(3));
        let carried = carried_headers(&retry);
        assert_eq!(
            carried
                .iter()
                .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
                .collect::<Vec<_>>(),
            [
                "user=kept",
                "sluicegate.origin.topic=orders",
                "sluicegate.origin.partition=2",
                "sluicegate.origin.offset=41"
            ]
        );
    }
}
