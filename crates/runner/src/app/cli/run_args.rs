//! [`RunArgs`]: the flags of `sluicegate run`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::Args;

use crate::app::RunOptions;
use crate::app::defaults;
use crate::app::settings::{OrderSetting, OverflowSetting};
use crate::host::LiveView;

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
    pub(super) given: BTreeSet<String>,
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
}
