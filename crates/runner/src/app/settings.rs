//! Everything the reference pipeline can be told, with its defaults.
//!
//! Settings come from three places, strongest first: a flag (or its
//! environment variable, see [`cli`](crate::app::cli)), a key in the optional TOML
//! file given with `--config`, and the defaults below. The TOML file mirrors
//! the struct; every key is optional:
//!
//! ```toml
//! [kafka]
//! brokers = "10.0.0.5:9092"       # leave out for the embedded mock cluster
//! group = "sluicegate"
//! input_topic = "events"
//! output_topic = "events-clean"   # "" to produce nothing
//! dead_letter_topic = "events-dlq"
//! workers = 1                     # consumers of the group in this process
//! commit_interval_ms = 1000
//! commit_every = 1000
//! pause_after_ms = 500
//! revoke_timeout_ms = 10000
//! connect_timeout_ms = 10000
//! window_limit = 10000           # per partition: records behind its oldest unfinished one
//! exactly_once = false            # true: outputs and offsets in Kafka transactions
//! transactional_id = ""           # "" = "sluicegate-{group}"; unique per process
//! [kafka.properties]              # any librdkafka property, passed through
//! "security.protocol" = "SASL_SSL"
//!
//! [store]
//! url = "postgres://app@db/events" # or sqlite://PATH
//! table = "events"
//! batch = 500
//! batch_wait_ms = 50
//! offsets = false                 # true: the group's offsets kept here, with the rows
//!
//! [validate]
//! schema = "orders.schema.json"   # a JSON Schema file (draft 2020-12 unless its $schema
//!                                 # names another); leave out for the built-in event schema
//! formats = false                 # true: "format" (email, date-time, uuid, ...) is asserted
//! max_payload_bytes = 8192        # larger records are dead-lettered before parsing
//!
//! [transform]
//! pseudonymise = ["email"]        # top-level fields replaced by their keyed HMAC; [] for none
//! cents = "amount"                # a top-level number converted to integer cents; "" for none
//! cents_field = ""                # where the cents go; "" = "<cents>_cents" (amount_cents)
//!
//! [stages.transform]
//! capacity = 512                  # batches of up to half of it to the blocking pool
//! workers = 2
//! overflow = "block"              # or "drop-newest", "drop-oldest"
//!
//! [run]
//! http = "127.0.0.1:9898"         # "off" for no HTTP server
//! drain_timeout_s = 30
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluicegate_core::{Order, Overflow};

use crate::app::defaults;

/// All settings of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The Kafka side: brokers, group, topics, commits.
    pub kafka: KafkaSettings,
    /// The database the `store` stage writes to.
    pub store: StoreSettings,
    /// What a valid record is: the schema, formats, the payload limit.
    pub validate: ValidateSettings,
    /// Which fields the transform pseudonymises and converts.
    pub transform: TransformSettings,
    /// Mailboxes and workers of each stage.
    pub stages: StagesSettings,
    /// The embedded default's generated input.
    pub embedded: EmbeddedSettings,
    /// HTTP, drain, stop condition, fault injection.
    pub run: RunSettings,
}

