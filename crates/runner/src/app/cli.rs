//! The command line. Every flag has an environment variable (shown in
//! `--help`); a flag beats its variable, which beats the `--config` file,
//! which beats the default.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::app::defaults;
use crate::app::settings::{OrderSetting, OverflowSetting, Settings, SettingsError};
use crate::app::{ProduceOptions, RunOptions};
use crate::host::LiveView;

pub use crate::host::exit;

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

/// Flags of `sluicegate run`.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Kafka")]
pub struct RunArgs {
    /// TOML file with settings (flags and environment variables win).
    #[arg(long, env = "SLUICEGATE_CONFIG", help_heading = "Run")]
    pub config: Option<PathBuf>,
    /// Bootstrap servers of a real cluster. Without it, an in-process mock
    /// cluster is started and filled with generated records.
    #[arg(long, env = "SLUICEGATE_BROKERS")]
    pub brokers: Option<String>,
    /// Consumer group; processes with the same group share the partitions.
    #[arg(long, default_value = defaults::GROUP, env = "SLUICEGATE_GROUP")]
    pub group: String,
    /// Topic read from.
    #[arg(long, default_value = defaults::INPUT_TOPIC, env = "SLUICEGATE_INPUT_TOPIC")]
    pub input_topic: String,
    /// Topic produced to; "" for none.
    #[arg(long, default_value = defaults::OUTPUT_TOPIC, env = "SLUICEGATE_OUTPUT_TOPIC")]
    pub output_topic: String,
    /// Topic failed records go to.
    #[arg(long, default_value = defaults::DEAD_LETTER_TOPIC, env = "SLUICEGATE_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: String,
    /// Consumers of the group in this process.
    #[arg(long, default_value_t = defaults::WORKERS, env = "SLUICEGATE_WORKERS")]
    pub workers: usize,
    /// Commit the finished prefix at least this often.
    #[arg(long, default_value_t = defaults::COMMIT_INTERVAL_MS, env = "SLUICEGATE_COMMIT_INTERVAL_MS")]
    pub commit_interval_ms: u64,
    /// Commit after this many records finished.
    #[arg(long, default_value_t = defaults::COMMIT_EVERY, env = "SLUICEGATE_COMMIT_EVERY")]
    pub commit_every: usize,
    /// Pause the partitions when the pipeline stays full this long.
    #[arg(long, default_value_t = defaults::PAUSE_AFTER_MS, env = "SLUICEGATE_PAUSE_AFTER_MS")]
    pub pause_after_ms: u64,
    /// On revoke, wait this long for in-flight records.
    #[arg(long, default_value_t = defaults::REVOKE_TIMEOUT_MS, env = "SLUICEGATE_REVOKE_TIMEOUT_MS")]
    pub revoke_timeout_ms: u64,
    /// Give up at start when the cluster does not answer within this.
    #[arg(long, default_value_t = defaults::CONNECT_TIMEOUT_MS, env = "SLUICEGATE_CONNECT_TIMEOUT_MS")]
    pub connect_timeout_ms: u64,
    /// Per partition, records handed out from its oldest unfinished one on
    /// before it is paused.
    #[arg(long, default_value_t = defaults::WINDOW_LIMIT, env = "SLUICEGATE_WINDOW_LIMIT")]
    pub window_limit: usize,
    /// Exactly-once: outputs and consumed offsets commit in Kafka
    /// transactions, after the store; needs an output topic and --workers 1.
    #[arg(long, env = "SLUICEGATE_EXACTLY_ONCE")]
    pub exactly_once: bool,
    /// Transactional id in exactly-once mode, unique per process and stable
    /// across its restarts [default: sluicegate-GROUP].
    #[arg(long, env = "SLUICEGATE_TRANSACTIONAL_ID")]
    pub transactional_id: Option<String>,
    /// A librdkafka property, KEY=VALUE; repeat for more (secrets are never logged).
    #[arg(
        long = "kafka-property",
        value_name = "KEY=VALUE",
        env = "SLUICEGATE_KAFKA_PROPERTIES",
        value_delimiter = ','
    )]
    pub kafka_properties: Vec<String>,

    /// Database: postgres://..., host=... dbname=..., or sqlite://PATH
    /// [default: sqlite://sluicegate.db; a temporary file when embedded].
    #[arg(long, env = "SLUICEGATE_STORE", help_heading = "Store")]
    pub store: Option<String>,
    /// Table written to, created if missing.
    #[arg(long, default_value = defaults::TABLE, env = "SLUICEGATE_TABLE", help_heading = "Store")]
    pub table: String,
    /// Rows per transaction at most.
    #[arg(long, default_value_t = defaults::STORE_BATCH, env = "SLUICEGATE_STORE_BATCH", help_heading = "Store")]
    pub store_batch: usize,
    /// Write a batch when its first row waited this long.
    #[arg(long, default_value_t = defaults::STORE_BATCH_WAIT_MS, env = "SLUICEGATE_STORE_BATCH_WAIT_MS", help_heading = "Store")]
    pub store_batch_wait_ms: u64,
    /// Keep the group's offsets in the database, committed with each
    /// batch's rows, and resume from them (exactly-once into the store).
    #[arg(long, env = "SLUICEGATE_STORE_OFFSETS", help_heading = "Store")]
    pub store_offsets: bool,
    /// Non-blocking retries: a record the store refuses transiently goes to
    /// a retry topic per delay ({input}.retry.1s, ...) and comes back when
    /// due, while its partition moves on; dead-lettered after the last.
    /// Comma separated, e.g. 1s,10s,60s [default: none, retry in place].
    #[arg(
        long,
        value_name = "DELAYS",
        env = "SLUICEGATE_RETRY_DELAYS",
        value_delimiter = ',',
        num_args = 0..,
        help_heading = "Store"
    )]
    pub retry_delays: Option<Vec<String>>,

    /// Mailbox capacity of decode.
    #[arg(long, default_value_t = defaults::DECODE_CAPACITY, env = "SLUICEGATE_DECODE_CAPACITY", help_heading = "Stages")]
    pub decode_capacity: usize,
    /// Mailbox capacity of validate.
    #[arg(long, default_value_t = defaults::VALIDATE_CAPACITY, env = "SLUICEGATE_VALIDATE_CAPACITY", help_heading = "Stages")]
    pub validate_capacity: usize,
    /// Mailbox capacity of transform; it takes batches of up to half of it.
    #[arg(long, default_value_t = defaults::TRANSFORM_CAPACITY, env = "SLUICEGATE_TRANSFORM_CAPACITY", help_heading = "Stages")]
    pub transform_capacity: usize,
    /// Transform workers on the blocking pool [default: cores].
    #[arg(long, env = "SLUICEGATE_TRANSFORM_WORKERS", help_heading = "Stages")]
    pub transform_workers: Option<usize>,
    /// Output order of transform (it keeps its input order whatever this says).
    #[arg(
        long,
        value_enum,
        default_value_t,
        env = "SLUICEGATE_TRANSFORM_ORDER",
        help_heading = "Stages"
    )]
    pub transform_order: OrderSetting,
    /// Mailbox capacity of store.
    #[arg(long, default_value_t = defaults::STORE_CAPACITY, env = "SLUICEGATE_STORE_CAPACITY", help_heading = "Stages")]
    pub store_capacity: usize,
    /// Mailbox capacity of produce.
    #[arg(long, default_value_t = defaults::PRODUCE_CAPACITY, env = "SLUICEGATE_PRODUCE_CAPACITY", help_heading = "Stages")]
    pub produce_capacity: usize,
    /// Deliveries to the output topic in flight.
    #[arg(long, default_value_t = defaults::PRODUCE_IN_FLIGHT, env = "SLUICEGATE_PRODUCE_IN_FLIGHT", help_heading = "Stages")]
    pub produce_in_flight: usize,
    /// What a full mailbox does, for every stage. Dropped records are
    /// counted and their offsets commit: use only where losing records
    /// under load is the intent.
    #[arg(
        long,
        value_enum,
        default_value_t,
        env = "SLUICEGATE_OVERFLOW",
        help_heading = "Stages"
    )]
    pub overflow: OverflowSetting,
    /// What transform's full mailbox does (overrides --overflow).
    #[arg(
        long,
        value_enum,
        env = "SLUICEGATE_TRANSFORM_OVERFLOW",
        help_heading = "Stages"
    )]
    pub transform_overflow: Option<OverflowSetting>,
    /// HMAC rounds per pseudonymised field: the transform's CPU cost.
    #[arg(long, default_value_t = defaults::HASH_ROUNDS, env = "SLUICEGATE_HASH_ROUNDS", help_heading = "Stages")]
    pub hash_rounds: u32,

    /// JSON Schema file records are validated against (draft 2020-12 unless
    /// its $schema names another) [default: the built-in event schema].
    #[arg(
        long,
        value_name = "FILE",
        env = "SLUICEGATE_SCHEMA",
        help_heading = "Records"
    )]
    pub schema: Option<PathBuf>,
    /// Assert "format" (email, date-time, uuid, ...) instead of treating it
    /// as an annotation.
    #[arg(long, env = "SLUICEGATE_VALIDATE_FORMATS", help_heading = "Records")]
    pub validate_formats: bool,
    /// Records larger than this are dead-lettered unparsed.
    #[arg(long, default_value_t = defaults::MAX_PAYLOAD_BYTES, env = "SLUICEGATE_MAX_PAYLOAD_BYTES", help_heading = "Records")]
    pub max_payload_bytes: usize,
    /// Top-level fields the transform pseudonymises (keyed HMAC), comma
    /// separated; "" for none.
    #[arg(
        long,
        default_value = defaults::PSEUDONYMISE,
        value_name = "FIELDS",
        env = "SLUICEGATE_PSEUDONYMISE",
        value_delimiter = ',',
        num_args = 0..,
        help_heading = "Records"
    )]
    pub pseudonymise: Vec<String>,
    /// Top-level number the transform converts to integer cents; "" for
    /// none.
    #[arg(
        long,
        default_value = defaults::CENTS,
        value_name = "FIELD",
        env = "SLUICEGATE_CENTS",
        help_heading = "Records"
    )]
    pub cents: String,
    /// Where the cents go [default: FIELD_cents].
    #[arg(
        long,
        value_name = "FIELD",
        env = "SLUICEGATE_CENTS_FIELD",
        help_heading = "Records"
    )]
    pub cents_field: Option<String>,

    /// Embedded default: records generated.
    #[arg(long, default_value_t = defaults::RECORDS, env = "SLUICEGATE_RECORDS", help_heading = "Embedded")]
    pub records: u64,
    /// Embedded default: partitions of the topics.
    #[arg(long, default_value_t = defaults::PARTITIONS, env = "SLUICEGATE_PARTITIONS", help_heading = "Embedded")]
    pub partitions: i32,
    /// Embedded default: share of malformed records.
    #[arg(long, default_value_t = defaults::MALFORMED, env = "SLUICEGATE_MALFORMED", help_heading = "Embedded")]
    pub malformed: f64,

    /// Status server address (/, /status, /metrics, /health), or "off".
    #[arg(long, default_value = defaults::HTTP, env = "SLUICEGATE_HTTP", help_heading = "Run")]
    pub http: String,
    /// Seconds to drain after SIGINT/SIGTERM before abandoning.
    #[arg(long, default_value_t = defaults::DRAIN_TIMEOUT_S, env = "SLUICEGATE_DRAIN_TIMEOUT", help_heading = "Run")]
    pub drain_timeout: u64,
    /// Stop once the group has committed everything the input held at start.
    #[arg(long, env = "SLUICEGATE_UNTIL_CAUGHT_UP", help_heading = "Run")]
    pub until_caught_up: bool,
    /// No live view on stderr.
    #[arg(long, short, env = "SLUICEGATE_QUIET", help_heading = "Run")]
    pub quiet: bool,
    /// Also write the summary as JSON to this file.
    #[arg(long, env = "SLUICEGATE_SUMMARY_FILE", help_heading = "Run")]
    pub summary_file: Option<PathBuf>,
    /// Draw the live view even when stderr is not a terminal.
    #[arg(long, help_heading = "Run", conflicts_with = "quiet")]
    pub live: bool,
    /// Fault injection for tests: the transform panics on records whose id
    /// ends with this suffix.
    #[arg(long, env = "SLUICEGATE_PANIC_ON_ID_SUFFIX", hide = true)]
    pub panic_on_id_suffix: Option<String>,
    /// Fault injection for tests: in exactly-once mode, each transaction
    /// stays open this long after its records are acknowledged.
    #[arg(long, env = "SLUICEGATE_FAULT_HOLD_TRANSACTION_MS", hide = true)]
    pub fault_hold_transaction_ms: Option<u64>,
    /// The fields whose flags were given (see [`Cli::parse_args`]).
    #[arg(skip)]
    given: std::collections::BTreeSet<String>,
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

