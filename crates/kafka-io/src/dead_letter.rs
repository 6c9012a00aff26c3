//! The dead-letter sink: writes failed records with headers that say why,
//! or sends a transient failure round a retry topic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sluicegate_core::{DeadLetter, FailureKind, Origin, Outputs, Stage};

use crate::config::KafkaConfig;
use crate::error::KafkaIoError;
use crate::producer::ProducerRecord;
use crate::retry::{self, Attempt, RetryTopics};
use crate::sink::KafkaSink;

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