/// The Kafka side of the pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap servers; `None` starts librdkafka's mock cluster in-process.
    pub brokers: Option<String>,
    /// Consumer group id; every process with the same group shares the
    /// input's partitions.
    pub group: String,
    /// Topic read from.
    pub input_topic: String,
    /// Topic the transformed records are produced to; empty for none.
    pub output_topic: String,
    /// Topic failed records go to, with headers naming why.
    pub dead_letter_topic: String,
    /// Members of the consumer group in this process.
    pub workers: usize,
    /// Commit the finished prefix at least this often.
    pub commit_interval_ms: u64,
    /// Commit after this many records finished.
    pub commit_every: usize,
    /// Pause the partitions when the pipeline stays full this long.
    pub pause_after_ms: u64,
    /// On revoke, wait this long for in-flight records before releasing.
    pub revoke_timeout_ms: u64,
    /// Give up at start if the cluster does not answer within this.
    pub connect_timeout_ms: u64,
    /// Per partition, how many records may be handed out from its oldest
    /// unfinished one on before that partition alone is paused (resumed
    /// below 75%): one stuck record cannot grow the uncommitted window
    /// without bound.
    pub window_limit: usize,
    /// Exactly-once Kafka to Kafka: each batch's output records and the
    /// consumed offsets they cover commit in one Kafka transaction, after
    /// the batch's rows committed in the store (see
    /// [`pipeline`](crate::pipeline)). Needs an output topic and one
    /// consumer per process (`workers = 1`).
    pub exactly_once: bool,
    /// The transactional producer's id in exactly-once mode; empty for
    /// `sluicegate-{group}`. It must be unique among the processes of the
    /// group and stable across restarts of one (a restarted process aborts
    /// what its predecessor left open; a second process with the same id
    /// fences the first).
    pub transactional_id: String,
    /// librdkafka properties passed through unchanged (SASL, TLS, tuning).
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            brokers: None,
            group: defaults::GROUP.into(),
            input_topic: defaults::INPUT_TOPIC.into(),
            output_topic: defaults::OUTPUT_TOPIC.into(),
            dead_letter_topic: defaults::DEAD_LETTER_TOPIC.into(),
            workers: defaults::WORKERS,
            commit_interval_ms: defaults::COMMIT_INTERVAL_MS,
            commit_every: defaults::COMMIT_EVERY,
            pause_after_ms: defaults::PAUSE_AFTER_MS,
            revoke_timeout_ms: defaults::REVOKE_TIMEOUT_MS,
            connect_timeout_ms: defaults::CONNECT_TIMEOUT_MS,
            window_limit: defaults::WINDOW_LIMIT,
            exactly_once: false,
            transactional_id: String::new(),
            properties: BTreeMap::new(),
        }
    }
}

/// The database side.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// `postgres://...`, `host=... dbname=...` or `sqlite://PATH`. `None`:
    /// with a real cluster, SQLite at `sluicegate.db`; in the embedded
    /// default, a fresh SQLite file in the temporary directory.
    pub url: Option<String>,
    /// Table written to (created if missing).
    pub table: String,
    /// Rows per transaction at most.
    pub batch: usize,
    /// A batch is written when it is full or its first row waited this long.
    pub batch_wait_ms: u64,
    /// Keep the consumer group's offsets in this database, written in the
    /// same transaction as each batch's rows (exactly-once into the store:
    /// after a crash no stored row is written again), and resume from them
    /// (see [`pipeline`](crate::pipeline)).
    pub offsets: bool,
    /// Non-blocking retries: the delay of each retry level (`"1s"`,
    /// `"500ms"`, `"2m"`). A record the store refuses transiently (a lock
    /// timeout, a serialization failure, the database away) goes to the
    /// retry topic of its attempt (`{input}.retry.1s`, ...), and comes
    /// back when due, while its partition's commits move on; after the
    /// last level it is dead-lettered with its history. Empty (the
    /// default): the store retries a failed batch in place, holding the
    /// partitions behind it.
    pub retry_delays: Vec<String>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: None,
            table: defaults::TABLE.into(),
            batch: defaults::STORE_BATCH,
            batch_wait_ms: defaults::STORE_BATCH_WAIT_MS,
            offsets: false,
            retry_delays: Vec::new(),
        }
    }
}

/// Parses a delay: a whole number and a unit, `ms`, `s`, `m` or `h`
/// (`"250ms"`, `"1s"`, `"2m"`).
///
/// # Errors
///
/// What is wrong with it.
pub fn parse_delay(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    let (number, unit) = t.split_at(digits);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a delay like 1s, 500ms or 2m"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => {
            return Err(format!(
                "{text:?} is not a delay like 1s, 500ms or 2m (units: ms, s, m, h)"
            ));
        }
    };
    if d.is_zero() {
        return Err(format!("{text:?}: a retry delay must be more than 0"));
    }
    Ok(d)
}

/// What a valid record is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ValidateSettings {
    /// A JSON Schema file (draft 2020-12 unless its `$schema` names draft
    /// 4, 6, 7 or 2019-09), relative to the working directory. `None`: the
    /// built-in schema of the generated events
    /// ([`EVENT_SCHEMA`](crate::pipeline::EVENT_SCHEMA)). The schema is one
    /// self-contained document: nothing is fetched, so a `$ref` to another
    /// file or URL is a configuration error.
    pub schema: Option<PathBuf>,
    /// Whether `format` is an assertion (a string that is not a valid
    /// `email`, `date-time`, `uuid`, ... is rejected) rather than an
    /// annotation (the draft 2020-12 default).
    pub formats: bool,
    /// Records larger than this are dead-lettered before they are parsed.
    pub max_payload_bytes: usize,
}

