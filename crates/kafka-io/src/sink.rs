//! The Kafka sink: produces records and acknowledges them only on broker
//! acknowledgement; the dead-letter sink writes failed records with headers
//! that say why.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sluicegate_core::{DeadLetter, FailureKind, Origin, Outputs, RetryPolicy, Stage};

use crate::config::KafkaConfig;
use crate::error::{KafkaIoError, is_retriable};
use crate::retry::{self, Attempt, RetryTopics};

/// A record to produce. Fields left `None` fall back to the sink's settings
/// (its topic) or to the input record's origin (key and headers, when the
/// sink preserves them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The topic, instead of the sink's.
    pub topic: Option<String>,
    /// The key; `None` keeps the origin's key (see [`KafkaSink::preserve_key`]).
    pub key: Option<Bytes>,
    /// The payload; `None` produces a tombstone.
    pub payload: Option<Bytes>,
    /// Headers, added after the origin's (see [`KafkaSink::preserve_headers`]).
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

/// Counters of one sink.
#[derive(Debug, Default, serde::Serialize)]
pub struct SinkStats {
    /// Records the broker acknowledged.
    pub delivered: AtomicU64,
    /// Attempts retried after a retriable error.
    pub retries: AtomicU64,
    /// Times the producer queue was full (backpressure, not an error).
    pub queue_full: AtomicU64,
    /// Records that failed after every attempt.
    pub failed: AtomicU64,
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

/// The record to send for `record` from `origin`: the origin's key when the
/// record has none (if `preserve_key`), the origin's headers before the
/// record's own (if `preserve_headers`).
pub(crate) fn future_record<'a>(
    topic: &'a str,
    record: &'a ProducerRecord,
    origin: &'a Origin,
    preserve_key: bool,
    preserve_headers: bool,
) -> FutureRecord<'a, [u8], [u8]> {
    let key = record.key.as_ref().or(if preserve_key {
        origin.key.as_ref()
    } else {
        None
    });
    let mut headers = OwnedHeaders::new();
    let origin_headers = if preserve_headers {
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

fn producer(config: &KafkaConfig) -> Result<FutureProducer<TracingContext>, KafkaIoError> {
    config
        .clone()
        .set_default("enable.idempotence", "true")
        .set_default("linger.ms", "5")
        .client_config()
        .create_with_context(TracingContext)
        .map_err(|e| config.explain(e))
}

/// Produces each input to Kafka; the input's acknowledgement resolves as
/// delivered only when the broker has acknowledged the record.
///
/// The idempotent producer is on by default (`enable.idempotence=true`), so
/// librdkafka's own retries neither duplicate nor reorder. On top of those,
/// a delivery that fails with a retriable error is tried again with
/// capped exponential backoff and jitter ([`RetryPolicy`], set with
/// [`KafkaSink::retry`]), up to [`KafkaSink::max_attempts`]; after the last, the
/// record fails with [`KafkaIoError::SendFailed`] (which carries the attempt
/// count) and goes to the graph's dead-letter route.
///
/// # Backpressure
///
/// In-flight deliveries are bounded by the stage's concurrency (each
/// `process` call awaits its delivery). A full producer queue (`QueueFull`)
/// is waited out and counted, never an error.
///
/// ## Choosing the concurrency
///
/// Each record is in flight from its `send` until the broker's
/// acknowledgement: about `linger.ms` (5 ms by default here) plus one
/// broker round trip. By Little's law the concurrency needed for a target
/// rate is
///
/// ```text
/// concurrency ≈ target rate × (linger.ms + broker round trip)
/// ```
///
/// e.g. 50 000 records/s × (5 ms + 3 ms) = 400. Fewer and the sink caps the
/// rate below the target (and the producer's batches stay small); many more
/// only holds more records in memory and makes a shutdown drain longer.
/// The mailbox capacity must be at least the concurrency.
#[derive(Clone)]
pub struct KafkaSink {
    producer: FutureProducer<TracingContext>,
    topic: String,
    retry: RetryPolicy,
    preserve_key: bool,
    preserve_headers: bool,
    flush_timeout: Duration,
    start_timeout: Duration,
    stats: Arc<SinkStats>,
}

impl KafkaSink {
    /// A sink producing to `topic` on the cluster of `config`.
    ///
    /// # Errors
    ///
    /// [`KafkaIoError::Config`] naming a setting librdkafka rejects.
    pub fn new(config: &KafkaConfig, topic: impl Into<String>) -> Result<Self, KafkaIoError> {
        Ok(KafkaSink {
            producer: producer(config)?,
            topic: topic.into(),
            retry: RetryPolicy::new(3, Duration::from_millis(100), Duration::from_secs(5)),
            preserve_key: true,
            preserve_headers: true,
            flush_timeout: Duration::from_secs(30),
            start_timeout: Duration::from_secs(5),
            stats: Arc::new(SinkStats::default()),
        })
    }

    /// Attempts per record before it fails (default 3).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.retry = self.retry.max_attempts(attempts);
        self
    }

    /// The first retry's delay, doubling each time up to the policy's cap
    /// (default 100 ms, capped at 5 s, each wait up to half as long again
    /// with jitter; see [`RetryPolicy`]).
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.retry = self.retry.initial_backoff(backoff);
        self
    }

    /// The whole retry policy: attempts, first and longest wait, jitter
    /// (default 3 attempts, 100 ms doubling up to 5 s, with jitter).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Whether a record without a key takes its origin's key (default true).
    pub fn preserve_key(mut self, preserve: bool) -> Self {
        self.preserve_key = preserve;
        self
    }

    /// Whether the origin's headers are copied before the record's own (default true).
    pub fn preserve_headers(mut self, preserve: bool) -> Self {
        self.preserve_headers = preserve;
        self
    }

    /// How long the start hook waits for the cluster's metadata (default
    /// 5 s). It never fails the start: the wait only lets the idempotent
    /// producer get its producer id before the first record, instead of up
    /// to half a second after it.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// The sink's counters.
    pub fn stats(&self) -> Arc<SinkStats> {
        self.stats.clone()
    }

    /// Produces one record, retrying as configured.
    async fn deliver(
        &self,
        topic: &str,
        record: &ProducerRecord,
        origin: &Origin,
    ) -> Result<(), KafkaIoError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let fr = future_record(
                topic,
                record,
                origin,
                self.preserve_key,
                self.preserve_headers,
            );
            let delivery = match self.producer.send_result(fr) {
                Ok(delivery) => delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // Backpressure from librdkafka's queue: wait for deliveries to drain it.
                    self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
                    attempt -= 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                Err((e, _)) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    return Err(KafkaIoError::SendFailed {
                        attempts: attempt,
                        source: e,
                    });
                }
            };
            let error = match delivery.await {
                Ok(Ok(_)) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Ok(Err((e, _))) => e,
                Err(_canceled) => KafkaError::Canceled,
            };
            if !self.retry.allows_another(attempt) || !is_retriable(&error) {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                return Err(KafkaIoError::SendFailed {
                    attempts: attempt,
                    source: error,
                });
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%error, attempt, "delivery failed; retrying");
            tokio::time::sleep(self.retry.backoff(attempt)).await;
        }
    }

    /// Asks the cluster for metadata, waiting up to `start_timeout`, until a
    /// broker of the cluster (not a bootstrap address) answers. Besides
    /// checking the cluster is there: librdkafka requests the idempotent
    /// producer's id when such an answer arrives (a bootstrap connection
    /// does not qualify), instead of on its next 500 ms timer tick, which
    /// the first deliveries would otherwise wait for.
    async fn connect(&self) {
        let producer = self.producer.clone();
        let timeout = self.start_timeout;
        let started = std::time::Instant::now();
        let fetched = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let metadata = producer.client().fetch_metadata(None, left)?;
                // Bootstrap connections have no broker id (-1).
                if metadata.orig_broker_id() >= 0 || left.is_zero() {
                    return Ok::<i32, KafkaError>(metadata.orig_broker_id());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
        .await;
        match fetched {
            Ok(Ok(broker)) => {
                tracing::debug!(elapsed = ?started.elapsed(), broker, "producer connected");
            }
            Ok(Err(error)) => {
                // Not fatal: librdkafka keeps trying, and deliveries wait for it.
                tracing::warn!(%error, waited = ?timeout, "no metadata from the cluster at start; producing anyway");
            }
            Err(_) => {}
        }
    }

    async fn flush(&self) -> Result<(), KafkaIoError> {
        let producer = self.producer.clone();
        let timeout = self.flush_timeout;
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|_| KafkaIoError::Client(KafkaError::Canceled))?
            .map_err(KafkaIoError::Client)
    }
}

