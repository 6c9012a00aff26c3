//! `sluicegate produce`: the generated stream into a topic of a real
//! cluster, for trying the pipeline out.

use std::time::{Duration, Instant};

use super::AppError;
use super::embedded::{end_offsets, produce_generated};
use super::generate;
use crate::host::exit;

/// What [`produce`] writes, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct ProduceOptions {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic to produce to (must exist).
    pub topic: String,
    /// Records to produce.
    pub records: u64,
    /// First record number (to extend an earlier run without reusing ids).
    pub start: u64,
    /// Share of malformed records, 0.0 to 1.0.
    pub malformed: f64,
}

/// `sluicegate produce`: the generated stream into a real topic.
///
/// # Errors
///
/// When the topic is missing, the cluster unreachable or a record cannot be
/// delivered.
pub async fn produce(options: ProduceOptions) -> Result<i32, AppError> {
    if !(0.0..=1.0).contains(&options.malformed) {
        return Err(AppError::Config(
            "--malformed must be between 0.0 and 1.0".into(),
        ));
    }
    let (brokers, topic) = (options.brokers.clone(), options.topic.clone());
    tokio::task::spawn_blocking(move || end_offsets(&brokers, &topic, Duration::from_secs(10)))
        .await
        .map_err(|e| AppError::Failed(e.to_string()))?
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    let started = Instant::now();
    let ProduceOptions {
        brokers,
        topic,
        records,
        start,
        malformed,
    } = options;
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
