//! `sluicegate run`: the reference pipeline, hosted by a [`Runner`], in
//! named steps: check the schema, start the embedded cluster (when no
//! brokers are given), open the store, build the pipeline, decide when to
//! stop, host it, report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluicegate_stages::store::{self, Store};
use tempfile::TempPath;

use super::embedded::{CatchUp, Embedded, produce_generated};
use super::error::{run_error, store_error};
use super::summary::Summary;
use super::{AppError, generate, retries, validation};
use crate::app::settings::Settings;
use crate::host::exit;
use crate::host::{LiveView, Outcome, Runner, RunnerOptions, Stopped};
use crate::pipeline::{self, Pipeline};

/// What the embedded default puts in one partition at most (librdkafka's
/// mock broker drops the oldest records beyond 5 MiB or 100,000).
const MOCK_PARTITION_BYTES: u64 = 4 * 1024 * 1024;
const MOCK_PARTITION_RECORDS: u64 = 90_000;

/// How often the stop condition asks whether the group has caught up.
const CATCH_UP_EVERY: Duration = Duration::from_millis(250);

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
    let schema_name = check_schema(&settings)?;
    let embedded = if settings.is_embedded() {
        let cluster = start_embedded(&settings).await?;
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
    // Deleted when dropped: it lives until the end of the run.
    let temp_db = temporary_database(&settings, embedded.is_some())?;
    let store = open_store(&settings, temp_db.as_ref()).await?;
    let (graph, pipeline) = pipeline::build(&settings, &brokers, store.clone()).await?;
    let catch_up = catch_up(&settings, &brokers, &pipeline).await?;
    let runner = host(&settings, &options, &pipeline, schema_name)?;
    let outcome = runner
        .run(graph, until_caught_up(catch_up.clone()))
        .await
        .map_err(run_error)?;
    let code = report(&pipeline, &outcome, &options)?;
    // Every client goes before the embedded cluster they talk to.
    drop((catch_up, pipeline, store));
    drop(embedded);
    Ok(code)
}

/// Compiles the schema, so that one that cannot be used stops the run
/// before anything starts; returns its name for `/status`.
fn check_schema(settings: &Settings) -> Result<String, AppError> {
    let schema = pipeline::validator(settings)?;
    let schema_name = settings.validate.schema.as_ref().map_or_else(
        || "built-in event schema".to_string(),
        |p| p.display().to_string(),
    );
    tracing::info!(schema = %schema_name, draft = schema.draft(), "validating records against the schema");
    Ok(schema_name)
}

/// Starts the embedded mock cluster with the pipeline's topics and fills
/// the input topic with the generated stream.
async fn start_embedded(settings: &Settings) -> Result<Embedded, AppError> {
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
    check_fits_mock_partitions(settings)?;
    let cluster = Embedded::start(&topics, e.partitions)
        .map_err(|e| AppError::Failed(format!("starting the embedded mock cluster: {e}")))?;
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
    Ok(cluster)
}

/// librdkafka's mock broker keeps at most 5 MiB or 100,000 records per
/// partition and silently drops the oldest beyond that: refuses a stream
/// that would not fit.
fn check_fits_mock_partitions(settings: &Settings) -> Result<(), AppError> {
    let e = &settings.embedded;
    let bytes = generate::total_bytes(0, e.records, e.malformed);
    let per_partition = bytes / e.partitions as u64;
    let records_per_partition = e.records / e.partitions as u64;
    if per_partition > MOCK_PARTITION_BYTES || records_per_partition > MOCK_PARTITION_RECORDS {
        let need = (bytes / MOCK_PARTITION_BYTES + 1).max(e.records / MOCK_PARTITION_RECORDS + 1);
        return Err(AppError::Config(format!(
            "{} generated records ({:.1} MiB) do not fit {} partitions of the embedded mock cluster (it keeps about 4 MiB and 100,000 records per partition): use --partitions {need} or more, or fewer --records",
            e.records,
            bytes as f64 / (1024.0 * 1024.0),
            e.partitions
        )));
    }
    Ok(())
}