impl Stage for KafkaSink {
    type In = ProducerRecord;
    type Out = ();
    type Error = KafkaIoError;

    /// Waits (up to [`KafkaSink::start_timeout`]) for the cluster, so the
    /// first records do not wait for the producer id.
    async fn start(&self) -> Result<(), KafkaIoError> {
        self.connect().await;
        Ok(())
    }

    async fn process(
        &self,
        record: ProducerRecord,
        origin: &Origin,
    ) -> Result<Outputs<()>, KafkaIoError> {
        let topic = record.topic.as_deref().unwrap_or(&self.topic);
        self.deliver(topic, &record, origin).await.map(Outputs::one)
    }

    async fn stop(&self) -> Result<(), KafkaIoError> {
        self.flush().await
    }
}

/// Header names the dead-letter sink writes.
pub mod headers {
    /// The error message.
    pub const ERROR: &str = "sluicegate.error";
    /// The failure kind: error, panic, fatal.
    pub const KIND: &str = "sluicegate.error.kind";
    /// The stage the record failed in.
    pub const STAGE: &str = "sluicegate.stage";
    /// Delivery attempts made (1 unless the failing stage retried).
    pub const ATTEMPTS: &str = "sluicegate.attempts";
    /// The record's original topic.
    pub const ORIGIN_TOPIC: &str = "sluicegate.origin.topic";
    /// The record's original partition.
    pub const ORIGIN_PARTITION: &str = "sluicegate.origin.partition";
    /// The record's original offset.
    pub const ORIGIN_OFFSET: &str = "sluicegate.origin.offset";
    /// On a retry record: the failed attempts so far (1 after the first).
    pub const RETRY_ATTEMPT: &str = "sluicegate.retry.attempt";
    /// On a retry record: when it may be tried again, milliseconds since
    /// the Unix epoch.
    pub const RETRY_DUE: &str = "sluicegate.retry.due";
    /// On a retry record: when it first failed, milliseconds since the
    /// Unix epoch.
    pub const RETRY_FIRST_FAILURE: &str = "sluicegate.retry.first_failure";
    /// On a retry record, and on a dead letter of a record that was
    /// retried: every failed attempt, a JSON array of
    /// [`Attempt`](crate::retry::Attempt).
    pub const RETRY_HISTORY: &str = "sluicegate.retry.history";
}