impl Default for ValidateSettings {
    fn default() -> Self {
        ValidateSettings {
            schema: None,
            formats: false,
            max_payload_bytes: defaults::MAX_PAYLOAD_BYTES,
        }
    }
}

/// Which fields the transform works on. Fields are top-level keys of a
/// record; a record without them (or one that is not an object) passes
/// through without that step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TransformSettings {
    /// Fields whose values are replaced by their keyed HMAC-SHA-256 (hex;
    /// the key is `SLUICEGATE_HASH_KEY`, `run.hash_rounds` rounds): personal
    /// data such as e-mail addresses. Empty for none.
    pub pseudonymise: Vec<String>,
    /// A numeric field converted to integer cents (× 100, rounded) into
    /// [`cents_field`](Self::cents_field); empty for none. A record whose
    /// field is missing or not a number gets no cents field.
    pub cents: String,
    /// Where the cents go; empty for `<cents>_cents`.
    pub cents_field: String,
}

impl Default for TransformSettings {
    fn default() -> Self {
        TransformSettings {
            pseudonymise: defaults::PSEUDONYMISE
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect(),
            cents: defaults::CENTS.into(),
            cents_field: String::new(),
        }
    }
}

impl TransformSettings {
    /// The field converted to cents and the field the cents go to, if any.
    pub fn cents(&self) -> Option<(&str, String)> {
        if self.cents.is_empty() {
            return None;
        }
        let to = if self.cents_field.is_empty() {
            format!("{}_cents", self.cents)
        } else {
            self.cents_field.clone()
        };
        Some((&self.cents, to))
    }
}

/// How to handle a full mailbox (mirrors [`Overflow`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OverflowSetting {
    /// Wait for room: nothing is lost, the slowness travels upstream.
    #[default]
    Block,
    /// Drop the new record (counted; its offset still commits).
    DropNewest,
    /// Drop the oldest waiting record (counted; its offset still commits).
    DropOldest,
}

impl From<OverflowSetting> for Overflow {
    fn from(o: OverflowSetting) -> Self {
        match o {
            OverflowSetting::Block => Overflow::Block,
            OverflowSetting::DropNewest => Overflow::DropNewest,
            OverflowSetting::DropOldest => Overflow::DropOldest,
        }
    }
}

/// Output order of a stage with several workers (mirrors [`Order`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OrderSetting {
    /// Results leave as they finish (offsets still commit in order).
    #[default]
    Unordered,
    /// Results leave in input order.
    Preserve,
    /// Results with the same Kafka key leave in input order.
    PerKey,
}

impl From<OrderSetting> for Order {
    fn from(o: OrderSetting) -> Self {
        match o {
            OrderSetting::Unordered => Order::Unordered,
            OrderSetting::Preserve => Order::Preserve,
            OrderSetting::PerKey => Order::PerKey,
        }
    }
}

/// One stage's mailbox and workers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StageSettings {
    /// Records waiting plus in progress, at most.
    pub capacity: usize,
    /// What a full mailbox does to the stage before it.
    pub overflow: OverflowSetting,
    /// Records processed at once.
    pub workers: usize,
    /// Output order when `workers > 1`.
    pub order: OrderSetting,
}

impl StageSettings {
    fn with(capacity: usize, workers: usize) -> Self {
        StageSettings {
            capacity,
            overflow: OverflowSetting::default(),
            workers,
            order: OrderSetting::default(),
        }
    }
}

impl Default for StageSettings {
    fn default() -> Self {
        StageSettings::with(defaults::DECODE_CAPACITY, defaults::STAGE_WORKERS)
    }
}

/// The stages of the reference pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StagesSettings {
    /// Bytes to JSON.
    pub decode: StageSettings,
    /// The schema rules.
    pub validate: StageSettings,
    /// Enrich, hash and encode, on the blocking pool: batches of up to half
    /// its capacity, each split across its `workers`; it keeps its input
    /// order (its `order` has no effect).
    pub transform: StageSettings,
    /// The database writes (its `workers` is ignored: one batch at a time).
    pub store: StageSettings,
    /// Producing to the output topic (`workers` = deliveries in flight).
    pub produce: StageSettings,
    /// Producing failures to the dead-letter topic.
    pub dead_letters: StageSettings,
}

