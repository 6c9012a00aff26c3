//! The `run` and `produce` commands, as library functions.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluicegate_core::GraphError;
use sluicegate_kafka_io::KafkaIoError;
use sluicegate_stages::store::{self, Store, StoreError};

use crate::cli::ProduceArgs;
use crate::embedded::{CatchUp, Embedded, produce_generated};
use crate::exit;
use crate::generate;
use crate::pipeline::{self, PipelineError};
use crate::runner::{LiveView, RunError, Runner, RunnerOptions, Stopped};
use crate::settings::Settings;
use crate::summary::Summary;
use crate::validation;

/// Why a command could not run, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A setting is wrong.
    #[error("{0}")]
    Config(String),
    /// A service is unreachable or lacks something (topic, table rights).
    #[error("{0}")]
    Unavailable(String),
    /// The pipeline failed.
    #[error("{0}")]
    Failed(String),
}

impl AppError {
    /// The exit code for this error ([`exit`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Config(_) => exit::CONFIG,
            AppError::Unavailable(_) => exit::UNAVAILABLE,
            AppError::Failed(_) => exit::FAILED,
        }
    }
}

impl From<PipelineError> for AppError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Kafka(
                k @ (KafkaIoError::Unreachable { .. } | KafkaIoError::UnknownTopic(_)),
            ) => AppError::Unavailable(k.to_string()),
            PipelineError::Kafka(k @ KafkaIoError::TooManyWorkers { .. }) => {
                AppError::Config(k.to_string())
            }
            PipelineError::Kafka(k @ KafkaIoError::Config { .. }) => {
                AppError::Config(k.to_string())
            }
            PipelineError::Kafka(k) => AppError::Unavailable(k.to_string()),
            PipelineError::Store(s) => store_error(s),
            PipelineError::Config(c) => AppError::Config(c),
        }
    }
}

/// A run that could not start: a status address that cannot be bound is a
/// bad setting (`run.http`), and so is a graph that is invalid; a start hook
/// that failed names its service (unavailable), unless its error is about a
/// setting.
fn run_error(e: RunError) -> AppError {
    match e {
        RunError::Http(e) => AppError::Config(format!("run.http: {e:#}")),
        RunError::Start(
            g @ (GraphError::InvalidConfig { .. }
            | GraphError::Unconnected { .. }
            | GraphError::DuplicateName { .. }),
        ) => AppError::Config(g.to_string()),
        RunError::Start(g) => {
            let setting = match &g {
                GraphError::StartFailed { source, .. } => {
                    matches!(
                        source.downcast_ref::<KafkaIoError>(),
                        Some(KafkaIoError::Config { .. })
                    ) || matches!(
                        source.downcast_ref::<StoreError>(),
                        Some(StoreError::Config(_))
                    )
                }
                _ => false,
            };
            if setting {
                AppError::Config(g.to_string())
            } else {
                AppError::Unavailable(g.to_string())
            }
        }
    }
}

fn store_error(e: StoreError) -> AppError {
    match e {
        StoreError::Config(c) => AppError::Config(format!("store: {c}")),
        other => AppError::Unavailable(format!("store: {other}")),
    }
}

/// What the embedded default puts in one partition at most (librdkafka's
/// mock broker drops the oldest records beyond 5 MiB or 100,000).
const MOCK_PARTITION_BYTES: u64 = 4 * 1024 * 1024;
const MOCK_PARTITION_RECORDS: u64 = 90_000;

/// Options of [`run`] that are not pipeline settings.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The live view.
    pub live_view: LiveView,
    /// Also write the summary as JSON to this file.
    pub summary_file: Option<PathBuf>,
}