/// The dead-letter route to a Kafka topic: writes each failed record as it
/// arrived (its original bytes and key, when the source kept them), with
/// its original headers plus [`headers`] naming the error, the stage, the
/// attempt count and the origin. The failed record counts as finished
/// (dead-lettered) only once the broker acknowledged the dead letter.
///
/// With [`retry`](DeadLetterSink::retry), a transient failure goes to a
/// retry topic instead, until its levels run out (see [`crate::retry`]).
#[derive(Clone)]
pub struct DeadLetterSink {
    sink: KafkaSink,
    retry: RetryTopics,
    stats: Arc<RetryStats>,
}

/// Where a [`DeadLetterSink`] sent failed records.
#[derive(Debug, Default, serde::Serialize)]
pub struct RetryStats {
    /// Records sent to each retry level, first level first.
    pub scheduled: Vec<AtomicU64>,
    /// Records dead-lettered after every retry level failed too.
    pub exhausted: AtomicU64,
    /// Records dead-lettered in all.
    pub dead_lettered: AtomicU64,
}

impl DeadLetterSink {
    /// A dead-letter sink producing to `topic`.
    ///
    /// # Errors
    ///
    /// [`KafkaIoError::Config`] naming a setting librdkafka rejects.
    pub fn new(config: &KafkaConfig, topic: impl Into<String>) -> Result<Self, KafkaIoError> {
        Ok(DeadLetterSink {
            sink: KafkaSink::new(config, topic)?
                .preserve_key(true)
                .preserve_headers(false),
            retry: RetryTopics::default(),
            stats: Arc::new(RetryStats::default()),
        })
    }