impl RunArgs {
    /// The options of [`run`](crate::app::run) that are not settings: the
    /// live view (`--quiet`, `--live`) and the summary file.
    pub fn run_options(&self) -> RunOptions {
        let live_view = if self.quiet {
            LiveView::Off
        } else if self.live {
            LiveView::Force
        } else {
            LiveView::Auto
        };
        RunOptions {
            live_view,
            summary_file: self.summary_file.clone(),
        }
    }

    /// Whether the flag of field `id` was given, on the command line or by
    /// its environment variable (not left at its default).
    fn given(&self, id: &str) -> bool {
        self.given.contains(id)
    }

    /// The settings: defaults, then the `--config` file, then the flags
    /// given (a flag left out keeps the file's value, although its field
    /// holds the default that `--help` shows). Parse with [`Cli::parse_args`],
    /// which notes the flags given.
    ///
    /// # Errors
    ///
    /// An unreadable or invalid file, a malformed `--kafka-property`, or a
    /// setting out of range, each naming what is wrong.
    pub fn settings(&self) -> Result<Settings, SettingsError> {
        let mut s = match &self.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        // `set!(target, field)`: the flag's value, when given.
        macro_rules! set {
            ($target:expr, $field:ident) => {
                if self.given(stringify!($field)) {
                    $target = self.$field.clone();
                }
            };
        }
        fn set_some<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *target = v.clone();
            }
        }
        let k = &mut s.kafka;
        if self.brokers.is_some() {
            k.brokers.clone_from(&self.brokers);
        }
        set!(k.group, group);
        set!(k.input_topic, input_topic);
        set!(k.output_topic, output_topic);
        set!(k.dead_letter_topic, dead_letter_topic);
        set!(k.workers, workers);
        set!(k.commit_interval_ms, commit_interval_ms);
        set!(k.commit_every, commit_every);
        set!(k.pause_after_ms, pause_after_ms);
        set!(k.revoke_timeout_ms, revoke_timeout_ms);
        set!(k.connect_timeout_ms, connect_timeout_ms);
        set!(k.window_limit, window_limit);
        if self.exactly_once {
            k.exactly_once = true;
        }
        set_some(&mut k.transactional_id, &self.transactional_id);
        for prop in &self.kafka_properties {
            let Some((key, value)) = prop.split_once('=') else {
                return Err(SettingsError::Invalid {
                    key: "--kafka-property".into(),
                    message: format!("expected KEY=VALUE, got {:?}", key_only(prop)),
                });
            };
            k.properties.insert(key.trim().into(), value.into());
        }
        if self.store.is_some() {
            s.store.url.clone_from(&self.store);
        }
        set!(s.store.table, table);
        set!(s.store.batch, store_batch);
        set!(s.store.batch_wait_ms, store_batch_wait_ms);
        if self.store_offsets {
            s.store.offsets = true;
        }
        if let Some(delays) = &self.retry_delays {
            s.store.retry_delays = delays.iter().filter(|d| !d.is_empty()).cloned().collect();
        }
        let st = &mut s.stages;
        if self.given("overflow") {
            for stage in [
                &mut st.decode,
                &mut st.validate,
                &mut st.transform,
                &mut st.store,
                &mut st.produce,
                &mut st.dead_letters,
            ] {
                stage.overflow = self.overflow;
            }
        }
        set!(st.decode.capacity, decode_capacity);
        set!(st.validate.capacity, validate_capacity);
        set!(st.transform.capacity, transform_capacity);
        set_some(&mut st.transform.workers, &self.transform_workers);
        set!(st.transform.order, transform_order);
        set_some(&mut st.transform.overflow, &self.transform_overflow);
        set!(st.store.capacity, store_capacity);
        set!(st.produce.capacity, produce_capacity);
        set!(st.produce.workers, produce_in_flight);
        set!(s.run.hash_rounds, hash_rounds);
        if self.schema.is_some() {
            s.validate.schema.clone_from(&self.schema);
        }
        if self.validate_formats {
            s.validate.formats = true;
        }
        set!(s.validate.max_payload_bytes, max_payload_bytes);
        if self.given("pseudonymise") {
            // `--pseudonymise ""` (or the flag alone) clears the list.
            s.transform.pseudonymise = self
                .pseudonymise
                .iter()
                .filter(|f| !f.is_empty())
                .cloned()
                .collect();
        }
        set!(s.transform.cents, cents);
        set_some(&mut s.transform.cents_field, &self.cents_field);
        set!(s.embedded.records, records);
        set!(s.embedded.partitions, partitions);
        set!(s.embedded.malformed, malformed);
        set!(s.run.http, http);
        set!(s.run.drain_timeout_s, drain_timeout);
        set_some(&mut s.run.panic_on_id_suffix, &self.panic_on_id_suffix);
        set_some(
            &mut s.run.fault_hold_transaction_ms,
            &self.fault_hold_transaction_ms,
        );
        if self.until_caught_up {
            s.run.until_caught_up = true;
        }
        s.validate()?;
        Ok(s)
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

