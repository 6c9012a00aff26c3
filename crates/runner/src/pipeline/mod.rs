//! The reference pipeline, built in code:
//!
//! ```text
//! kafka (input topic) → decode → validate → transform ─┬→ store   (SQLite / PostgreSQL, batched)
//!                            (blocking pool, batches) └→ produce (output topic)
//! any failure ──→ dead_letters (dead-letter topic, headers name the reason)
//! ```
//!
//! Records are JSON values. `validate` checks each against a JSON Schema:
//! the file `validate.schema` (`--schema`) names, or the built-in
//! [`EVENT_SCHEMA`] of the generated events; a rejected record is
//! dead-lettered with a reason naming the instance path and the keyword
//! that failed (`path "/amount": keyword minimum: -5 is less than the
//! minimum of 0`). `transform` pseudonymises the fields of
//! `transform.pseudonymise` and converts `transform.cents` to integer
//! cents, then fingerprints the record (see
//! [`EnrichAndHash`](sluicegate_stages::transform::EnrichAndHash)); a record
//! that is not an object passes through it unchanged. It runs on the
//! blocking pool a batch per hop and encodes each record to JSON once
//! ([`Encoded`]): the store writes that text and the output topic gets
//! those bytes.
//!
//! A record's offset is committed only once every branch finished it: stored
//! (or found already stored) and delivered to the output topic, or
//! dead-lettered. Reading a record twice stores it once (rows are keyed by
//! the record's origin).
//!
//! With `kafka.exactly_once` (`--exactly-once`) the store and the output are
//! a chain instead of two branches, and the output is transactional:
//!
//! ```text
//! kafka (transactional source) → decode → validate → transform (input order)
//!     → store (batched; passes each record on once its row committed)
//!     → encode → produce (one Kafka transaction per batch: its records and
//!                         the consumed offsets they cover)
//! ```
//!
//! A transaction's offsets cover only records that are finished or in its
//! batch, and a record reaches the batch only after its row committed, so a
//! committed offset never passes a record the store has not finished.
//! `read_committed` readers of the output topic see each record once,
//! across crashes and rebalances; the rows are stored once (idempotent on
//! the origin); dead letters stay at-least-once (they are written outside
//! the transactions).
//!
//! With `store.offsets` (`--store-offsets`) the group's offsets live in the
//! database instead of Kafka: each store batch writes, in the same
//! transaction as its rows, the offsets up to the first record that is not
//! finished (delivered to the output topic too, or dead-lettered) or in
//! the batch; the sources commit their finished prefix there as well, and
//! start each assigned partition from the offset stored for it. After a
//! crash no stored row is written again (its offset committed with it),
//! whichever process the partition moves to. Records reach the store in
//! each partition's order (the transform keeps input order). The output
//! topic stays at-least-once.

mod offsets;
mod sources;
mod stages;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sluicegate_core::{BatchConfig, BatchSpec, Graph, Overflow, StageSpec, Stream, map};
use sluicegate_kafka_io::{
    DeadLetterSink, KafkaConfig, KafkaIoError, KafkaSink, KafkaSource, KafkaSourceHandle,
    KafkaTxnSink, ProducerRecord, RetryStats, RetryTopics, SinkStats, TxnStats,
};
use sluicegate_stages::store::{Store, StoreError, StoreStage, StoreStats};
use sluicegate_stages::validate::SchemaValidator;

use crate::settings::{Settings, SettingsError, StageSettings};
use crate::transform::Encoded;

use offsets::Ledgers;

/// Why the pipeline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A Kafka problem: a bad property, the cluster unreachable, a topic
    /// missing, more workers than partitions.
    #[error(transparent)]
    Kafka(#[from] KafkaIoError),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else about the settings.
    #[error("{0}")]
    Config(String),
}

/// The handles the runner reports from, beside the built graph.
pub struct Pipeline {
    /// One handle per consumer in this process: offsets, lag, stats.
    pub sources: Vec<KafkaSourceHandle>,
    /// The database.
    pub store: Arc<dyn Store>,
    /// Rows inserted, duplicates, commits, retries.
    pub store_stats: StoreStats,
    /// The schema and its rejections per keyword and path.
    pub validator: SchemaValidator,
    /// Deliveries to the output topic (`None` with no output topic).
    pub produced: Option<Produced>,
    /// Non-blocking retries, when `store.retry_delays` is set.
    pub retry: Option<Retries>,
}

