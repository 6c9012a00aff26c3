//! The command line. Every flag has an environment variable (shown in
//! `--help`); a flag beats its variable, which beats the `--config` file,
//! which beats the default.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::settings::{OrderSetting, OverflowSetting, Settings, SettingsError};

pub use crate::exit;

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
    #[arg(long, default_value = "events", env = "SLUICEGATE_INPUT_TOPIC")]
    pub topic: String,
    /// Records to produce.
    #[arg(long, default_value_t = 100_000, env = "SLUICEGATE_RECORDS")]
    pub records: u64,
    /// First record number (to extend an earlier run without reusing ids).
    #[arg(long, default_value_t = 0)]
    pub start: u64,
    /// Share of malformed records, 0.0 to 1.0.
    #[arg(long, default_value_t = 0.02, env = "SLUICEGATE_MALFORMED")]
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
    #[arg(long, env = "SLUICEGATE_GROUP")]
    pub group: Option<String>,
    /// Topic read from [default: events].
    #[arg(long, env = "SLUICEGATE_INPUT_TOPIC")]
    pub input_topic: Option<String>,
    /// Topic produced to; "" for none [default: events-clean].
    #[arg(long, env = "SLUICEGATE_OUTPUT_TOPIC")]
    pub output_topic: Option<String>,
    /// Topic failed records go to [default: events-dlq].
    #[arg(long, env = "SLUICEGATE_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: Option<String>,
    /// Consumers of the group in this process [default: 1].
    #[arg(long, env = "SLUICEGATE_WORKERS")]
    pub workers: Option<usize>,
    /// Commit the finished prefix at least this often [default: 1000].
    #[arg(long, env = "SLUICEGATE_COMMIT_INTERVAL_MS")]
    pub commit_interval_ms: Option<u64>,
    /// Commit after this many records finished [default: 1000].
    #[arg(long, env = "SLUICEGATE_COMMIT_EVERY")]
    pub commit_every: Option<usize>,
    /// Pause the partitions when the pipeline stays full this long [default: 500].
    #[arg(long, env = "SLUICEGATE_PAUSE_AFTER_MS")]
    pub pause_after_ms: Option<u64>,
    /// On revoke, wait this long for in-flight records [default: 10000].
    #[arg(long, env = "SLUICEGATE_REVOKE_TIMEOUT_MS")]
    pub revoke_timeout_ms: Option<u64>,
    /// Give up at start when the cluster does not answer within this [default: 10000].
    #[arg(long, env = "SLUICEGATE_CONNECT_TIMEOUT_MS")]
    pub connect_timeout_ms: Option<u64>,
    /// Per partition, records handed out from its oldest unfinished one on
    /// before it is paused [default: 10000].
    #[arg(long, env = "SLUICEGATE_WINDOW_LIMIT")]
    pub window_limit: Option<usize>,
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
    /// Table written to, created if missing [default: events].
    #[arg(long, env = "SLUICEGATE_TABLE", help_heading = "Store")]
    pub table: Option<String>,
    /// Rows per transaction at most [default: 500].
    #[arg(long, env = "SLUICEGATE_STORE_BATCH", help_heading = "Store")]
    pub store_batch: Option<usize>,
    /// Write a batch when its first row waited this long [default: 50].
    #[arg(long, env = "SLUICEGATE_STORE_BATCH_WAIT_MS", help_heading = "Store")]
    pub store_batch_wait_ms: Option<u64>,
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

    /// Mailbox capacity of decode [default: 256].
    #[arg(long, env = "SLUICEGATE_DECODE_CAPACITY", help_heading = "Stages")]
    pub decode_capacity: Option<usize>,
    /// Mailbox capacity of validate [default: 256].
    #[arg(long, env = "SLUICEGATE_VALIDATE_CAPACITY", help_heading = "Stages")]
    pub validate_capacity: Option<usize>,
    /// Mailbox capacity of transform; it takes batches of up to half of it [default: 512].
    #[arg(long, env = "SLUICEGATE_TRANSFORM_CAPACITY", help_heading = "Stages")]
    pub transform_capacity: Option<usize>,
    /// Transform workers on the blocking pool [default: cores].
    #[arg(long, env = "SLUICEGATE_TRANSFORM_WORKERS", help_heading = "Stages")]
    pub transform_workers: Option<usize>,
    /// Output order of transform (it keeps its input order whatever this says).
    #[arg(
        long,
        value_enum,
        env = "SLUICEGATE_TRANSFORM_ORDER",
        help_heading = "Stages"
    )]
    pub transform_order: Option<OrderSetting>,
    /// Mailbox capacity of store [default: 2000].
    #[arg(long, env = "SLUICEGATE_STORE_CAPACITY", help_heading = "Stages")]
    pub store_capacity: Option<usize>,
    /// Mailbox capacity of produce [default: 2048].
    #[arg(long, env = "SLUICEGATE_PRODUCE_CAPACITY", help_heading = "Stages")]
    pub produce_capacity: Option<usize>,
    /// Deliveries to the output topic in flight [default: 1024].
    #[arg(long, env = "SLUICEGATE_PRODUCE_IN_FLIGHT", help_heading = "Stages")]
    pub produce_in_flight: Option<usize>,
    /// What a full mailbox does, for every stage [default: block]. Dropped
    /// records are counted and their offsets commit: use only where losing
    /// records under load is the intent.
    #[arg(long, value_enum, env = "SLUICEGATE_OVERFLOW", help_heading = "Stages")]
    pub overflow: Option<OverflowSetting>,
    /// What transform's full mailbox does (overrides --overflow).
    #[arg(
        long,
        value_enum,
        env = "SLUICEGATE_TRANSFORM_OVERFLOW",
        help_heading = "Stages"
    )]
    pub transform_overflow: Option<OverflowSetting>,
    /// HMAC rounds per pseudonymised field: the transform's CPU cost [default: 16].
    #[arg(long, env = "SLUICEGATE_HASH_ROUNDS", help_heading = "Stages")]
    pub hash_rounds: Option<u32>,

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
    /// Records larger than this are dead-lettered unparsed [default: 8192].
    #[arg(long, env = "SLUICEGATE_MAX_PAYLOAD_BYTES", help_heading = "Records")]
    pub max_payload_bytes: Option<usize>,
    /// Top-level fields the transform pseudonymises (keyed HMAC), comma
    /// separated; "" for none [default: email].
    #[arg(
        long,
        value_name = "FIELDS",
        env = "SLUICEGATE_PSEUDONYMISE",
        value_delimiter = ',',
        num_args = 0..,
        help_heading = "Records"
    )]
    pub pseudonymise: Option<Vec<String>>,
    /// Top-level number the transform converts to integer cents; "" for
    /// none [default: amount].
    #[arg(
        long,
        value_name = "FIELD",
        env = "SLUICEGATE_CENTS",
        help_heading = "Records"
    )]
    pub cents: Option<String>,
    /// Where the cents go [default: FIELD_cents].
    #[arg(
        long,
        value_name = "FIELD",
        env = "SLUICEGATE_CENTS_FIELD",
        help_heading = "Records"
    )]
    pub cents_field: Option<String>,

    /// Embedded default: records generated [default: 100000].
    #[arg(long, env = "SLUICEGATE_RECORDS", help_heading = "Embedded")]
    pub records: Option<u64>,
    /// Embedded default: partitions of the topics [default: 8].
    #[arg(long, env = "SLUICEGATE_PARTITIONS", help_heading = "Embedded")]
    pub partitions: Option<i32>,
    /// Embedded default: share of malformed records [default: 0.02].
    #[arg(long, env = "SLUICEGATE_MALFORMED", help_heading = "Embedded")]
    pub malformed: Option<f64>,

    /// Status server address (/, /status, /metrics, /health), or "off" [default: 127.0.0.1:9898].
    #[arg(long, env = "SLUICEGATE_HTTP", help_heading = "Run")]
    pub http: Option<String>,
    /// Seconds to drain after SIGINT/SIGTERM before abandoning [default: 30].
    #[arg(long, env = "SLUICEGATE_DRAIN_TIMEOUT", help_heading = "Run")]
    pub drain_timeout: Option<u64>,
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
}