/// Runs the reference pipeline with `settings`: on a real cluster when
/// `kafka.brokers` is set, else on the embedded mock cluster filled with
/// generated records. Prints the summary to stdout and returns the exit
/// code.
///
/// # Errors
///
/// [`AppError`] when something it needs is missing or wrong; the message is
/// one line naming the problem.
pub async fn run(settings: Settings, options: RunOptions) -> Result<i32, AppError> {
    let mut settings = settings;
    // A schema that cannot be used stops the run before anything starts.
    let schema = pipeline::validator(&settings)?;
    let schema_name = settings.validate.schema.as_ref().map_or_else(
        || "built-in event schema".to_string(),
        |p| p.display().to_string(),
    );
    tracing::info!(schema = %schema_name, draft = schema.draft(), "validating records against the schema");
    drop(schema);
    let connect = Duration::from_millis(settings.kafka.connect_timeout_ms);
    let embedded = if settings.is_embedded() {
        let e = &settings.embedded;
        let k = &settings.kafka;
        let retry_topics = settings
            .retry_delays()
            .map(|d| sluicegate_kafka_io::RetryTopics::new(&k.input_topic, &d).topics())
            .unwrap_or_default();
        let mut topics = vec![
            k.input_topic.as_str(),
            k.output_topic.as_str(),
            k.dead_letter_topic.as_str(),
        ];
        topics.extend(retry_topics.iter().map(String::as_str));
        let cluster = Embedded::start(&topics, e.partitions)
            .map_err(|e| AppError::Failed(format!("starting the embedded mock cluster: {e}")))?;
        // librdkafka's mock broker keeps at most 5 MiB or 100,000 records
        // per partition and silently drops the oldest beyond that.
        let bytes = generate::total_bytes(0, e.records, e.malformed);
        let per_partition = bytes / e.partitions as u64;
        let records_per_partition = e.records / e.partitions as u64;
        if per_partition > MOCK_PARTITION_BYTES || records_per_partition > MOCK_PARTITION_RECORDS {
            let need =
                (bytes / MOCK_PARTITION_BYTES + 1).max(e.records / MOCK_PARTITION_RECORDS + 1);
            return Err(AppError::Config(format!(
                "{} generated records ({:.1} MiB) do not fit {} partitions of the embedded mock cluster (it keeps about 4 MiB and 100,000 records per partition): use --partitions {need} or more, or fewer --records",
                e.records,
                bytes as f64 / (1024.0 * 1024.0),
                e.partitions
            )));
        }
        let bad = generate::count_malformed(0, e.records, e.malformed);
        tracing::info!(
            brokers = cluster.brokers(),
            records = e.records,
            malformed = bad,
            partitions = e.partitions,
            "no --brokers: running on an in-process mock cluster with a generated stream"
        );
        let started = Instant::now();
        let (brokers, topic, n, share) = (
            cluster.brokers().to_string(),
            k.input_topic.clone(),
            e.records,
            e.malformed,
        );
        tokio::task::spawn_blocking(move || produce_generated(&brokers, &topic, 0, n, share))
            .await
            .map_err(|e| AppError::Failed(format!("generating input: {e}")))?
            .map_err(|e| AppError::Failed(format!("generating input: {e}")))?;
        tracing::info!(elapsed = ?started.elapsed(), "input generated");
        settings.run.until_caught_up = true;
        Some(cluster)
    } else {
        None
    };
    let brokers = match (&embedded, &settings.kafka.brokers) {
        (Some(e), _) => e.brokers().to_string(),
        (None, Some(b)) => b.clone(),
        (None, None) => return Err(AppError::Config("no brokers".into())),
    };

    // The store: the URL given, else SQLite (a fresh temporary file when
    // embedded, so each run starts empty).
    let temp_db = match (&settings.store.url, &embedded) {
        (None, Some(_)) => Some(
            tempfile::Builder::new()
                .prefix("sluicegate-")
                .suffix(".db")
                .tempfile()
                .map_err(|e| AppError::Failed(format!("creating a temporary SQLite file: {e}")))?
                .into_temp_path(),
        ),
        _ => None,
    };
    let url = match &temp_db {
        Some(path) => Some(format!("sqlite://{}", path.display())),
        None => settings.store.url.clone(),
    };
    let store: Arc<dyn Store> = tokio::time::timeout(
        connect + Duration::from_secs(5),
        store::open(url.as_deref(), &settings.store.table),
    )
    .await
    .map_err(|_| {
        AppError::Unavailable(format!(
            "store: {} did not answer within {:?}",
            url.as_deref()
                .map_or_else(|| store::DEFAULT_SQLITE_PATH.to_string(), store::redact_url),
            connect + Duration::from_secs(5)
        ))
    })?
    .map_err(store_error)?;
    tracing::info!(store = %store.describe(), "store open");

    let (graph, pipeline) = pipeline::build(&settings, &brokers, store.clone()).await?;
    let catch_up = if settings.run.until_caught_up {
        let (b, g, t) = (
            brokers.clone(),
            settings.kafka.group.clone(),
            settings.kafka.input_topic.clone(),
        );
        let retries = pipeline
            .retry
            .as_ref()
            .map(|r| (settings.retry_group(), r.topics.topics()));
        let c = tokio::task::spawn_blocking(move || {
            let c = CatchUp::new(&b, &g, &t, connect)?;
            match retries {
                Some((group, topics)) => c.with_retries(&b, &group, topics),
                None => Ok(c),
            }
        })
        .await
        .map_err(|e| AppError::Failed(e.to_string()))?
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
        tracing::info!(records = c.total(), targets = ?c, "running until the group has committed the input's end offsets");
        Some(Arc::new(c))
    } else {
        None
    };
    let stop = {
        let catch_up = catch_up.clone();
        async move {
            let Some(c) = catch_up else {
                return std::future::pending().await;
            };
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let c = c.clone();
                let left =
                    tokio::task::spawn_blocking(move || c.remaining(Duration::from_secs(2))).await;
                if let Ok(Ok(0)) = left {
                    tracing::info!("caught up: every input record is committed");
                    return;
                }
            }
        }
    };

    let mut handles = pipeline.sources.clone();
    handles.extend(pipeline.retry.as_ref().map(|r| r.source.clone()));
    let runner = Runner::new(RunnerOptions {
        http: settings
            .http_addr()
            .map_err(|e| AppError::Config(format!("run.http: {e}")))?,
        drain_timeout: settings.drain_timeout(),
        live_view: options.live_view,
        handle_signals: true,
    })
    .kafka_sources(handles)
    .extra_status({
        let v = pipeline.validator.clone();
        let r = pipeline.retry.clone();
        move || {
            let mut status =
                serde_json::json!({ "validation": validation::status(&v, &schema_name) });
            if let Some(r) = &r {
                status["retries"] = crate::retries::status(r);
            }
            status
        }
    })
    .extra_metrics({
        let v = pipeline.validator.clone();
        let r = pipeline.retry.clone();
        move |graph| {
            let mut text = validation::prometheus(&v, graph);
            if let Some(r) = &r {
                text.push_str(&crate::retries::prometheus(r, graph));
            }
            text
        }
    });
    let outcome = runner.run(graph, stop).await.map_err(run_error)?;
    if let Stopped::Forced(name) = outcome.stopped {
        // No summary: the graph was abandoned mid-drain, its counts are not
        // final. The records it held are read again at the next start.
        eprintln!(
            "sluicegate: {name} while draining: exiting now; unfinished records are read again at the next start"
        );
        return Ok(exit::FORCED);
    }
    let summary = Summary::of(&pipeline, &outcome.report);
    println!("{summary}");
    match &outcome.stopped {
        Stopped::Signal(name) => println!("stopped by {name}"),
        Stopped::Condition => println!("stopped: every input record is committed"),
        Stopped::Finished => println!("stopped: the pipeline ended"),
        Stopped::Forced(_) => {}
    }
    if let Some(path) = &options.summary_file {
        let json = serde_json::to_string_pretty(&summary)
            .map_err(|e| AppError::Failed(format!("summary: {e}")))?;
        std::fs::write(path, json).map_err(|e| {
            AppError::Failed(format!("writing the summary to {}: {e}", path.display()))
        })?;
    }
    // Every client goes before the embedded cluster they talk to.
    drop((catch_up, pipeline, store));
    drop(embedded);
    Ok(if summary.failed > 0 {
        exit::FAILED
    } else {
        outcome.exit_code()
    })
}