    /// Non-blocking retries: a record whose failure
    /// [`is_transient`](sluicegate_core::ItemError::is_transient) goes to
    /// the retry topic of its attempt (the first level after its first
    /// failure, ...), with headers saying when it is due and what happened
    /// so far; after the last level, to the dead-letter topic with that
    /// history. Consume the retry topics with
    /// [`KafkaSource::due_header`](crate::KafkaSource::due_header) and feed
    /// them back. Other failures are dead-lettered at once, as without
    /// retries.
    pub fn retry(mut self, topics: RetryTopics) -> Self {
        self.stats = Arc::new(RetryStats {
            scheduled: topics.levels().iter().map(|_| AtomicU64::new(0)).collect(),
            ..RetryStats::default()
        });
        self.retry = topics;
        self
    }

    /// Where failed records went (live counters).
    pub fn retry_stats(&self) -> Arc<RetryStats> {
        self.stats.clone()
    }
}

impl Stage for DeadLetterSink {
    type In = DeadLetter;
    type Out = ();
    type Error = KafkaIoError;

    async fn start(&self) -> Result<(), KafkaIoError> {
        self.sink.connect().await;
        Ok(())
    }

    async fn process(
        &self,
        letter: DeadLetter,
        origin: &Origin,
    ) -> Result<Outputs<()>, KafkaIoError> {
        let e = &letter.error;
        let now = retry::now_ms();
        let mut history = retry::history(origin);
        let attempt = history.last().map_or(0, |a| a.attempt) + 1;
        let retried = !history.is_empty();
        history.push(Attempt {
            attempt,
            at: now,
            stage: e.stage().to_string(),
            kind: e.kind().to_string(),
            error: e.message().to_string(),
        });
        let history_json = serde_json::to_vec(&history).unwrap_or_default();
        let mut record = ProducerRecord {
            payload: origin.raw.clone(),
            headers: retry::carried_headers(origin),
            ..ProducerRecord::default()
        };
        let level = (attempt as usize).checked_sub(1);
        if let Some((topic, delay)) = level
            .and_then(|l| self.retry.levels().get(l))
            .filter(|_| e.is_transient() && e.kind() == FailureKind::Error)
        {
            let first = history.first().map_or(now, |a| a.at);
            record.topic = Some(topic.clone());
            record = record
                .header(headers::ERROR, e.message().to_string())
                .header(headers::STAGE, e.stage().to_string())
                .header(headers::RETRY_ATTEMPT, attempt.to_string())
                .header(
                    headers::RETRY_DUE,
                    (now + delay.as_millis() as i64).to_string(),
                )
                .header(headers::RETRY_FIRST_FAILURE, first.to_string())
                .header(headers::RETRY_HISTORY, history_json);
            let out = self.sink.process(record, origin).await?;
            if let Some(n) = level.and_then(|l| self.stats.scheduled.get(l)) {
                n.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(out);
        }
        let attempts = match e.error().and_then(|s| s.downcast_ref::<KafkaIoError>()) {
            Some(KafkaIoError::SendFailed { attempts, .. }) => *attempts,
            _ => attempt,
        };
        record = record
            .header(headers::ERROR, e.message().to_string())
            .header(headers::KIND, e.kind().to_string())
            .header(headers::STAGE, e.stage().to_string())
            .header(headers::ATTEMPTS, attempts.to_string());
        if retried {
            record = record.header(headers::RETRY_HISTORY, history_json);
        }
        let out = self.sink.process(record, origin).await?;
        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        if retried && e.is_transient() {
            self.stats.exhausted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(out)
    }

    async fn stop(&self) -> Result<(), KafkaIoError> {
        self.sink.flush().await
    }
}