impl RunArgs {
    /// The settings: defaults, then the `--config` file, then these flags.
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
        fn set<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *target = v.clone();
            }
        }
        let k = &mut s.kafka;
        if self.brokers.is_some() {
            k.brokers.clone_from(&self.brokers);
        }
        set(&mut k.group, &self.group);
        set(&mut k.input_topic, &self.input_topic);
        set(&mut k.output_topic, &self.output_topic);
        set(&mut k.dead_letter_topic, &self.dead_letter_topic);
        set(&mut k.workers, &self.workers);
        set(&mut k.commit_interval_ms, &self.commit_interval_ms);
        set(&mut k.commit_every, &self.commit_every);
        set(&mut k.pause_after_ms, &self.pause_after_ms);
        set(&mut k.revoke_timeout_ms, &self.revoke_timeout_ms);
        set(&mut k.connect_timeout_ms, &self.connect_timeout_ms);
        set(&mut k.window_limit, &self.window_limit);
        if self.exactly_once {
            k.exactly_once = true;
        }
        set(&mut k.transactional_id, &self.transactional_id);
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
        set(&mut s.store.table, &self.table);
        set(&mut s.store.batch, &self.store_batch);
        set(&mut s.store.batch_wait_ms, &self.store_batch_wait_ms);
        if self.store_offsets {
            s.store.offsets = true;
        }
        if let Some(delays) = &self.retry_delays {
            s.store.retry_delays = delays.iter().filter(|d| !d.is_empty()).cloned().collect();
        }
        let st = &mut s.stages;
        if let Some(o) = self.overflow {
            for stage in [
                &mut st.decode,
                &mut st.validate,
                &mut st.transform,
                &mut st.store,
                &mut st.produce,
                &mut st.dead_letters,
            ] {
                stage.overflow = o;
            }
        }
        set(&mut st.decode.capacity, &self.decode_capacity);
        set(&mut st.validate.capacity, &self.validate_capacity);
        set(&mut st.transform.capacity, &self.transform_capacity);
        set(&mut st.transform.workers, &self.transform_workers);
        set(&mut st.transform.order, &self.transform_order);
        set(&mut st.transform.overflow, &self.transform_overflow);
        set(&mut st.store.capacity, &self.store_capacity);
        set(&mut st.produce.capacity, &self.produce_capacity);
        set(&mut st.produce.workers, &self.produce_in_flight);
        set(&mut s.run.hash_rounds, &self.hash_rounds);
        if self.schema.is_some() {
            s.validate.schema.clone_from(&self.schema);
        }
        if self.validate_formats {
            s.validate.formats = true;
        }
        set(&mut s.validate.max_payload_bytes, &self.max_payload_bytes);
        if let Some(fields) = &self.pseudonymise {
            // `--pseudonymise ""` (or the flag alone) clears the list.
            s.transform.pseudonymise = fields.iter().filter(|f| !f.is_empty()).cloned().collect();
        }
        set(&mut s.transform.cents, &self.cents);
        set(&mut s.transform.cents_field, &self.cents_field);
        set(&mut s.embedded.records, &self.records);
        set(&mut s.embedded.partitions, &self.partitions);
        set(&mut s.embedded.malformed, &self.malformed);
        set(&mut s.run.http, &self.http);
        set(&mut s.run.drain_timeout_s, &self.drain_timeout);
        set(&mut s.run.panic_on_id_suffix, &self.panic_on_id_suffix);
        set(
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

/// The key of a `KEY=VALUE` argument without its value (which may be a secret).
fn key_only(prop: &str) -> String {
    if sluicegate_kafka_io::is_secret(prop.trim()) {
        "<redacted>".into()
    } else {
        prop.chars().take(64).collect()
    }
}
