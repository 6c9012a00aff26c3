//! The command line. Every flag has an environment variable (shown in
//! `--help`); a flag beats its variable, which beats the `--config` file,
//! which beats the default (the [`defaults`] module).
//!
//! Parse with [`Cli::parse_args`]: it notes which flags of `run` were
//! given, so that [`RunArgs::settings`] lets the file decide the others.

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::app::ProduceOptions;
use crate::app::defaults;

mod merge;
mod run_args;
#[cfg(test)]
mod tests;

pub use crate::host::exit;
pub use run_args::RunArgs;

/// Async stream pipelines that never accept work faster than they can finish it.
#[derive(Debug, Parser)]
#[command(name = "sluicegate", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 done and drained; 1 the pipeline failed or did not drain; \
2 bad command line; 3 bad configuration; 4 broker, topic or database unavailable; \
130 forced by a second signal."
)]
pub struct Cli {
    /// Log format on stderr (the filter comes from RUST_LOG, default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SLUICEGATE_LOG_FORMAT", global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the reference pipeline: Kafka → decode → validate → transform →
    /// store and produce; failures to a dead-letter topic. With no
    /// --brokers it runs on an in-process mock cluster filled with generated
    /// records and stops when they are all done.
    Run(Box<RunArgs>),
    /// Produce the generated stream (with a share of malformed records) to a
    /// topic of a real cluster, for trying the pipeline out.
    Produce(ProduceArgs),
}

/// Flags of `sluicegate produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Bootstrap servers.
    #[arg(long, env = "SLUICEGATE_BROKERS")]
    pub brokers: String,
    /// Topic to produce to (must exist).
    #[arg(long, default_value = defaults::INPUT_TOPIC, env = "SLUICEGATE_INPUT_TOPIC")]
    pub topic: String,
    /// Records to produce.
    #[arg(long, default_value_t = defaults::RECORDS, env = "SLUICEGATE_RECORDS")]
    pub records: u64,
    /// First record number (to extend an earlier run without reusing ids).
    #[arg(long, default_value_t = 0)]
    pub start: u64,
    /// Share of malformed records, 0.0 to 1.0.
    #[arg(long, default_value_t = defaults::MALFORMED, env = "SLUICEGATE_MALFORMED")]
    pub malformed: f64,
}

impl ProduceArgs {
    /// What `sluicegate produce` was told, for [`produce`](crate::app::produce).
    pub fn options(&self) -> ProduceOptions {
        ProduceOptions {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            records: self.records,
            start: self.start,
            malformed: self.malformed,
        }
    }
}

impl Cli {
    /// Parses the command line `args` (the program's name first), noting
    /// which flags of `run` were given so that the ones left out do not
    /// override the `--config` file with their defaults. Use it rather
    /// than clap's `Cli::parse`, which does not note them.
    ///
    /// # Errors
    ///
    /// clap's error: a mistake, or a request for help or the version.
    pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Cli::command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        if let (Command::Run(run), Some(("run", m))) = (&mut cli.command, matches.subcommand()) {
            run.given = m
                .ids()
                .filter(|id| {
                    m.value_source(id.as_str())
                        .is_some_and(|s| s != ValueSource::DefaultValue)
                })
                .map(|id| id.as_str().to_string())
                .collect();
        }
        Ok(cli)
    }
}
