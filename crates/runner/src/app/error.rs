//! [`AppError`]: why a command of the binary could not run, and the exit
//! code it maps to.

use sluicegate_core::GraphError;
use sluicegate_kafka_io::KafkaIoError;
use sluicegate_stages::store::StoreError;

use crate::host::RunError;
use crate::host::exit;
use crate::pipeline::PipelineError;

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
pub(crate) fn run_error(e: RunError) -> AppError {
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

pub(crate) fn store_error(e: StoreError) -> AppError {
    match e {
        StoreError::Config(c) => AppError::Config(format!("store: {c}")),
        other => AppError::Unavailable(format!("store: {other}")),
    }
}
