//! What the Kafka sinks share: the record to produce, how it becomes
//! librdkafka's, and how it is handed to the producer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use sluicegate_core::Origin;

/// A record to produce. Fields left `None` fall back to the sink's settings
/// (its topic) or to the input record's origin (key and headers, when the
/// sink preserves them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The topic, instead of the sink's.
    pub topic: Option<String>,
    /// The key; `None` keeps the origin's key (see [`KafkaSink::preserve_key`](crate::KafkaSink::preserve_key)).
    pub key: Option<Bytes>,
    /// The payload; `None` produces a tombstone.
    pub payload: Option<Bytes>,
    /// Headers, added after the origin's (see [`KafkaSink::preserve_headers`](crate::KafkaSink::preserve_headers)).
    pub headers: Vec<(String, Bytes)>,
    /// The partition; `None` lets the partitioner choose (by key).
    pub partition: Option<i32>,
}

impl ProducerRecord {
    /// A record with this payload.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        ProducerRecord {
            payload: Some(payload.into()),
            ..ProducerRecord::default()
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }
}

impl From<Bytes> for ProducerRecord {
    fn from(payload: Bytes) -> Self {
        ProducerRecord::new(payload)
    }
}

/// Routes librdkafka's logs to `tracing`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingContext;

impl ClientContext for TracingContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", fac, "{log_message}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", fac, "{log_message}"),
            L::Notice | L::Info => tracing::info!(target: "librdkafka", fac, "{log_message}"),
            L::Debug => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }
}

/// Where a sink's records go and what they take from their origins.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// The topic of records that name none.
    pub(crate) topic: String,
    /// A record without a key takes its origin's.
    pub(crate) preserve_key: bool,
    /// The origin's headers go before the record's own.
    pub(crate) preserve_headers: bool,
}

impl Outgoing {
    /// To `topic`, preserving keys and headers.
    pub(crate) fn new(topic: String) -> Self {
        Outgoing {
            topic,
            preserve_key: true,
            preserve_headers: true,
        }
    }

    /// The record to send for `record` from `origin`: to its own topic or
    /// this one; the origin's key when the record has none (if
    /// `preserve_key`), the origin's headers before the record's own (if
    /// `preserve_headers`).
    pub(crate) fn record<'a>(
        &'a self,
        record: &'a ProducerRecord,
        origin: &'a Origin,
    ) -> FutureRecord<'a, [u8], [u8]> {
        let topic = record.topic.as_deref().unwrap_or(&self.topic);
        let key = record.key.as_ref().or(if self.preserve_key {
            origin.key.as_ref()
        } else {
            None
        });
        let mut headers = OwnedHeaders::new();
        let origin_headers = if self.preserve_headers {
            origin.headers.as_slice()
        } else {
            &[]
        };
        for (k, v) in origin_headers.iter().chain(&record.headers) {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_ref()),
            });
        }
        let mut fr: FutureRecord<'a, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(p) = &record.payload {
            fr = fr.payload(p.as_ref());
        }
        if let Some(k) = key {
            fr = fr.key(k.as_ref());
        }
        if let Some(p) = record.partition {
            fr = fr.partition(p);
        }
        fr
    }
}

/// The retry policy both Kafka sinks start with: 3 attempts, 100 ms
/// doubling up to 5 s, with jitter.
pub(crate) fn default_retry() -> sluicegate_core::RetryPolicy {
    sluicegate_core::RetryPolicy::new(3, Duration::from_millis(100), Duration::from_secs(5))
}

/// The builder methods both Kafka sinks have, with one meaning (what an
/// attempt is and when the first retry waits is each sink's, in `attempts`
/// and `backoff`): for a type with fields `outgoing: Outgoing` and
/// `retry: RetryPolicy`.
macro_rules! outgoing_settings {
    (attempts = $attempts:literal, backoff = $backoff:literal) => {
        #[doc = $attempts]
        pub fn max_attempts(mut self, attempts: u32) -> Self {
            self.retry = self.retry.max_attempts(attempts);
            self
        }

        #[doc = $backoff]
        pub fn backoff(mut self, backoff: std::time::Duration) -> Self {
            self.retry = self.retry.initial_backoff(backoff);
            self
        }

        /// The whole retry policy: attempts, first and longest wait, jitter
        /// (default 3 attempts, 100 ms doubling up to 5 s, with jitter).
        pub fn retry(mut self, policy: sluicegate_core::RetryPolicy) -> Self {
            self.retry = policy;
            self
        }

        /// Whether a record without a key takes its origin's key (default true).
        pub fn preserve_key(mut self, preserve: bool) -> Self {
            self.outgoing.preserve_key = preserve;
            self
        }

        /// Whether the origin's headers are copied before the record's own (default true).
        pub fn preserve_headers(mut self, preserve: bool) -> Self {
            self.outgoing.preserve_headers = preserve;
            self
        }
    };
}
pub(crate) use outgoing_settings;

/// Hands `record` to the producer's queue, waiting while the queue is full
/// (backpressure, counted in `queue_full`, never an error). The delivery
/// resolves once the broker acknowledged the record.
pub(crate) async fn enqueue<'a>(
    producer: &FutureProducer<TracingContext>,
    mut record: FutureRecord<'a, [u8], [u8]>,
    queue_full: &AtomicU64,
) -> Result<DeliveryFuture, KafkaError> {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                // Wait for deliveries to drain librdkafka's queue.
                queue_full.fetch_add(1, Ordering::Relaxed);
                record = back;
                // Boxed, as the sink's retry wait (rare; kept out of the
                // per-record future).
                Box::pin(tokio::time::sleep(Duration::from_millis(5))).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}
