//! The Kafka sink: produces records and acknowledges them only on broker
//! acknowledgement.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use sluicegate_core::{Origin, Outputs, RetryPolicy, Stage};

use crate::config::KafkaConfig;
use crate::error::{KafkaIoError, is_retriable};
use crate::producer::{
    Outgoing, ProducerRecord, TracingContext, default_retry, enqueue, outgoing_settings,
};

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
    outgoing: Outgoing,
    retry: RetryPolicy,
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
            outgoing: Outgoing::new(topic.into()),
            retry: default_retry(),
            flush_timeout: Duration::from_secs(30),
            start_timeout: Duration::from_secs(5),
            stats: Arc::new(SinkStats::default()),
        })
    }

    outgoing_settings!(
        attempts = "Attempts per record before it fails (default 3).",
        backoff = "The first retry's delay, doubling each time up to the policy's cap (default 100 ms, capped at 5 s, each wait up to half as long again with jitter; see [`RetryPolicy`](sluicegate_core::RetryPolicy))."
    );

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
    async fn deliver(&self, record: &ProducerRecord, origin: &Origin) -> Result<(), KafkaIoError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let fr = self.outgoing.record(record, origin);
            let delivery = match enqueue(&self.producer, fr, &self.stats.queue_full).await {
                Ok(delivery) => delivery,
                Err(e) => {
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
            // Boxed: a retry is rare, and a timer kept inline would make
            // every record's future 112 bytes larger.
            Box::pin(tokio::time::sleep(self.retry.backoff(attempt))).await;
        }
    }

    /// Asks the cluster for metadata, waiting up to `start_timeout`, until a
    /// broker of the cluster (not a bootstrap address) answers. Besides
    /// checking the cluster is there: librdkafka requests the idempotent
    /// producer's id when such an answer arrives (a bootstrap connection
    /// does not qualify), instead of on its next 500 ms timer tick, which
    /// the first deliveries would otherwise wait for.
    pub(crate) async fn connect(&self) {
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

    pub(crate) async fn flush(&self) -> Result<(), KafkaIoError> {
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
        self.deliver(&record, origin).await.map(Outputs::one)
    }

    async fn stop(&self) -> Result<(), KafkaIoError> {
        self.flush().await
    }
}