/// The retry topics of a run with non-blocking retries.
#[derive(Clone)]
pub struct Retries {
    /// The topics, first level first.
    pub topics: RetryTopics,
    /// The consumer of the retry topics.
    pub source: KafkaSourceHandle,
    /// Records sent to each level, and dead-lettered after the last.
    pub stats: Arc<RetryStats>,
}

/// The counters of the output topic's sink.
#[derive(Debug, Clone)]
pub enum Produced {
    /// At-least-once: each record acknowledged by the broker.
    Sink(Arc<SinkStats>),
    /// Exactly-once: records in committed transactions.
    Transactions(Arc<TxnStats>),
}

impl Produced {
    /// Records produced: acknowledged by the broker, or (exactly-once) in
    /// committed transactions.
    pub fn records(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        match self {
            Produced::Sink(s) => s.delivered.load(Relaxed),
            Produced::Transactions(t) => t.records.load(Relaxed),
        }
    }
}

/// The JSON Schema of the generated events (draft 2020-12): what the
/// binary validates with when no `validate.schema` is given. The same text
/// is in `crates/runner/schemas/event.schema.json`, a starting point for a
/// schema of your own.
pub const EVENT_SCHEMA: &str = include_str!("../../schemas/event.schema.json");

/// The validate stage's schema: the file `validate.schema` names, or
/// [`EVENT_SCHEMA`], compiled.
///
/// # Errors
///
/// [`PipelineError::Config`] naming the setting `validate.schema` and what
/// is wrong: the file unreadable, not JSON, not a valid schema (the place
/// in it), or a reference that does not resolve.
pub fn validator(settings: &Settings) -> Result<SchemaValidator, PipelineError> {
    let builder = SchemaValidator::builder().formats(settings.validate.formats);
    match &settings.validate.schema {
        Some(path) => builder.build_file(path),
        None => builder.build_str(EVENT_SCHEMA),
    }
    .map_err(|e| {
        PipelineError::Config(
            SettingsError::Invalid {
                key: "validate.schema".into(),
                message: e.to_string(),
            }
            .to_string(),
        )
    })
}

/// The Kafka client settings of a run against `brokers`, with the user's
/// properties.
pub fn kafka_config(settings: &Settings, brokers: &str) -> KafkaConfig {
    let mut config = KafkaConfig::new(brokers).client_id("sluicegate");
    for (k, v) in &settings.kafka.properties {
        config = config.set(k.clone(), v.clone());
    }
    config
}

/// A stage with the capacity and overflow policy of its settings.
fn spec<S: sluicegate_core::Stage>(name: &str, stage: S, s: &StageSettings) -> StageSpec<S> {
    StageSpec::new(name, stage)
        .capacity(s.capacity)
        .overflow(Overflow::from(s.overflow))
}