impl Default for StagesSettings {
    fn default() -> Self {
        StagesSettings {
            decode: StageSettings::with(defaults::DECODE_CAPACITY, defaults::STAGE_WORKERS),
            validate: StageSettings::with(defaults::VALIDATE_CAPACITY, defaults::STAGE_WORKERS),
            // Batches of up to half the capacity go to the blocking pool.
            transform: StageSettings::with(
                defaults::TRANSFORM_CAPACITY,
                defaults::transform_workers(),
            ),
            store: StageSettings::with(defaults::STORE_CAPACITY, defaults::STAGE_WORKERS),
            produce: StageSettings::with(defaults::PRODUCE_CAPACITY, defaults::PRODUCE_IN_FLIGHT),
            dead_letters: StageSettings::with(
                defaults::DEAD_LETTERS_CAPACITY,
                defaults::DEAD_LETTERS_IN_FLIGHT,
            ),
        }
    }
}

/// The generated input of the embedded default (and of `sluicegate produce`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedSettings {
    /// Records generated into the input topic.
    pub records: u64,
    /// Partitions of the generated topics.
    pub partitions: i32,
    /// Share of malformed records, 0.0 to 1.0.
    pub malformed: f64,
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        EmbeddedSettings {
            records: defaults::RECORDS,
            partitions: defaults::PARTITIONS,
            malformed: defaults::MALFORMED,
        }
    }
}

/// How the run is hosted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RunSettings {
    /// Address of the status server, or `"off"`.
    pub http: String,
    /// After a signal, how long the pipeline may take to drain.
    pub drain_timeout_s: u64,
    /// Stop by itself once the group has committed everything that was in
    /// the input topic when the run started (always on in the embedded
    /// default).
    pub until_caught_up: bool,
    /// HMAC rounds per pseudonymised field (the transform's CPU cost).
    pub hash_rounds: u32,
    /// Fault injection for tests: the transform panics on records whose
    /// `id` ends with this suffix. Off when empty.
    pub panic_on_id_suffix: String,
    /// Fault injection for tests: in exactly-once mode, each transaction
    /// stays open this long after its records are acknowledged, before it
    /// commits (a crash then most likely leaves one open). 0: off.
    pub fault_hold_transaction_ms: u64,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            http: defaults::HTTP.into(),
            drain_timeout_s: defaults::DRAIN_TIMEOUT_S,
            until_caught_up: false,
            hash_rounds: defaults::HASH_ROUNDS,
            panic_on_id_suffix: String::new(),
            fault_hold_transaction_ms: 0,
        }
    }
}