/// `sluicegate produce`: the generated stream into a real topic.
///
/// # Errors
///
/// When the topic is missing, the cluster unreachable or a record cannot be
/// delivered.
pub async fn produce(args: ProduceArgs) -> Result<i32, AppError> {
    if !(0.0..=1.0).contains(&args.malformed) {
        return Err(AppError::Config(
            "--malformed must be between 0.0 and 1.0".into(),
        ));
    }
    let (brokers, topic) = (args.brokers.clone(), args.topic.clone());
    tokio::task::spawn_blocking(move || {
        crate::embedded::end_offsets(&brokers, &topic, Duration::from_secs(10))
    })
    .await
    .map_err(|e| AppError::Failed(e.to_string()))?
    .map_err(|e| AppError::Unavailable(e.to_string()))?;
    let started = Instant::now();
    let ProduceArgs {
        brokers,
        topic,
        records,
        start,
        malformed,
    } = args;
    let n = tokio::task::spawn_blocking(move || {
        produce_generated(&brokers, &topic, start, records, malformed)
    })
    .await
    .map_err(|e| AppError::Failed(e.to_string()))?
    .map_err(|e| AppError::Unavailable(format!("producing: {e}")))?;
    println!(
        "produced {n} records ({} malformed) in {:.1} s",
        generate::count_malformed(start, records, malformed),
        started.elapsed().as_secs_f64()
    );
    Ok(exit::OK)
}