/// Builds the reference pipeline against `brokers`, checking up front that
/// the cluster answers, the input topic exists and the database opens.
///
/// Returns the graph, ready to start, and the handles to report from.
///
/// # Errors
///
/// [`PipelineError`] naming what is missing or wrong.
pub async fn build(
    settings: &Settings,
    brokers: &str,
    store: Arc<dyn Store>,
) -> Result<(Graph, Pipeline), PipelineError> {
    let k = &settings.kafka;
    let config = kafka_config(settings, brokers);
    let sources = sources::input(settings, &config, &store).await?;
    let handles: Vec<KafkaSourceHandle> = sources.iter().map(KafkaSource::handle).collect();
    let delays = settings.retry_delays().map_err(PipelineError::Config)?;
    let retry_topics = RetryTopics::new(&k.input_topic, &delays);
    let retry_source = sources::retry(settings, &config, &retry_topics).await?;

    let st = &settings.stages;
    let validator = validator(settings)?;
    let store_stage = StoreStage::<Encoded>::new(store.clone());
    let store_stage = if settings.store.offsets {
        store_stage.commit_offsets(Arc::new(Ledgers(handles.clone())), Duration::from_secs(1))
    } else if retry_source.is_some() {
        store_stage
            .non_blocking_retries(true)
            .origin_by(sluicegate_kafka_io::retry::original_origin)
    } else {
        store_stage
    };
    let store_stats = store_stage.stats();

    let mut g = Graph::builder("sluicegate");
    let dead_letters =
        DeadLetterSink::new(&config, k.dead_letter_topic.clone())?.retry(retry_topics.clone());
    let retry_stats = dead_letters.retry_stats();
    g.dead_letters(
        spec("dead_letters", dead_letters, &st.dead_letters)
            .concurrency(st.dead_letters.workers)
            // Each delivery mostly awaits the broker: no task per record.
            .spawn_items(false),
    );
    let streams: Vec<Stream<Bytes>> = if sources.len() == 1 {
        sources.into_iter().map(|s| g.source("kafka", s)).collect()
    } else {
        sources
            .into_iter()
            .enumerate()
            .map(|(i, s)| g.source(format!("kafka-{i}"), s))
            .collect()
    };
    let input = if streams.len() == 1 {
        streams
            .into_iter()
            .next()
            .ok_or_else(|| PipelineError::Config("no consumer".into()))?
    } else {
        Stream::merge(streams)
    };

    let validated = stages::prepare(input, "", validator.clone(), settings);
    // Records back from the retry topics go through the same steps again,
    // then to the store only (their output record was produced the first
    // time).
    let (retried, retry) = match retry_source {
        Some(source) => {
            let handle = source.handle();
            let stream = g.source("retry", source);
            (
                Some(stages::prepare(
                    stream,
                    "retry-",
                    validator.clone(),
                    settings,
                )),
                Some(Retries {
                    topics: retry_topics,
                    source: handle,
                    stats: retry_stats,
                }),
            )
        }
        None => (None, None),
    };
    // The store's input: the records of this run, and those back from the
    // retry topics.
    let with_retried = |stream: Stream<Encoded>| match retried {
        Some(r) => Stream::merge(vec![stream, r]),
        None => stream,
    };
    let batch = || {
        BatchConfig::new(
            settings.store.batch,
            Duration::from_millis(settings.store.batch_wait_ms),
        )
    };
    let encode = || {
        spec(
            "encode",
            map(|r: Encoded| ProducerRecord::new(r.to_bytes())),
            &st.produce,
        )
    };
    let produced = if k.exactly_once {
        let [handle] = handles.as_slice() else {
            return Err(PipelineError::Config(
                "exactly-once needs one consumer per process (kafka.workers = 1)".into(),
            ));
        };
        let sink = KafkaTxnSink::new(
            &config,
            k.output_topic.clone(),
            settings.transactional_id(),
            handle.exactly_once(),
        )?
        .preserve_key(true)
        .hold_before_commit(Duration::from_millis(
            settings.run.fault_hold_transaction_ms,
        ));
        let stats = sink.stats();
        validated
            .via_batch(
                BatchSpec::new("store", store_stage.forwarding(), batch())
                    .capacity(st.store.capacity)
                    .overflow(st.store.overflow.into()),
            )
            .via(encode())
            .to_batch(
                // One transaction per batch, sized like the store's.
                BatchSpec::new(
                    "produce",
                    sink,
                    BatchConfig::new(
                        settings.store.batch,
                        Duration::from_millis(settings.store.batch_wait_ms),
                    ),
                )
                .capacity(st.produce.capacity),
            );
        Some(Produced::Transactions(stats))
    } else if k.output_topic.is_empty() {
        with_retried(validated).to_batch(
            BatchSpec::new("store", store_stage, batch())
                .capacity(st.store.capacity)
                .overflow(st.store.overflow.into()),
        );
        None
    } else {
        let sink = KafkaSink::new(&config, k.output_topic.clone())?.preserve_key(true);
        let stats = sink.stats();
        let [to_store, to_topic] = validated.broadcast();
        with_retried(to_store).to_batch(
            BatchSpec::new("store", store_stage, batch())
                .capacity(st.store.capacity)
                .overflow(st.store.overflow.into()),
        );
        to_topic.via(encode()).to(spec("produce", sink, &st.produce)
            .concurrency(st.produce.workers)
            // Each delivery mostly awaits the broker: no task per record.
            .spawn_items(false));
        Some(Produced::Sink(stats))
    };
    let graph = g
        .build()
        .map_err(|e| PipelineError::Config(e.to_string()))?;
    Ok((
        graph,
        Pipeline {
            sources: handles,
            store,
            store_stats,
            validator,
            produced,
            retry,
        },
    ))
}