/// A setting that cannot be used, naming it.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these settings.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A value out of range or inconsistent with another.
    #[error("invalid setting {key}: {message}")]
    Invalid {
        /// The setting, as a TOML key path.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl Settings {
    /// Reads the TOML file at `path`.
    ///
    /// # Errors
    ///
    /// [`SettingsError::Read`] or [`SettingsError::Parse`], naming the file.
    pub fn from_file(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| SettingsError::Parse {
            path: path.display().to_string(),
            message: e.to_string().trim().replace('\n', " "),
        })
    }

    /// Checks ranges and consistency.
    ///
    /// # Errors
    ///
    /// [`SettingsError::Invalid`] naming the first bad key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |key: &str, message: &str| {
            Err(SettingsError::Invalid {
                key: key.into(),
                message: message.into(),
            })
        };
        let stages = [
            ("decode", &self.stages.decode),
            ("validate", &self.stages.validate),
            ("transform", &self.stages.transform),
            ("store", &self.stages.store),
            ("produce", &self.stages.produce),
            ("dead_letters", &self.stages.dead_letters),
        ];
        for (name, s) in stages {
            if s.capacity == 0 {
                return bad(&format!("stages.{name}.capacity"), "must be at least 1");
            }
            if s.workers == 0 {
                return bad(&format!("stages.{name}.workers"), "must be at least 1");
            }
            if s.workers > s.capacity {
                return bad(
                    &format!("stages.{name}.workers"),
                    &format!(
                        "{} workers need a capacity of at least {} (capacity counts records in progress); raise stages.{name}.capacity",
                        s.workers, s.workers
                    ),
                );
            }
        }
        if self.store.batch == 0 {
            return bad("store.batch", "must be at least 1");
        }
        if self.validate.max_payload_bytes == 0 {
            return bad("validate.max_payload_bytes", "must be at least 1");
        }
        if self
            .validate
            .schema
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return bad(
                "validate.schema",
                "must name a file (leave it out for the built-in event schema)",
            );
        }
        let t = &self.transform;
        if t.pseudonymise.iter().any(String::is_empty) {
            return bad("transform.pseudonymise", "a field name must not be empty");
        }
        if let Some((from, to)) = t.cents() {
            if to == from || t.pseudonymise.contains(&to) {
                return bad(
                    "transform.cents_field",
                    &format!("{to:?} would overwrite a field the transform reads; choose another"),
                );
            }
        }
        if self.kafka.workers == 0 {
            return bad("kafka.workers", "must be at least 1");
        }
        if self.kafka.window_limit == 0 {
            return bad("kafka.window_limit", "must be at least 1");
        }
        if self.kafka.input_topic.is_empty() {
            return bad("kafka.input_topic", "must not be empty");
        }
        if self.kafka.dead_letter_topic.is_empty() {
            return bad("kafka.dead_letter_topic", "must not be empty");
        }
        if self.kafka.group.is_empty() {
            return bad("kafka.group", "must not be empty");
        }
        if let Err(message) = self.retry_delays() {
            return bad("store.retry_delays", &message);
        }
        if !self.store.retry_delays.is_empty() {
            if self.store.offsets {
                return bad(
                    "store.retry_delays",
                    "cannot be combined with store.offsets: a batch commits the offsets of its records, and a record sent to retry later would leave a gap",
                );
            }
            if self.kafka.exactly_once {
                return bad(
                    "store.retry_delays",
                    "cannot be combined with kafka.exactly_once: the transactions commit offsets in input order, which a retried record would leave",
                );
            }
        }
        if self.store.offsets && self.kafka.exactly_once {
            return bad(
                "store.offsets",
                "cannot be combined with kafka.exactly_once: the offsets are committed either with the rows or with the output records",
            );
        }
        if self.kafka.exactly_once {
            if self.kafka.output_topic.is_empty() {
                return bad(
                    "kafka.exactly_once",
                    "needs an output topic (kafka.output_topic): the transactions commit its records with the offsets",
                );
            }
            if self.kafka.workers != 1 {
                return bad(
                    "kafka.workers",
                    "must be 1 with kafka.exactly_once (one transactional producer per consumer); run more processes with distinct transactional ids instead",
                );
            }
        }
        if !(0.0..=1.0).contains(&self.embedded.malformed) {
            return bad("embedded.malformed", "must be between 0.0 and 1.0");
        }
        if self.embedded.partitions < 1 {
            return bad("embedded.partitions", "must be at least 1");
        }
        if self.http_addr().is_err() {
            return bad(
                "run.http",
                &format!(
                    "{:?} is not an address like 127.0.0.1:9898 (or \"off\")",
                    self.run.http
                ),
            );
        }
        Ok(())
    }

    /// The status server's address, `None` when off.
    ///
    /// # Errors
    ///
    /// When `run.http` is neither `off` nor a socket address.
    pub fn http_addr(&self) -> Result<Option<std::net::SocketAddr>, std::net::AddrParseError> {
        match self.run.http.trim() {
            "off" | "" => Ok(None),
            addr => addr.parse().map(Some),
        }
    }

    /// The drain deadline.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.run.drain_timeout_s)
    }

    /// The retry levels' delays (`store.retry_delays`), first level first.
    ///
    /// # Errors
    ///
    /// The first delay that does not parse, and why.
    pub fn retry_delays(&self) -> Result<Vec<Duration>, String> {
        self.store
            .retry_delays
            .iter()
            .map(|d| parse_delay(d))
            .collect()
    }

    /// The consumer group of the retry topics: `{kafka.group}.retry`.
    pub fn retry_group(&self) -> String {
        format!("{}.retry", self.kafka.group)
    }

    /// The transactional producer's id in exactly-once mode.
    pub fn transactional_id(&self) -> String {
        if self.kafka.transactional_id.is_empty() {
            format!("sluicegate-{}", self.kafka.group)
        } else {
            self.kafka.transactional_id.clone()
        }
    }

    /// Whether this run uses the in-process mock cluster.
    pub fn is_embedded(&self) -> bool {
        self.kafka.brokers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_parse_with_their_unit() {
        assert_eq!(parse_delay("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_delay(" 1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_delay("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_delay("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "1", "s", "1.5s", "-1s", "1d", "0ms"] {
            assert!(parse_delay(bad).is_err(), "{bad:?}");
        }
    }
}