/// The key of a `KEY=VALUE` argument without its value (which may be a secret).
fn key_only(prop: &str) -> String {
    if sluicegate_kafka_io::is_secret(prop.trim()) {
        "<redacted>".into()
    } else {
        prop.chars().take(64).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> RunArgs {
        let argv = ["sluicegate", "run"].iter().chain(args);
        match Cli::parse_args(argv)
            .expect("the command line parses")
            .command
        {
            Command::Run(run) => *run,
            Command::Produce(_) => unreachable!("parsed `run`"),
        }
    }

    #[test]
    fn flags_left_out_are_the_defaults() {
        let s = run_args(&[]).settings().expect("the defaults are valid");
        assert_eq!(s, Settings::default());
        assert_eq!(s.store.batch, defaults::STORE_BATCH);
        assert_eq!(s.stages.transform.capacity, defaults::TRANSFORM_CAPACITY);
        assert_eq!(s.transform.pseudonymise, vec![defaults::PSEUDONYMISE]);
    }

    #[test]
    fn a_flag_given_beats_the_file_and_one_left_out_keeps_it() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("settings.toml");
        std::fs::write(
            &file,
            "[store]\nbatch = 7\ntable = \"from_file\"\n[stages.decode]\ncapacity = 9\n",
        )
        .expect("the file is written");
        let config = file.to_str().expect("a UTF-8 path");
        let s = run_args(&["--config", config, "--store-batch", "11"])
            .settings()
            .expect("the settings are valid");
        assert_eq!(s.store.batch, 11, "the flag beats the file");
        assert_eq!(
            s.store.table, "from_file",
            "a flag left out keeps the file's value"
        );
        assert_eq!(
            s.stages.decode.capacity, 9,
            "a flag left out keeps the file's value"
        );
        assert_eq!(s.kafka.group, defaults::GROUP, "neither: the default");
    }

    #[test]
    fn pseudonymise_alone_clears_the_list() {
        let s = run_args(&["--pseudonymise"]).settings().expect("valid");
        assert!(s.transform.pseudonymise.is_empty());
        let s = run_args(&["--pseudonymise", "email,name"])
            .settings()
            .expect("valid");
        assert_eq!(s.transform.pseudonymise, vec!["email", "name"]);
    }
}