/// With no store URL in the embedded default, a fresh temporary SQLite
/// file, so each run starts empty.
fn temporary_database(settings: &Settings, embedded: bool) -> Result<Option<TempPath>, AppError> {
    if settings.store.url.is_some() || !embedded {
        return Ok(None);
    }
    let file = tempfile::Builder::new()
        .prefix("sluicegate-")
        .suffix(".db")
        .tempfile()
        .map_err(|e| AppError::Failed(format!("creating a temporary SQLite file: {e}")))?;
    Ok(Some(file.into_temp_path()))
}

/// Opens the store: the temporary file when there is one, else the URL
/// given, else SQLite in the working directory.
async fn open_store(
    settings: &Settings,
    temp_db: Option<&TempPath>,
) -> Result<Arc<dyn Store>, AppError> {
    let url = match temp_db {
        Some(path) => Some(format!("sqlite://{}", path.display())),
        None => settings.store.url.clone(),
    };
    let wait = Duration::from_millis(settings.kafka.connect_timeout_ms) + Duration::from_secs(5);
    let store = tokio::time::timeout(wait, store::open(url.as_deref(), &settings.store.table))
        .await
        .map_err(|_| {
            AppError::Unavailable(format!(
                "store: {} did not answer within {wait:?}",
                url.as_deref()
                    .map_or_else(|| store::DEFAULT_SQLITE_PATH.to_string(), store::redact_url),
            ))
        })?
        .map_err(store_error)?;
    tracing::info!(store = %store.describe(), "store open");
    Ok(store)
}

/// With `run.until_caught_up`, the end offsets the group must commit (of
/// the input, and of the retry topics when there are some).
async fn catch_up(
    settings: &Settings,
    brokers: &str,
    pipeline: &Pipeline,
) -> Result<Option<Arc<CatchUp>>, AppError> {
    if !settings.run.until_caught_up {
        return Ok(None);
    }
    let connect = Duration::from_millis(settings.kafka.connect_timeout_ms);
    let (b, g, t) = (
        brokers.to_string(),
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
    Ok(Some(Arc::new(c)))
}

/// The stop condition: completes once the group has committed every end
/// offset of `catch_up`; never without one.
async fn until_caught_up(catch_up: Option<Arc<CatchUp>>) {
    let Some(c) = catch_up else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(CATCH_UP_EVERY).await;
        let c = c.clone();
        let left = tokio::task::spawn_blocking(move || c.remaining(Duration::from_secs(2))).await;
        if let Ok(Ok(0)) = left {
            tracing::info!("caught up: every input record is committed");
            return;
        }
    }
}

/// The host: the status server with the validation and retry figures, the
/// live view, and the Kafka sources' commit frontier.
fn host(
    settings: &Settings,
    options: &RunOptions,
    pipeline: &Pipeline,
    schema_name: String,
) -> Result<Runner, AppError> {
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
                status["retries"] = retries::status(r);
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
                text.push_str(&retries::prometheus(r, graph));
            }
            text
        }
    });
    Ok(runner)
}

/// Prints the summary (and writes it to the summary file) and returns the
/// exit code: no summary after a forced stop, whose counts are not final.
fn report(pipeline: &Pipeline, outcome: &Outcome, options: &RunOptions) -> Result<i32, AppError> {
    if let Stopped::Forced(name) = outcome.stopped {
        // The graph was abandoned mid-drain. The records it held are read
        // again at the next start.
        eprintln!(
            "sluicegate: {name} while draining: exiting now; unfinished records are read again at the next start"
        );
        return Ok(exit::FORCED);
    }
    let summary = Summary::of(pipeline, &outcome.report);
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
    Ok(if summary.failed > 0 {
        exit::FAILED
    } else {
        outcome.exit_code()
    })
}
